//! holdfastd: the Holdfast node daemon, a thin tokio layer around `holdfast_proto::Node`.
//!
//! Start with [`daemon::run`]. [`config`] reads the cluster configuration, [`netio`] adds and
//! removes addresses and watches the link over rtnetlink, [`arp`] announces addresses with
//! gratuitous ARP and unsolicited neighbour advertisements, [`serving`] serves the application,
//! [`steer`] forwards single connections to another node in the kernel, [`repair`] re-creates
//! connections with TCP_REPAIR and [`inject`] puts a client's packets into this node's stack;
//! [`beacon`] sends the core's spare heartbeats while the protocol loop is held.
#![warn(missing_docs)]

pub mod arp;
pub mod beacon;
pub mod config;
pub mod daemon;
pub mod guardian;
pub mod inject;
pub mod netio;
pub mod nft;
pub mod repair;
pub mod replay;
pub mod serving;
pub mod snoop;
pub mod sockbuf;
pub mod steer;
pub mod tee;
