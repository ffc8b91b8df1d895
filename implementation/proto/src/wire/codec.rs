//! Parsing and emitting every body and whole messages.

use super::{Error, HEADER_LEN, MsgType, TAG_LEN};
use crate::policy::{
    ArpPolicy, Assignment, FailbackMode, FailoverPolicy, NodeId, OwnedAddress, Ownership, SnoopMode,
};

use super::cursor::{Reader, Writer};
use super::*;

fn read_tuple(r: &mut Reader<'_>) -> Result<FourTuple, Error> {
    Ok(FourTuple {
        local: r.sock()?,
        remote: r.sock()?,
    })
}

fn write_tuple(w: &mut Writer<'_>, t: &FourTuple) {
    w.sock(&t.local);
    w.sock(&t.remote);
}

fn read_scope(r: &mut Reader<'_>) -> Result<Scope, Error> {
    match r.u8()? {
        0 => Ok(Scope::All),
        1 => {
            let index = r.u16()?;
            let of = r.u16()?;
            if of == 0 || index >= of {
                return Err(Error::Malformed);
            }
            Ok(Scope::Share { index, of })
        }
        2 => Ok(Scope::Connections(r.list(6, read_tuple)?)),
        _ => Err(Error::Malformed),
    }
}

fn write_scope(w: &mut Writer<'_>, s: &Scope) {
    match s {
        Scope::All => w.u8(0),
        Scope::Share { index, of } => {
            w.u8(1);
            w.u16(*index);
            w.u16(*of);
        }
        Scope::Connections(c) => {
            w.u8(2);
            w.count(c.len());
            for t in c.iter().take(u16::MAX as usize) {
                write_tuple(w, t);
            }
        }
    }
}

fn read_holdings(r: &mut Reader<'_>) -> Result<Vec<Holding>, Error> {
    r.list(16, |r| {
        Ok(Holding {
            owner: r.node()?,
            epoch: r.epoch()?,
            holder_boot: r.u32()?,
        })
    })
}

fn write_holdings(w: &mut Writer<'_>, h: &[Holding]) {
    w.count(h.len());
    for x in h.iter().take(u16::MAX as usize) {
        w.node(x.owner);
        w.epoch(x.epoch);
        w.u32(x.holder_boot);
    }
}

fn read_ownership(r: &mut Reader<'_>) -> Result<Ownership, Error> {
    let node_id = r.node()?;
    let failback = FailbackMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let snoop = SnoopMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let assignment = Assignment::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let miss_count = r.u8()?;
    let heartbeat_ms = r.u32()?;
    if miss_count == 0 || heartbeat_ms == 0 {
        return Err(Error::Malformed);
    }
    let backups = r.list(4, Reader::node)?;
    let arp = ArpPolicy::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let protocol = r.u8()?;
    let port_lo = r.u16()?;
    let port_hi = r.u16()?;
    if port_lo > port_hi {
        return Err(Error::Malformed);
    }
    let application = r.str8()?;
    let addresses = r.list(12, |r| {
        let addr = r.ip()?;
        let prefix = r.u8()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::Malformed);
        }
        let mac: [u8; 6] = r.take(6)?.try_into().map_err(|_| Error::Malformed)?;
        Ok(OwnedAddress { addr, prefix, mac })
    })?;
    Ok(Ownership {
        node_id,
        policy: FailoverPolicy {
            backups,
            failback,
            heartbeat_ms,
            miss_count,
            snoop,
            assignment,
        },
        addresses,
        ports: (port_lo, port_hi),
        application,
        arp,
        protocol,
    })
}

fn write_ownership(w: &mut Writer<'_>, o: &Ownership) {
    w.node(o.node_id);
    w.u8(o.policy.failback as u8);
    w.u8(o.policy.snoop as u8);
    w.u8(o.policy.assignment as u8);
    w.u8(o.policy.miss_count);
    w.u32(o.policy.heartbeat_ms);
    w.count(o.policy.backups.len());
    for b in &o.policy.backups {
        w.node(*b);
    }
    w.u8(o.arp as u8);
    w.u8(o.protocol);
    w.u16(o.ports.0);
    w.u16(o.ports.1);
    w.str8(&o.application);
    w.count(o.addresses.len());
    for a in &o.addresses {
        w.ip(&a.addr);
        w.u8(a.prefix);
        w.b.extend_from_slice(&a.mac);
    }
}

fn read_reply(r: &mut Reader<'_>) -> Result<AssumeReply, Error> {
    let owner = r.node()?;
    let request_id = r.u32()?;
    let reason = DenyReason::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let scope = read_scope(r)?;
    Ok(AssumeReply {
        owner,
        request_id,
        scope,
        reason,
    })
}

fn write_reply(w: &mut Writer<'_>, a: &AssumeReply) {
    w.node(a.owner);
    w.u32(a.request_id);
    w.u8(a.reason as u8);
    write_scope(w, &a.scope);
}

