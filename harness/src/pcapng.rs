//! A minimal pcapng writer: one section, Ethernet interfaces with nanosecond timestamps,
//! enhanced packet blocks with a direction flag and optional comments.
//!
//! Block layouts follow the pcapng specification (draft-ietf-opsawg-pcapng): Section Header
//! Block 4.1, Interface Description Block 4.2, Enhanced Packet Block 4.3. Files open in
//! Wireshark and tshark, and read back with the `pcap-file` crate (see the tests).

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// Snap length written in each IDB.
pub const SNAPLEN: u32 = 262_144;

/// Which way a frame crossed the capture point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received on the interface.
    Inbound,
    /// Sent out of the interface.
    Outbound,
}

/// Writes a pcapng stream.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    interfaces: u32,
}

fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
    buf.extend_from_slice(value);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn end_options(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&OPT_ENDOFOPT.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
}

impl<W: Write> Writer<W> {
    /// Starts a section; `application` goes into `shb_userappl`.
    pub fn new(mut out: W, application: &str) -> io::Result<Self> {
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut body, SHB_USERAPPL, application.as_bytes());
        end_options(&mut body);
        write_block(&mut out, SHB, &body)?;
        Ok(Self { out, interfaces: 0 })
    }

    /// Adds an Ethernet interface with nanosecond timestamps; returns its interface id.
    pub fn add_interface(&mut self, name: &str, description: &str) -> io::Result<u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&SNAPLEN.to_le_bytes());
        option(&mut body, IF_NAME, name.as_bytes());
        if !description.is_empty() {
            option(&mut body, IF_DESCRIPTION, description.as_bytes());
        }
        // 10^-9 s resolution.
        option(&mut body, IF_TSRESOL, &[9]);
        end_options(&mut body);
        write_block(&mut self.out, IDB, &body)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one frame. `ts_ns` is nanoseconds since the Unix epoch.
    pub fn packet(
        &mut self,
        interface: u32,
        ts_ns: u64,
        data: &[u8],
        original_len: u32,
        dir: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let data = &data[..data.len().min(SNAPLEN as usize)];
        let mut body = Vec::with_capacity(data.len() + 48);
        body.extend_from_slice(&interface.to_le_bytes());
        body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&original_len.max(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let mut opts = false;
        if let Some(d) = dir {
            let flags: u32 = match d {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            };
            option(&mut body, EPB_FLAGS, &flags.to_le_bytes());
            opts = true;
        }
        if let Some(c) = comment {
            option(&mut body, OPT_COMMENT, c.as_bytes());
            opts = true;
        }
        if opts {
            end_options(&mut body);
        }
        write_block(&mut self.out, EPB, &body)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn write_block(out: &mut impl Write, ty: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    out.write_all(&ty.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn reads_back_with_pcap_file() {
        let mut w = Writer::new(Vec::new(), "test").unwrap();
        let a = w.add_interface("sw0:a", "port a").unwrap();
        let b = w.add_interface("sw0:b", "").unwrap();
        let frame = [0xa5u8; 61];
        w.packet(
            b,
            1_700_000_000_123_456_789,
            &frame,
            61,
            Some(Direction::Inbound),
            Some("hello"),
        )
        .unwrap();
        w.packet(a, 1_700_000_000_223_456_789, &frame[..14], 100, None, None)
            .unwrap();
        let bytes = w.into_inner();
        assert_eq!(bytes.len() % 4, 0);
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut names = Vec::new();
        let mut packets = Vec::new();
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => names.push(format!("{:?}", idb.options)),
                Block::EnhancedPacket(epb) => {
                    packets.push((epb.interface_id, epb.data.len(), epb.original_len))
                }
                _ => {}
            }
        }
        assert_eq!(names.len(), 2);
        assert!(names[0].contains("sw0:a"), "{names:?}");
        assert_eq!(packets, vec![(1, 61, 61), (0, 14, 100)]);
    }
}
