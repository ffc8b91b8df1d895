//! Frames for the flow model's tests: Ethernet/IPv4/TCP built field by field, with the options
//! a Linux SYN carries.

use std::net::{IpAddr, SocketAddr};

use crate::app::{App, Echo, Kv};
use crate::flow::{FlowTable, TcpState};
use crate::wire::FourTuple;

pub(super) const C: &str = "198.18.0.100:40000";
pub(super) const S: &str = "198.18.0.10:7";

/// Builds an Ethernet/IPv4/TCP frame with the options a Linux SYN carries.
#[allow(clippy::too_many_arguments)]
pub(super) fn frame(
    src: &str,
    dst: &str,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!()
    };
    let mut o = opts.to_vec();
    while o.len() % 4 != 0 {
        o.push(1);
    }
    let tcp_len = 20 + o.len() + payload.len();
    let mut f = vec![0xa5u8; 14];
    f[12] = 0x08;
    f[13] = 0x00;
    let total = (20 + tcp_len) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.push((((20 + o.len()) / 4) as u8) << 4);
    f.push(flags);
    f.extend_from_slice(&win.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&o);
    f.extend_from_slice(payload);
    f
}

pub(super) fn syn_opts(mss: u16, ws: u8, ts: u32) -> Vec<u8> {
    let mut o = vec![2, 4, (mss >> 8) as u8, mss as u8, 4, 2, 8, 10];
    o.extend_from_slice(&ts.to_be_bytes());
    o.extend_from_slice(&0u32.to_be_bytes());
    o.extend_from_slice(&[1, 3, 3, ws]);
    o
}

pub(super) fn ts(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o
}

pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;
pub(super) const PSH: u8 = 0x08;

pub(super) fn table() -> FlowTable {
    FlowTable::new(vec![("198.18.0.10".parse().unwrap(), (7, 7))], || {
        Box::new(Echo)
    })
}

pub(super) const FIN: u8 = 0x01;
pub(super) const RST: u8 = 0x04;

/// The connection `C` to `S`, as the table names it.
pub(super) fn tuple() -> FourTuple {
    FourTuple {
        local: S.parse().unwrap(),
        remote: C.parse().unwrap(),
    }
}

/// A conversation between `C` and `S` fed to a table frame by frame: each side's next sequence
/// number and what it has received are kept, so a test says only what each side sends.
pub(super) struct Conv {
    pub(super) t: FlowTable,
    /// The client's next sequence number (FINs counted).
    pub(super) c: u32,
    /// The server's next sequence number (FINs counted).
    pub(super) s: u32,
    /// What the client has received from the server (its next ACK).
    pub(super) c_rcv: u32,
    /// What the server has received from the client (its next ACK).
    pub(super) s_rcv: u32,
    tsc: u32,
    tss: u32,
}

pub(super) const CISN: u32 = 1000;
pub(super) const SISN: u32 = 5000;

impl Conv {
    /// A handshake with MSS, SACK, timestamps and window scale both ways, on a table serving
    /// `app`.
    pub(super) fn open_with(app: fn() -> Box<dyn App>) -> Self {
        let t = FlowTable::new(vec![("198.18.0.10".parse().unwrap(), (7, 7))], app);
        let mut c = Self {
            t,
            c: CISN,
            s: SISN,
            c_rcv: 0,
            s_rcv: 0,
            tsc: 100,
            tss: 200,
        };
        c.feed(frame(
            C,
            S,
            CISN,
            0,
            SYN,
            64240,
            &syn_opts(1460, 7, 100),
            b"",
        ));
        assert_eq!(c.state(), Some(TcpState::SynReceived));
        c.feed(frame(
            S,
            C,
            SISN,
            CISN + 1,
            SYN | ACK,
            65160,
            &syn_opts(1460, 7, 200),
            b"",
        ));
        c.c = CISN + 1;
        c.s = SISN + 1;
        c.c_rcv = SISN + 1;
        c.s_rcv = CISN + 1;
        c.client(ACK, b"");
        c
    }

    /// [`Conv::open_with`] an echo service.
    pub(super) fn open() -> Self {
        Self::open_with(|| Box::new(Echo))
    }

    /// [`Conv::open_with`] a kv service.
    pub(super) fn open_kv() -> Self {
        Self::open_with(|| Box::new(Kv::default()))
    }

    pub(super) fn feed(&mut self, f: Vec<u8>) {
        self.t.observe(&f);
    }

    /// The client sends `data` with `flags` (ACK of all it received is added unless `flags`
    /// has RST alone).
    pub(super) fn client(&mut self, flags: u8, data: &[u8]) {
        let ack = self.c_rcv;
        self.client_acking(flags, data, ack);
    }

    /// The same, acknowledging `ack`.
    pub(super) fn client_acking(&mut self, flags: u8, data: &[u8], ack: u32) {
        self.tsc += 1;
        let flags = if flags == RST { RST } else { flags | ACK };
        self.feed(frame(
            C,
            S,
            self.c,
            ack,
            flags,
            502,
            &ts(self.tsc, self.tss),
            data,
        ));
        self.c = self
            .c
            .wrapping_add(data.len() as u32 + (flags & FIN != 0) as u32);
        // Delivered at once: the server has it.
        if flags & RST == 0 {
            self.s_rcv = self.c;
        }
    }

    /// The server sends `data` with `flags`, acknowledging all it received.
    pub(super) fn server(&mut self, flags: u8, data: &[u8]) {
        let ack = self.s_rcv;
        self.server_acking(flags, data, ack);
    }

    /// The same, acknowledging `ack`.
    pub(super) fn server_acking(&mut self, flags: u8, data: &[u8], ack: u32) {
        self.tss += 1;
        let flags = if flags == RST { RST } else { flags | ACK };
        self.feed(frame(
            S,
            C,
            self.s,
            ack,
            flags,
            509,
            &ts(self.tss, self.tsc),
            data,
        ));
        self.s = self
            .s
            .wrapping_add(data.len() as u32 + (flags & FIN != 0) as u32);
        if flags & RST == 0 {
            self.c_rcv = self.s;
        }
    }

    /// The tracked connection's state, or `None` once it left the table.
    pub(super) fn state(&self) -> Option<TcpState> {
        self.t.get(&tuple()).map(|f| f.state())
    }
}