/// A CONN-STATE part: the connection's header fields, then its slice of the queued bytes.
fn read_conn_state(r: &mut Reader<'_>) -> Result<Body, Error> {
    let owner = r.node()?;
    let epoch = r.epoch()?;
    let has_tuple = r.bool()?;
    let tuple = if has_tuple {
        Some(FourTuple {
            local: r.sock()?,
            remote: r.sock()?,
        })
    } else {
        None
    };
    let c = ConnState {
        owner,
        epoch,
        tuple,
        snd_una: r.u32()?,
        snd_nxt: r.u32()?,
        rcv_nxt: r.u32()?,
        snd_wnd: r.u32()?,
        rcv_wnd: r.u32()?,
        mss: r.u16()?,
        snd_wscale: r.u8()?,
        rcv_wscale: r.u8()?,
        sack: r.bool()?,
        timestamps: r.bool()?,
        ts_val: r.u32()?,
        ts_ecr: r.u32()?,
        fin_received: r.bool()?,
        fin_sent: r.bool()?,
        unacked: Vec::new(),
        checkpoint: Vec::new(),
    };
    let part = ConnStatePart {
        head: c,
        unacked_len: r.u32()?,
        checkpoint_len: r.u32()?,
        offset: r.u32()?,
        chunk: r.bytes32()?,
    };
    let total = part.unacked_len as u64 + part.checkpoint_len as u64;
    if part.head.snd_wscale > 14
        || part.head.rcv_wscale > 14
        || part.offset as u64 + part.chunk.len() as u64 > total
    {
        return Err(Error::Malformed);
    }
    Ok(Body::ConnState(Box::new(part)))
}

/// A HANDBACK part.
fn read_handback(r: &mut Reader<'_>) -> Result<Body, Error> {
    let owner = r.node()?;
    let epoch = r.epoch()?;
    let mode = FailbackMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let generation = r.u32()?;
    let part = r.u16()?;
    let parts = r.u16()?;
    if part >= parts {
        return Err(Error::Malformed);
    }
    let draining = r.list(6, read_tuple)?;
    Ok(Body::Handback(Handback {
        owner,
        epoch,
        mode,
        generation,
        part,
        parts,
        draining,
    }))
}

impl Body {
    /// Parses a body of the given type; the whole slice must be consumed.
    pub fn parse(ty: MsgType, body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { b: body };
        let out = match ty {
            MsgType::Announce => {
                let ownership = read_ownership(&mut r)?;
                let holdings = read_holdings(&mut r)?;
                let relayed = r.list(20, read_ownership)?;
                Self::Announce(Announce {
                    ownership,
                    holdings,
                    relayed,
                })
            }
            MsgType::Solicit => {
                let t = r.u32()?;
                Self::Solicit {
                    target: (t != 0).then_some(NodeId(t)),
                }
            }
            MsgType::Heartbeat => {
                let holdings = read_holdings(&mut r)?;
                let heard = r.list(12, |r| {
                    Ok(Heard {
                        node: r.node()?,
                        boot_epoch: r.u32()?,
                        age_ms: r.u32()?,
                    })
                })?;
                Self::Heartbeat { holdings, heard }
            }
            MsgType::AssumeRequest => {
                let owner = r.node()?;
                let request_id = r.u32()?;
                let known = Holding {
                    owner,
                    epoch: r.epoch()?,
                    holder_boot: r.u32()?,
                };
                let scope = read_scope(&mut r)?;
                Self::AssumeRequest(AssumeRequest {
                    owner,
                    request_id,
                    scope,
                    known,
                })
            }
            MsgType::AssumeGrant => Self::AssumeGrant(read_reply(&mut r)?),
            MsgType::AssumeDeny => Self::AssumeDeny(read_reply(&mut r)?),
            MsgType::TakeoverNotice => {
                let owner = r.node()?;
                let epoch = r.epoch()?;
                let scope = read_scope(&mut r)?;
                let addresses = r.list(5, Reader::ip)?;
                Self::TakeoverNotice(TakeoverNotice {
                    owner,
                    epoch,
                    scope,
                    addresses,
                })
            }
            MsgType::Handback => read_handback(&mut r)?,
            MsgType::Reclaim => {
                let owner = r.node()?;
                let held = r.epoch()?;
                Self::Reclaim(Reclaim { owner, held })
            }
            MsgType::Fetch => Self::Fetch(Fetch {
                owner: r.node()?,
                tuple: read_tuple(&mut r)?,
                seq: r.u32()?,
                len: r.u32()?,
            }),
            MsgType::Alive => Self::Alive,
            MsgType::Fetched => Self::Fetched(Fetched {
                owner: r.node()?,
                tuple: read_tuple(&mut r)?,
                seq: r.u32()?,
                gone: r.bool()?,
                data: r.bytes32()?,
            }),
            MsgType::ConnState => read_conn_state(&mut r)?,
        };
        r.end()?;
        Ok(out)
    }

