//! The rtnetlink requests the harness sends, built with `netlink-packet-route`: one function
//! per request, pure, so that `golden.rs` can compare each with what `ip` or `tc` sends for the
//! same change.

use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcBpfFlags, TcFilterBpfOption, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// `TCA_BPF_OPS_LEN` and `TCA_BPF_OPS` (`include/uapi/linux/pkt_cls.h`): classic BPF in a
/// `bpf` filter, which `netlink-packet-route` 0.34 carries only as raw attributes.
const TCA_BPF_OPS_LEN: u16 = 4;
const TCA_BPF_OPS: u16 = 5;
/// `ETH_P_ALL`, as `tcm_info`'s protocol half wants it (network order).
const ETH_P_ALL: u16 = 0x0003;

/// A request: the message and its `NLM_F_*` flags beyond request and ack.
pub(crate) type Request = (RouteNetlinkMessage, u16);

/// A tc hook on a clsact qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Frames the interface receives.
    Ingress,
    /// Frames the interface transmits.
    Egress,
}

impl Hook {
    pub(crate) fn parent(self) -> TcHandle {
        TcHandle {
            major: 0xFFFF,
            minor: match self {
                Self::Ingress => TcHandle::MIN_INGRESS,
                Self::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }
}

/// The clsact qdisc's handle (`ffff:`) and parent (`TC_H_CLSACT`).
pub(crate) const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xFFFF,
    minor: 0,
};
pub(crate) const CLSACT_PARENT: TcHandle = TcHandle {
    major: 0xFFFF,
    minor: 0xFFF1,
};

/// The bytes of one request, with the request and ack flags and sequence number `seq`.
pub(crate) fn encode((msg, flags): Request, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn link(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

fn tc(index: i32, handle: TcHandle, parent: TcHandle, info: u32) -> TcMessage {
    let mut m = TcMessage::default();
    m.header.family = AddressFamily::Unspec;
    m.header.index = index;
    m.header.handle = handle;
    m.header.parent = parent;
    m.header.info = info;
    m
}

/// A filter's `tcm_info`: its priority, and the protocol it sees (every one).
fn filter_info(prio: u16) -> u32 {
    ((prio as u32) << 16) | (ETH_P_ALL.to_be() as u32)
}

/// `RTM_GETLINK` by name.
pub(crate) fn get_link(name: &str) -> Request {
    let mut m = link(0);
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    (RouteNetlinkMessage::GetLink(m), 0)
}

/// A bridge, multicast snooping off, and with `hub` an ageing time of 0 (as `ip link add NAME
/// type bridge mcast_snooping 0 ageing_time 0`).
pub(crate) fn new_bridge(name: &str, hub: bool) -> Request {
    let mut data = vec![InfoBridge::MulticastSnooping(false)];
    if hub {
        data.push(InfoBridge::AgeingTime(0));
    }
    let mut m = link(0);
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(data)),
    ]));
    (RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
}

