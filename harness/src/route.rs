//! Routes and forwarding: what lets a node sit behind a router.
//!
//! A node's `routes` are `"default via ADDR"` or `"PREFIX/LEN via ADDR"`, IPv4 or IPv6; a node
//! with `forward = true` forwards between its interfaces (a router). Every destination and
//! gateway stays inside the test ranges (198.18.0.0/15, 2001:db8::/32), and a gateway must be on
//! one of the node's own subnets, so no namespace ever gets a route out.

use std::net::IpAddr;

use toml::Spanned;

use crate::topology::{IfAddr, Interface, address_allowed, parse_ifaddr};

/// One route of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination; `None` is the default route of the gateway's family.
    pub dst: Option<IfAddr>,
    /// The next hop, on one of the node's subnets.
    pub via: IpAddr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dst {
            Some(d) => write!(f, "{d} via {}", self.via),
            None => write!(f, "default via {}", self.via),
        }
    }
}

/// Whether `addr` lies in the subnet of `net`.
pub fn in_subnet(net: &IfAddr, addr: IpAddr) -> bool {
    fn bits(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
            IpAddr::V6(v) => u128::from(v),
        }
    }
    if net.addr.is_ipv4() != addr.is_ipv4() {
        return false;
    }
    let len = u32::from(net.prefix);
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - len.min(128));
    bits(net.addr) & mask == bits(addr) & mask
}

/// Parses one route against the node's interfaces; `Err` says what is wrong.
pub fn parse(text: &str, interfaces: &[Interface]) -> Result<Route, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [dst, "via", gw] = words.as_slice() else {
        return Err(format!(
            "{text:?} is not \"default via ADDR\" or \"PREFIX/LEN via ADDR\""
        ));
    };
    let via: IpAddr = gw
        .parse()
        .map_err(|_| format!("gateway {gw:?} is not an IP address"))?;
    let dst = if *dst == "default" {
        None
    } else {
        let d = parse_ifaddr(dst).ok_or(format!("destination {dst:?} is not PREFIX/LEN"))?;
        if !address_allowed(&d) {
            return Err(format!(
                "destination {d} is outside 198.18.0.0/15 and 2001:db8::/32"
            ));
        }
        if d.addr.is_ipv4() != via.is_ipv4() {
            return Err(format!(
                "destination {d} and gateway {via} are of different families"
            ));
        }
        Some(d)
    };
    let on_link = interfaces
        .iter()
        .flat_map(|i| i.addresses.iter())
        .any(|a| in_subnet(a, via) && a.addr != via);
    if !on_link {
        return Err(format!("gateway {via} is on none of the node's subnets"));
    }
    Ok(Route { dst, via })
}

/// Checks a node's raw routes, reporting each problem at its line.
pub(crate) fn validate(
    cx: &mut holdfast_tomlcheck::Checker<'_>,
    node: &str,
    raw: &[Spanned<String>],
    interfaces: &[Interface],
) -> Vec<Route> {
    raw.iter()
        .filter_map(|r| match parse(r.get_ref(), interfaces) {
            Ok(x) => Some(x),
            Err(e) => {
                cx.err(&r.span(), format!("node[{node}].routes"), e);
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Attachment, parse_ifaddr};

    fn ifaces() -> Vec<Interface> {
        vec![Interface {
            name: "eth0".into(),
            attach: Attachment::Switch("sw0".into()),
            mac: [2, 0, 0, 0, 0, 1],
            addresses: vec![
                parse_ifaddr("198.18.0.1/24").unwrap(),
                parse_ifaddr("2001:db8::1/64").unwrap(),
            ],
            impair: None,
        }]
    }

    #[test]
    fn routes_parse_and_are_checked() {
        let r = parse("default via 198.18.0.254", &ifaces()).unwrap();
        assert_eq!(r.to_string(), "default via 198.18.0.254");
        let r = parse("198.19.0.0/24 via 198.18.0.254", &ifaces()).unwrap();
        assert_eq!(r.dst.unwrap().prefix, 24);
        assert!(parse("2001:db8:1::/64 via 2001:db8::fe", &ifaces()).is_ok());
        for bad in [
            "default via 198.19.0.1",
            "10.0.0.0/8 via 198.18.0.254",
            "198.19.0.0/24 via 2001:db8::fe",
            "198.19.0.0/24 198.18.0.254",
            "default via 198.18.0.1",
            "default via nowhere",
        ] {
            assert!(parse(bad, &ifaces()).is_err(), "{bad} was accepted");
        }
    }
}