    /// Appends the body's encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer { b: out };
        match self {
            Self::Announce(a) => {
                write_ownership(&mut w, &a.ownership);
                write_holdings(&mut w, &a.holdings);
                w.count(a.relayed.len());
                for o in a.relayed.iter().take(u16::MAX as usize) {
                    write_ownership(&mut w, o);
                }
            }
            Self::Solicit { target } => w.u32(target.map_or(0, |t| t.0)),
            Self::Heartbeat { holdings, heard } => {
                write_holdings(&mut w, holdings);
                w.count(heard.len());
                for h in heard.iter().take(u16::MAX as usize) {
                    w.node(h.node);
                    w.u32(h.boot_epoch);
                    w.u32(h.age_ms);
                }
            }
            Self::AssumeRequest(a) => {
                w.node(a.owner);
                w.u32(a.request_id);
                w.epoch(a.known.epoch);
                w.u32(a.known.holder_boot);
                write_scope(&mut w, &a.scope);
            }
            Self::AssumeGrant(a) | Self::AssumeDeny(a) => write_reply(&mut w, a),
            Self::TakeoverNotice(t) => {
                w.node(t.owner);
                w.epoch(t.epoch);
                write_scope(&mut w, &t.scope);
                w.count(t.addresses.len());
                for a in &t.addresses {
                    w.ip(a);
                }
            }
            Self::Handback(h) => {
                w.node(h.owner);
                w.epoch(h.epoch);
                w.u8(h.mode as u8);
                w.u32(h.generation);
                w.u16(h.part);
                w.u16(h.parts);
                w.count(h.draining.len());
                for t in h.draining.iter().take(u16::MAX as usize) {
                    write_tuple(&mut w, t);
                }
            }
            Self::Reclaim(r) => {
                w.node(r.owner);
                w.epoch(r.held);
            }
            Self::Fetch(f) => {
                w.node(f.owner);
                write_tuple(&mut w, &f.tuple);
                w.u32(f.seq);
                w.u32(f.len);
            }
            Self::Alive => {}
            Self::Fetched(f) => {
                w.node(f.owner);
                write_tuple(&mut w, &f.tuple);
                w.u32(f.seq);
                w.u8(f.gone as u8);
                w.bytes32(&f.data);
            }
            Self::ConnState(p) => {
                let c = &p.head;
                w.node(c.owner);
                w.epoch(c.epoch);
                match &c.tuple {
                    Some(t) => {
                        w.u8(1);
                        w.sock(&t.local);
                        w.sock(&t.remote);
                    }
                    None => w.u8(0),
                }
                w.u32(c.snd_una);
                w.u32(c.snd_nxt);
                w.u32(c.rcv_nxt);
                w.u32(c.snd_wnd);
                w.u32(c.rcv_wnd);
                w.u16(c.mss);
                w.u8(c.snd_wscale);
                w.u8(c.rcv_wscale);
                w.u8(c.sack as u8);
                w.u8(c.timestamps as u8);
                w.u32(c.ts_val);
                w.u32(c.ts_ecr);
                w.u8(c.fin_received as u8);
                w.u8(c.fin_sent as u8);
                w.u32(p.unacked_len);
                w.u32(p.checkpoint_len);
                w.u32(p.offset);
                w.bytes32(&p.chunk);
            }
        }
    }

    /// The encoded length of the body.
    pub fn buffer_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v);
        v.len()
    }
}

impl Message {
    /// Parses a message whose length was checked. The tag is *not* checked here; see
    /// [`crate::auth::open`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        if p.magic() != MAGIC {
            return Err(Error::BadMagic);
        }
        if p.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let ty = MsgType::from_u8(p.msg_type()).ok_or(Error::UnknownType)?;
        Ok(Self {
            flags: p.flags(),
            cluster: p.cluster(),
            sender: p.sender(),
            boot_epoch: p.boot_epoch(),
            seq: p.seq(),
            body: Body::parse(ty, p.body())?,
        })
    }

    /// The full encoded length: header, body and tag.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.buffer_len() + TAG_LEN
    }

    /// Writes header and body into a buffer of exactly [`Message::buffer_len`] bytes; the tag
    /// bytes are left for [`crate::auth::seal`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let mut body = Vec::new();
        self.body.emit(&mut body);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_msg_type(self.body.msg_type() as u8);
        p.set_flags(self.flags);
        p.set_cluster(self.cluster);
        p.set_sender(self.sender);
        p.set_boot_epoch(self.boot_epoch);
        p.set_seq(self.seq);
        p.set_length(body.len() as u32);
        p.body_mut().copy_from_slice(&body);
    }
}
