//! The capture files' writer: one section, Ethernet interfaces with nanosecond timestamps,
//! enhanced packet blocks with a direction flag and optional comments, written with
//! `pcap-file`'s pcapng writer (blocks per draft-ietf-opsawg-pcapng: SHB 4.1, IDB 4.2, EPB 4.3).
//! Files open in Wireshark and tshark, and read back with `pcap-file`'s reader (the tests).

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};

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
pub struct Writer<W: Write> {
    out: PcapNgWriter<W>,
    interfaces: u32,
}

impl<W: Write> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

fn io_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write> Writer<W> {
    /// Starts a section (little-endian); `application` goes into `shb_userappl`.
    pub fn new(out: W, application: &str) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: pcap_file::Endianness::Little,
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(
                application.to_owned(),
            ))],
        };
        let out = PcapNgWriter::with_section_header(out, section).map_err(io_err)?;
        Ok(Self { out, interfaces: 0 })
    }

    /// Adds an Ethernet interface with nanosecond timestamps; returns its interface id.
    pub fn add_interface(&mut self, name: &str, description: &str) -> io::Result<u32> {
        let mut options = vec![InterfaceDescriptionOption::IfName(Cow::Borrowed(name))];
        if !description.is_empty() {
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                description,
            )));
        }
        // 10^-9 s resolution: the EPB timestamps are nanoseconds.
        options.push(InterfaceDescriptionOption::IfTsResol(9));
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            options,
        };
        self.out.write_pcapng_block(idb).map_err(io_err)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one frame (cut to [`SNAPLEN`]). `ts_ns` is nanoseconds since the Unix epoch.
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
        let mut options = Vec::new();
        if let Some(d) = dir {
            options.push(EnhancedPacketOption::Flags(match d {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            }));
        }
        if let Some(c) = comment {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(c)));
        }
        let epb = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: original_len.max(data.len() as u32),
            data: Cow::Borrowed(data),
            options,
        };
        self.out.write_pcapng_block(epb).map_err(io_err)?;
        Ok(())
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.get_mut().flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out.into_inner()
    }
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
        let mut names = vec![format!("{:?}", r.section().options)];
        let mut packets = Vec::new();
        let mut stamps = Vec::new();
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => names.push(format!("{:?}", idb.options)),
                Block::EnhancedPacket(epb) => {
                    packets.push((epb.interface_id, epb.data.len(), epb.original_len));
                    stamps.push((
                        epb.timestamp.as_nanos() as u64,
                        format!("{:?}", epb.options),
                    ));
                }
                _ => {}
            }
        }
        // The section header is read first, then the two interfaces.
        assert_eq!(names.len(), 3);
        assert!(names[0].contains("UserApplication(\"test\")"), "{names:?}");
        assert!(names[1].contains("IfName(\"sw0:a\")"), "{names:?}");
        assert!(names[1].contains("IfTsResol(9)"), "{names:?}");
        assert!(!names[2].contains("IfDescription"), "{names:?}");
        assert_eq!(packets, vec![(1, 61, 61), (0, 14, 100)]);
        assert_eq!(stamps[0].0, 1_700_000_000_123_456_789);
        assert!(stamps[0].1.contains("Flags(1)") && stamps[0].1.contains("Comment(\"hello\")"));
        assert_eq!(stamps[1], (1_700_000_000_223_456_789, "[]".to_owned()));
    }
}