/// A veth pair, `name` here and `peer` created in the namespace open at `peer_ns`.
pub(crate) fn new_veth(
    name: &str,
    mac: Option<[u8; 6]>,
    peer: &str,
    peer_mac: Option<[u8; 6]>,
    peer_ns: RawFd,
) -> Request {
    // In iproute2's order (`golden.rs`).
    let mut p = link(0);
    if let Some(mac) = peer_mac {
        p.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    p.attributes.push(LinkAttribute::NetNsFd(peer_ns));
    p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
    let mut m = link(0);
    if let Some(mac) = mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    (RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
}

/// Link `index` into the bridge `master` (0: out of its bridge), as `ip link set DEV master BR`.
pub(crate) fn set_master(index: u32, master: u32) -> Request {
    let mut m = link(index);
    m.attributes.push(LinkAttribute::Controller(master));
    (RouteNetlinkMessage::NewLink(m), 0)
}

/// Link `index` administratively up or down, as `ip link set DEV up`.
pub(crate) fn set_up(index: u32, up: bool) -> Request {
    let mut m = link(index);
    if up {
        m.header.flags = LinkFlags::Up;
    }
    m.header.change_mask = LinkFlags::Up;
    (RouteNetlinkMessage::NewLink(m), 0)
}

/// Delete link `index`, as `ip link del DEV`.
pub(crate) fn del_link(index: u32) -> Request {
    (RouteNetlinkMessage::DelLink(link(index)), 0)
}

/// An address on link `index`; IPv6 without duplicate address detection (as `ip addr add
/// ADDR/LEN dev DEV nodad`).
pub(crate) fn new_addr(index: u32, addr: IpAddr, prefix: u8) -> Request {
    let mut m = AddressMessage::default();
    m.header.family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = prefix;
    m.header.index = index;
    if addr.is_ipv6() {
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    (
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// A route to `dst` (`None`: the default route) via `via`, as `ip route add DST via VIA`.
pub(crate) fn new_route(dst: Option<(IpAddr, u8)>, via: IpAddr) -> Request {
    let mut m = RouteMessage::default();
    m.header.address_family = if via.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = dst.map_or(0, |(_, len)| len);
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    // As `ip route add` marks its routes (`proto boot`).
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    if let Some((d, _)) = dst {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(d)));
    }
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(via)));
    (RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
}

/// A clsact qdisc on link `index` (`add`), or its removal, as `tc qdisc add dev DEV clsact`.
pub(crate) fn clsact(index: i32, add: bool) -> Request {
    let mut m = tc(index, CLSACT_HANDLE, CLSACT_PARENT, 0);
    if add {
        m.attributes.push(TcAttribute::Kind("clsact".into()));
        (
            RouteNetlinkMessage::NewQueueDiscipline(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RouteNetlinkMessage::DelQueueDiscipline(m), 0)
    }
}

/// A u32 filter matching every frame whose actions mirror it to each link of `to`, chained by
/// `pipe` (as `tc filter add dev DEV HOOK prio P protocol all u32 match u32 0 0 action mirred
/// egress mirror dev TO pipe ...`).
pub(crate) fn new_mirror(index: i32, hook: Hook, prio: u16, to: &[u32]) -> Request {
    let actions = to
        .iter()
        .enumerate()
        .map(|(n, ifindex)| {
            let mut mirror = TcMirror::default();
            // What follows the mirror: the next action.
            mirror.generic.action = TcActionType::Pipe;
            mirror.eaction = TcMirrorActionType::EgressMirror;
            mirror.ifindex = *ifindex;
            let mut a = TcAction::default();
            a.tab = n as u16 + 1;
            a.attributes = vec![
                TcActionAttribute::Kind("mirred".into()),
                TcActionAttribute::Options(vec![TcActionOption::Mirror(
                    TcActionMirrorOption::Parms(mirror),
                )]),
            ];
            a
        })
        .collect();
    // One key: mask 0, value 0 at offset 0, so every frame matches.
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 1;
    sel.keys = vec![TcU32Key::default()];
    let mut m = tc(index, TcHandle::UNSPEC, hook.parent(), filter_info(prio));
    m.attributes.push(TcAttribute::Kind("u32".into()));
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Action(actions)),
        TcOption::U32(TcFilterU32Option::Selector(sel)),
    ]));
    (
        RouteNetlinkMessage::NewTrafficFilter(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// A direct-action `bpf` filter (handle 1, replacing the one there, as `tc filter replace dev
/// DEV HOOK prio P handle 1 bpf ... direct-action`): a loaded eBPF program by its fd, or classic
/// BPF carried in the request; `label` names it in `tc filter show`.
pub(crate) fn new_bpf(
    index: i32,
    hook: Hook,
    prio: u16,
    prog: &crate::bpf::Program,
    label: Option<&str>,
) -> Request {
    let mut opts = match prog {
        crate::bpf::Program::Loaded(fd) => {
            use std::os::fd::AsRawFd;
            vec![TcOption::Bpf(TcFilterBpfOption::ProgFd(
                fd.as_raw_fd() as u32
            ))]
        }
        crate::bpf::Program::Classic(ops) => vec![
            raw_bpf_option(TCA_BPF_OPS_LEN, (ops.len() as u16).to_ne_bytes().to_vec()),
            raw_bpf_option(TCA_BPF_OPS, crate::bpf::classic_bytes(ops)),
        ],
    };
    if let Some(l) = label {
        opts.push(TcOption::Bpf(TcFilterBpfOption::ProgName(l.to_owned())));
    }
    opts.push(TcOption::Bpf(TcFilterBpfOption::Flags(
        TcBpfFlags::DirectAction,
    )));
    let handle = TcHandle { major: 0, minor: 1 };
    let mut m = tc(index, handle, hook.parent(), filter_info(prio));
    m.attributes.push(TcAttribute::Kind("bpf".into()));
    m.attributes.push(TcAttribute::Options(opts));
    // An existing filter at this handle is changed (the kernel wants NLM_F_EXCL to refuse).
    (RouteNetlinkMessage::NewTrafficFilter(m), NLM_F_CREATE)
}

/// An option `netlink-packet-route` does not model, as its type and bytes.
fn raw_bpf_option(kind: u16, value: Vec<u8>) -> TcOption {
    TcOption::Bpf(TcFilterBpfOption::Other(
        netlink_packet_core::DefaultNla::new(kind, value),
    ))
}
