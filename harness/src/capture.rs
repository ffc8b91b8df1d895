//! In-process capture of every port of a switch into one pcapng file.
//!
//! Read [`Capture::start`] first. One `AF_PACKET`/`ETH_P_ALL` socket, opened inside the switch
//! namespace and bound to no interface, sees every frame on every port there; `sll_ifindex` says
//! which port. Each port has its own Interface Description Block named `SWITCH:NODE` (`NODE.IF`
//! when a node has several interfaces on one switch). Timestamps are the kernel's receive times
//! (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`), the same clock as the harness's event log.
//!
//! Direction is the port's view: *inbound* frames were sent by the node into the switch,
//! *outbound* frames were delivered by the switch to the node (mirrored copies included).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::netns::NetNs;
use crate::pcapng::{Direction, Writer};

const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_OUTGOING: u8 = 4;

/// What a capture saw, for the run report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CaptureStats {
    /// The pcapng file.
    pub file: PathBuf,
    /// Frames written.
    pub written: u64,
    /// Frames the kernel queued to the socket (`tp_packets`).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the socket was full (`tp_drops`).
    pub kernel_drops: u64,
}

type PortMap = Arc<Mutex<HashMap<i32, u32>>>;

/// A harness event waiting to be written as a comment on the first frame at or after it on
/// each port (so that Wireshark's `frame.comment contains "power-off"` finds it).
#[derive(Debug)]
struct Note {
    ts: u64,
    text: String,
    /// The ports (IDB ids) that have it already.
    done: std::collections::HashSet<u32>,
}

type Notes = Arc<Mutex<Vec<Note>>>;

/// A running capture of one switch.
#[derive(Debug)]
pub struct Capture {
    /// 0 while running, else the stop time in ns: frames stamped later are not written.
    stop: Arc<AtomicU64>,
    ports: PortMap,
    names: HashMap<String, u32>,
    notes: Notes,
    thread: Option<JoinHandle<io::Result<CaptureStats>>>,
}

fn packet_socket() -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: socket(2); result checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, opt, val: libc::c_int| {
        // SAFETY: setsockopt with an int.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                (&val as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    // A large buffer so bursts (a 10 MB stream, a takeover storm) are not dropped; FORCE works
    // for root beyond rmem_max.
    set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)
        .or_else(|_| set(libc::SOL_SOCKET, libc::SO_RCVBUF, 64 << 20))?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 10_000,
    };
    // SAFETY: setsockopt with a timeval.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn stats(fd: &OwnedFd) -> (u64, u64) {
    let mut st = [0u32; 2];
    let mut len = size_of::<[u32; 2]>() as libc::socklen_t;
    // SAFETY: getsockopt into a tpacket_stats-sized buffer. Reading resets the counters.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        (0, 0)
    } else {
        (st[0] as u64, st[1] as u64)
    }
}

/// One received frame: data length, original length, ifindex, packet type, timestamp.
fn recv(
    fd: &OwnedFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, usize, i32, u8, u64)> {
    // SAFETY: zeroed sockaddr_ll and cmsg buffer are valid out-parameters.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut cmsg = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr pointing at the buffers above, all alive for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cmsg);
    // SAFETY: recvmsg with a valid msghdr.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC | flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = 0u64;
    // SAFETY: walking the control messages the kernel just wrote, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if ts == 0 {
        ts = crate::now_ns();
    }
    let orig = n as usize;
    Ok((
        orig.min(buf.len()),
        orig,
        addr.sll_ifindex,
        addr.sll_pkttype,
        ts,
    ))
}

