//! Cursor helpers: every read is bounds-checked, so malformed input is an `Err`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Error;
use crate::policy::{Epoch, NodeId};

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(Error::Malformed);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(super) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, Error> {
        Ok(be16(self.take(2)?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, Error> {
        Ok(be32(self.take(4)?))
    }
    pub(super) fn bool(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed),
        }
    }
    pub(super) fn node(&mut self) -> Result<NodeId, Error> {
        Ok(NodeId(self.u32()?))
    }
    pub(super) fn epoch(&mut self) -> Result<Epoch, Error> {
        Ok(Epoch {
            counter: self.u32()?,
            holder: self.node()?,
        })
    }
    pub(super) fn ip(&mut self) -> Result<IpAddr, Error> {
        match self.u8()? {
            4 => {
                let o: [u8; 4] = self.take(4)?.try_into().map_err(|_| Error::Malformed)?;
                Ok(IpAddr::V4(Ipv4Addr::from(o)))
            }
            6 => {
                let o: [u8; 16] = self.take(16)?.try_into().map_err(|_| Error::Malformed)?;
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => Err(Error::Malformed),
        }
    }
    pub(super) fn sock(&mut self) -> Result<SocketAddr, Error> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    pub(super) fn bytes32(&mut self) -> Result<Vec<u8>, Error> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(super) fn str8(&mut self) -> Result<String, Error> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::Malformed)
    }
    /// A count followed by that many items; the count is checked against the bytes left so a
    /// hostile count cannot make us allocate.
    pub(super) fn list<T>(
        &mut self,
        min_item: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let n = self.u16()? as usize;
        if n * min_item > self.b.len() {
            return Err(Error::Malformed);
        }
        (0..n).map(|_| f(self)).collect()
    }
    pub(super) fn end(&self) -> Result<(), Error> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    }
}

pub(super) struct Writer<'a> {
    pub(super) b: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(super) fn u8(&mut self, v: u8) {
        self.b.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn node(&mut self, v: NodeId) {
        self.u32(v.0);
    }
    pub(super) fn epoch(&mut self, e: Epoch) {
        self.u32(e.counter);
        self.node(e.holder);
    }
    pub(super) fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.b.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.b.extend_from_slice(&a.octets());
            }
        }
    }
    pub(super) fn sock(&mut self, s: &SocketAddr) {
        self.ip(&s.ip());
        self.u16(s.port());
    }
    pub(super) fn bytes32(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.b.extend_from_slice(v);
    }
    pub(super) fn str8(&mut self, s: &str) {
        let s = &s.as_bytes()[..s.len().min(255)];
        self.u8(s.len() as u8);
        self.b.extend_from_slice(s);
    }
    pub(super) fn count(&mut self, n: usize) {
        self.u16(n.min(u16::MAX as usize) as u16);
    }
}

pub(super) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub(super) fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}
