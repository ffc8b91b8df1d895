//! Keeping the captures of runs that passed small: every TCP frame is cut to its headers and
//! the first [`TCP_KEEP`] bytes of the frame, its original length kept (Wireshark marks it
//! "packet size limited during capture"); everything else (ARP, neighbour discovery, the
//! control protocol) stays whole. A failing run keeps its captures as they were, and
//! `HOLDFAST_KEEP_CAPTURES=1` keeps every capture whole.

use std::io;
use std::path::{Path, PathBuf};

use crate::pcapng::{Direction, Writer};

/// Bytes kept of a TCP frame: Ethernet, IPv6 and a TCP header with every option fit.
pub const TCP_KEEP: usize = 160;

/// Whether the user asked to keep every capture whole.
pub fn keep_all() -> bool {
    std::env::var_os("HOLDFAST_KEEP_CAPTURES").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Shrinks every `*.pcapng` under `dir` (see the module); returns the bytes before and after.
/// Nothing happens under `HOLDFAST_KEEP_CAPTURES`.
pub fn shrink_dir(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut before, mut after) = (0, 0);
    if keep_all() {
        return Ok((0, 0));
    }
    for f in files_under(dir, &["pcapng"]) {
        let (b, a) = shrink(&f)?;
        before += b;
        after += a;
    }
    Ok((before, after))
}

/// Every file under `dir` (recursively) whose extension is one of `exts`, sorted.
pub fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, exts));
        } else if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Is this Ethernet frame TCP (over IPv4 or IPv6, untagged)?
fn is_tcp(d: &[u8]) -> bool {
    match d.get(12..14) {
        Some([0x08, 0x00]) => d.get(23) == Some(&6),
        Some([0x86, 0xdd]) => d.get(20) == Some(&6),
        _ => false,
    }
}

/// Rewrites one capture with its TCP frames cut (in a temporary file, then renamed over it).
pub fn shrink(path: &Path) -> io::Result<(u64, u64)> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let err = |e: &dyn std::fmt::Display| io::Error::other(format!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| err(&e))?;
    let mut r = PcapNgReader::new(&bytes[..]).map_err(|e| err(&e))?;
    let tmp = path.with_extension("pcapng.shrinking");
    let file = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
    let mut w = Writer::new(io::BufWriter::new(file), "holdfast-harness")?;
    while let Some(b) = r.next_block() {
        match b.map_err(|e| err(&e))? {
            Block::InterfaceDescription(idb) => {
                let (mut name, mut desc) = (String::new(), String::new());
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => desc = d.to_string(),
                        _ => {}
                    }
                }
                w.add_interface(&name, &desc)?;
            }
            Block::EnhancedPacket(epb) => {
                let dir = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) if f & 3 == 1 => Some(Direction::Inbound),
                    EnhancedPacketOption::Flags(f) if f & 3 == 2 => Some(Direction::Outbound),
                    _ => None,
                });
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                let data: &[u8] = &epb.data;
                let keep = if is_tcp(data) {
                    data.len().min(TCP_KEEP)
                } else {
                    data.len()
                };
                w.packet(
                    epb.interface_id,
                    epb.timestamp.as_nanos() as u64,
                    &data[..keep],
                    epb.original_len,
                    dir,
                    comment.as_deref(),
                )?;
            }
            _ => {}
        }
    }
    w.flush()?;
    drop(w);
    let after = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    std::fs::rename(&tmp, path).map_err(|e| err(&e))?;
    Ok((bytes.len() as u64, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_frames_are_cut_and_everything_else_kept() {
        let dir = crate::ScratchDir::new("holdfast-shrink").unwrap();
        let p = dir.join("t.pcapng");
        let mut tcp = vec![0u8; 9000];
        tcp[12..14].copy_from_slice(&[0x08, 0x00]);
        tcp[23] = 6;
        let mut udp = vec![0u8; 3000];
        udp[12..14].copy_from_slice(&[0x08, 0x00]);
        udp[23] = 17;
        {
            let f = std::fs::File::create(&p).unwrap();
            let mut w = Writer::new(io::BufWriter::new(f), "test").unwrap();
            let id = w.add_interface("sw0:a", "a's port").unwrap();
            w.packet(id, 1, &tcp, 9000, Some(Direction::Inbound), None)
                .unwrap();
            w.packet(id, 2, &udp, 3000, Some(Direction::Outbound), Some("x"))
                .unwrap();
            w.flush().unwrap();
        }
        let (before, after) = shrink(&p).unwrap();
        assert!(after < before / 2, "{before} -> {after}");
        let frames = crate::capture::read(&p).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, tcp[..TCP_KEEP]);
        assert_eq!(
            (frames[0].iface.as_str(), frames[0].inbound),
            ("sw0:a", true)
        );
        assert_eq!(frames[1].data, udp);
        assert!(!frames[1].inbound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
