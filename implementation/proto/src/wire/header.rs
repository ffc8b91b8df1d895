//! The fixed header: a zero-copy view over a message's bytes ([`Packet`]) and its byte ranges
//! ([`field`]).

use super::cursor::{be16, be32, be64};
use super::{Error, HEADER_LEN, MAX_BODY, TAG_LEN};
use crate::policy::NodeId;

/// Byte ranges of the fixed header.
pub mod field {
    /// A byte range within a message.
    pub type Field = core::ops::Range<usize>;
    /// Magic, `"HFST"`.
    pub const MAGIC: Field = 0..4;
    /// Protocol version.
    pub const VERSION: usize = 4;
    /// Message type.
    pub const TYPE: usize = 5;
    /// Flags (type-specific; see PROTOCOL.md).
    pub const FLAGS: Field = 6..8;
    /// Cluster id.
    pub const CLUSTER: Field = 8..12;
    /// Sender's node id.
    pub const SENDER: Field = 12..16;
    /// Sender's boot epoch.
    pub const BOOT_EPOCH: Field = 16..20;
    /// Sequence number within the boot epoch.
    pub const SEQ: Field = 20..28;
    /// Body length.
    pub const LENGTH: Field = 28..32;
    /// Start of the body.
    pub const BODY: usize = 32;
}

/// A read/write view of a message's fixed header, body and tag.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer and checks its length ([`Packet::check_len`]).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a header, exactly `length` body bytes and a tag. After
    /// `Ok`, no accessor panics.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::Truncated);
        }
        let len = be32(&b[field::LENGTH]) as usize;
        if len > MAX_BODY {
            return Err(Error::BadLength);
        }
        match b.len().cmp(&(HEADER_LEN + len + TAG_LEN)) {
            std::cmp::Ordering::Less => Err(Error::Truncated),
            std::cmp::Ordering::Greater => Err(Error::BadLength),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The magic field.
    pub fn magic(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::MAGIC])
    }
    /// The version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// The raw message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The flags field.
    pub fn flags(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLAGS])
    }
    /// The cluster id.
    pub fn cluster(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::CLUSTER])
    }
    /// The sender's node id.
    pub fn sender(&self) -> NodeId {
        NodeId(be32(&self.buffer.as_ref()[field::SENDER]))
    }
    /// The sender's boot epoch.
    pub fn boot_epoch(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::BOOT_EPOCH])
    }
    /// The sequence number.
    pub fn seq(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SEQ])
    }
    /// The body length.
    pub fn length(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::LENGTH])
    }
    /// The body.
    pub fn body(&self) -> &[u8] {
        let len = self.length() as usize;
        &self.buffer.as_ref()[field::BODY..field::BODY + len]
    }
    /// Everything the tag covers: header and body.
    pub fn signed(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - TAG_LEN]
    }
    /// The tag.
    pub fn tag(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, r: core::ops::Range<usize>, v: &[u8]) {
        self.buffer.as_mut()[r].copy_from_slice(v);
    }
    /// Sets the magic field.
    pub fn set_magic(&mut self, v: u32) {
        self.put(field::MAGIC, &v.to_be_bytes());
    }
    /// Sets the version.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }
    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, v: u16) {
        self.put(field::FLAGS, &v.to_be_bytes());
    }
    /// Sets the cluster id.
    pub fn set_cluster(&mut self, v: u32) {
        self.put(field::CLUSTER, &v.to_be_bytes());
    }
    /// Sets the sender.
    pub fn set_sender(&mut self, v: NodeId) {
        self.put(field::SENDER, &v.0.to_be_bytes());
    }
    /// Sets the boot epoch.
    pub fn set_boot_epoch(&mut self, v: u32) {
        self.put(field::BOOT_EPOCH, &v.to_be_bytes());
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u64) {
        self.put(field::SEQ, &v.to_be_bytes());
    }
    /// Sets the body length.
    pub fn set_length(&mut self, v: u32) {
        self.put(field::LENGTH, &v.to_be_bytes());
    }
    /// The body, mutably (per the length field).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let len = self.length() as usize;
        &mut self.buffer.as_mut()[field::BODY..field::BODY + len]
    }
    /// The tag, mutably.
    pub fn tag_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let n = b.len();
        &mut b[n - TAG_LEN..]
    }
}