impl Capture {
    /// Starts capturing in `ns` into `path`. `interfaces` are the IDB names and descriptions, in
    /// order; bind each port's ifindex to its IDB with [`Capture::bind`].
    pub fn start(ns: &NetNs, path: &Path, interfaces: &[(String, String)]) -> io::Result<Self> {
        let fd = ns.run(packet_socket)??;
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut w = Writer::new(BufWriter::with_capacity(1 << 20, file), "holdfast-harness")?;
        let mut names = HashMap::new();
        for (name, desc) in interfaces {
            let id = w.add_interface(name, desc)?;
            names.insert(name.clone(), id);
        }
        let stop = Arc::new(AtomicU64::new(0));
        let ports: PortMap = Arc::default();
        let notes: Notes = Arc::default();
        let (stop2, ports2, path2) = (stop.clone(), ports.clone(), path.to_owned());
        let (notes2, n_ports) = (notes.clone(), names.len());
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(fd, w, stop2, ports2, path2, notes2, n_ports))?;
        Ok(Self {
            stop,
            ports,
            names,
            notes,
            thread: Some(thread),
        })
    }

    /// Writes `text` as a comment (`harness: TEXT`) on the first frame at or after `ts_ns` on
    /// every port.
    pub fn note(&self, ts_ns: u64, text: &str) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Note {
                ts: ts_ns,
                text: format!("harness: {text}"),
                done: Default::default(),
            });
    }

    /// Records frames seen on `ifindex` under the IDB named `name` (after a power-on, a port has
    /// a new ifindex but the same name).
    pub fn bind(&self, ifindex: i32, name: &str) {
        if let Some(id) = self.names.get(name) {
            let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
            p.retain(|_, v| v != id);
            p.insert(ifindex, *id);
        }
    }

    /// Stops the capture after draining what the kernel has queued, and closes the file.
    pub fn stop(mut self) -> io::Result<CaptureStats> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<CaptureStats> {
        self.stop.store(crate::now_ns(), Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("capture thread panicked"))),
            None => Ok(CaptureStats::default()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn capture_loop(
    fd: OwnedFd,
    mut w: Writer<BufWriter<File>>,
    stop: Arc<AtomicU64>,
    ports: PortMap,
    path: PathBuf,
    notes: Notes,
    n_ports: usize,
) -> io::Result<CaptureStats> {
    let mut buf = vec![0u8; crate::pcapng::SNAPLEN as usize];
    let mut st = CaptureStats {
        file: path,
        ..Default::default()
    };
    let mut dirty = false;
    loop {
        let stop_at = stop.load(Ordering::SeqCst);
        let flags = if stop_at == 0 { 0 } else { libc::MSG_DONTWAIT };
        match recv(&fd, &mut buf, flags) {
            Ok((_, _, _, _, ts)) if stop_at != 0 && ts > stop_at => break,
            Ok((len, orig, ifindex, pkttype, ts)) => {
                let id = ports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&ifindex)
                    .copied();
                if let Some(id) = id {
                    let dir = if pkttype == PACKET_OUTGOING {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    };
                    let comment = notes_for(&notes, id, ts, n_ports);
                    w.packet(
                        id,
                        ts,
                        &buf[..len],
                        orig as u32,
                        Some(dir),
                        comment.as_deref(),
                    )?;
                    st.written += 1;
                    dirty = true;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Idle: make what we have visible to a live reader. Once stopping, an empty
                // queue means everything up to the stop time is written.
                if dirty {
                    w.flush()?;
                    dirty = false;
                }
                if stop_at != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A port vanishing under us (power-off) is not an error for the capture.
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {}
            Err(e) => return Err(e),
        }
    }
    let (p, d) = stats(&fd);
    st.kernel_packets += p;
    st.kernel_drops += d;
    w.flush()?;
    Ok(st)
}

/// The comments due on a frame of port `id` stamped `ts`: every note at or before it this port
/// has not had yet (joined by "; "). A note every port has had is dropped.
fn notes_for(notes: &Notes, id: u32, ts: u64, n_ports: usize) -> Option<String> {
    let mut n = notes.lock().unwrap_or_else(|e| e.into_inner());
    if n.is_empty() {
        return None;
    }
    let mut texts: Vec<&str> = Vec::new();
    for note in n.iter_mut().filter(|x| x.ts <= ts) {
        if note.done.insert(id) {
            texts.push(&note.text);
        }
    }
    let out = (!texts.is_empty()).then(|| texts.join("; "));
    n.retain(|x| x.done.len() < n_ports);
    out
}

/// One frame read back from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The interface (port) name, `SWITCH:NODE`.
    pub iface: String,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// True if the node sent it into the switch.
    pub inbound: bool,
    /// The Ethernet frame.
    pub data: Vec<u8>,
    /// Its comment: the harness events that happened since this port's previous frame
    /// (`harness: power-off a`, joined by "; ").
    pub comment: Option<String>,
}

/// Reads a pcapng file written by [`Capture`] (or any pcapng with nanosecond timestamps),
/// with the `pcap-file` crate, independently of our writer.
pub fn read(path: &Path) -> io::Result<Vec<Frame>> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut r = PcapNgReader::new(&bytes[..])
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    let mut names: Vec<String> = Vec::new();
    let mut frames = Vec::new();
    while let Some(b) = r.next_block() {
        match b.map_err(|e| io::Error::other(format!("{}: {e}", path.display())))? {
            Block::InterfaceDescription(idb) => names.push(
                idb.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(epb) => {
                let flags = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                });
                frames.push(Frame {
                    iface: names
                        .get(epb.interface_id as usize)
                        .cloned()
                        .unwrap_or_default(),
                    ts_ns: epb.timestamp.as_nanos() as u64,
                    inbound: flags.is_none_or(|f| f & 3 == 1),
                    data: epb.data.to_vec(),
                    comment: epb.options.iter().find_map(|o| match o {
                        EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                        _ => None,
                    }),
                });
            }
            _ => {}
        }
    }
    Ok(frames)
}

/// A one-line summary of the frames a timeline cares about: ARP announcements and TCP resets.
pub fn notable(f: &Frame) -> Option<String> {
    let d = &f.data;
    let ethertype = u16::from_be_bytes([*d.get(12)?, *d.get(13)?]);
    match ethertype {
        0x0806 if d.len() >= 42 => {
            let op = u16::from_be_bytes([d[20], d[21]]);
            let (spa, tpa) = (&d[28..32], &d[38..42]);
            let mac = crate::topology::fmt_mac(d[22..28].try_into().ok()?);
            let ip = std::net::Ipv4Addr::new(spa[0], spa[1], spa[2], spa[3]);
            (op == 1 && spa == tpa).then(|| format!("gratuitous ARP: {ip} is at {mac}"))
        }
        0x0800 if d.len() >= 34 => {
            let ihl = ((d[14] & 0x0f) as usize) * 4;
            if d[23] != 6 || d.len() < 14 + ihl + 14 {
                return None;
            }
            let t = 14 + ihl;
            let flags = d[t + 13];
            let src = std::net::Ipv4Addr::new(d[26], d[27], d[28], d[29]);
            let port = u16::from_be_bytes([d[t], d[t + 1]]);
            (flags & 0x04 != 0).then(|| format!("TCP reset from {src}:{port}"))
        }
        _ => None,
    }
}
