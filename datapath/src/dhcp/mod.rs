//! The switch's DHCPv4 server: a guest's DISCOVER, REQUEST, RELEASE and INFORM are answered by
//! the switch itself, on the port they came in on, as Neutron's DHCP agent (dnsmasq in a
//! namespace, one per network) would answer them. There is no extra process and no lease file:
//! a port's address is fixed by the control plane, so the answer is a pure function of the
//! request and the port's [`PortDhcp`], which the snapshot compiles from the port's fixed IP
//! and its subnet (`[[subnet]]` in the switch config).
//!
//! ```text
//!  VM port rx --pipeline: classify -> port_security -> dhcp stage (UDP 68 -> 67, port has
//!               PortDhcp) --> Verdict::Dhcp (not forwarded, not flooded)
//!          I/O shell --Worker::answer_dhcp(in_port, frame)--> server::answer(frame, PortDhcp)
//!                    --> reply frame, sent out of the same port only
//! ```
//!
//! Stateless by design: the lease is the port's fixed IP, so a renewal after a change of the
//! port's fixed IPs or of its subnet's options gets the new data from the snapshot in force
//! (a config reload replaces it), and a RELEASE has nothing to forget.
//!
//! The server's address (option 54, the IP source of replies) is 169.254.169.254, the
//! metadata service's, as Google Compute Engine's DHCP server does it. Neutron uses its DHCP
//! port's address, which weft does not allocate; the subnet's gateway (the first choice here
//! before) belongs to a router that a network without one lacks, so a guest renewing by
//! unicast at T1 could not resolve it and waited for the broadcast rebinding at T2 (21 hours
//! on a one-day lease). 169.254.169.254 is routed on-link by the lease's own option 121 and
//! the switch answers ARP for it on every port it serves ([`crate::metadata`]), so a renewal
//! reaches the switch at T1, and a change of the port or its subnet is in that renewal. The
//! switch answers whatever UDP 68 -> 67 a port sends, whatever its destination.
//!
//! Non-goals: no DHCPv6 (see the networking API's refusal of ipv6_address_mode), no relay
//! (giaddr) handling, no dynamic pools.

mod message;
mod server;
mod wire;

pub use server::{answer, DhcpError};

use crate::config::{PortConfig, SwitchConfig};
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mac::MacAddr;

/// Lease time handed out (option 51): Neutron's `dhcp_lease_duration` default, one day.
pub const LEASE_SECS: u32 = 86_400;

/// The MAC the switch's DHCP server sends from: locally administered, in the OpenStack
/// `fa:16:3e` range Neutron's DHCP ports use, and never a guest's (Neutron allocates
/// `fa:16:3e` MACs randomly; this one is reserved here for the switch).
pub const SERVER_MAC: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0xff, 0xff, 0xfe]);

/// The metadata service's address: a route to it goes in option 121, on-link (next hop
/// 0.0.0.0, Neutron's way of saying "directly connected" in option 121): the switch answers
/// ARP for 169.254.169.254 on every port it serves metadata on (see [`crate::metadata`]),
/// whereas a route via the gateway would need a router to answer for the gateway first.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// What the DHCP server hands one port: compiled from the port's fixed IPv4 address and the
/// enable_dhcp subnet holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortDhcp {
    /// The port's fixed IP and its subnet's prefix (yiaddr, option 1).
    pub address: Ipv4Net,
    /// Server identifier (option 54) and IP source of replies.
    pub server: Ipv4Addr,
    /// The subnet's gateway (option 3); None: no default route is handed out.
    pub router: Option<Ipv4Addr>,
    /// dns_nameservers (option 6); empty: the option is left out.
    pub dns: Vec<Ipv4Addr>,
    /// Classless static routes (option 121): the default route via the gateway, the
    /// subnet's host_routes, and the metadata route, in that order.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Interface MTU (option 26): the network's.
    pub mtu: Option<u16>,
    /// Host name (option 12): the port's dns_name, else `host-<ip with dashes>` as Neutron's
    /// DHCP agent names hosts without one.
    pub hostname: String,
    /// Lease time (option 51); T1 and T2 are 1/2 and 7/8 of it (RFC 2131 4.4.5).
    pub lease_secs: u32,
}

/// A subnet's DHCP-relevant options, as the snapshot compiles [`PortDhcp`] from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetOptions<'a> {
    /// The subnet's prefix.
    pub cidr: Ipv4Net,
    /// gateway_ip.
    pub gateway: Option<Ipv4Addr>,
    /// dns_nameservers (IPv4 ones).
    pub dns: &'a [Ipv4Addr],
    /// host_routes (IPv4 ones).
    pub host_routes: &'a [(Ipv4Net, Ipv4Addr)],
}

impl PortDhcp {
    /// The DHCP data of a port holding `ip` on the subnet `s`, with the network's `mtu` and
    /// the port's `dns_name`. Routes as Neutron's DHCP agent gives them: the default route
    /// via the gateway first (RFC 3442: a client that takes option 121 ignores option 3), the
    /// host routes, then 169.254.169.254/32 on-link (next hop 0.0.0.0: the switch answers
    /// for it) unless a host route already covers it.
    pub fn new(
        ip: Ipv4Addr,
        s: &SubnetOptions<'_>,
        mtu: Option<u32>,
        dns_name: Option<&str>,
    ) -> PortDhcp {
        let server = METADATA_IP;
        let mut routes = Vec::new();
        if let Some(gw) = s.gateway {
            routes.push((Ipv4Net::default(), gw));
        }
        routes.extend(s.host_routes.iter().copied());
        let metadata = Ipv4Net::from(METADATA_IP);
        if !s.host_routes.iter().any(|(d, _)| *d == metadata) {
            routes.push((metadata, Ipv4Addr::UNSPECIFIED));
        }
        PortDhcp {
            address: Ipv4Net::new(ip, s.cidr.prefix_len()).unwrap_or_else(|_| Ipv4Net::from(ip)),
            server,
            router: s.gateway,
            dns: s.dns.to_vec(),
            routes,
            mtu: mtu.map(|m| u16::try_from(m).unwrap_or(u16::MAX)),
            hostname: match dns_name {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => default_hostname(ip),
            },
            lease_secs: LEASE_SECS,
        }
    }
}

/// The DHCP data of port `p`: its first fixed IPv4 address that lies in an enable_dhcp
/// IPv4 subnet of its network, with that subnet's options; None when it has none.
pub(crate) fn for_port(cfg: &SwitchConfig, p: &PortConfig) -> Option<PortDhcp> {
    let mtu = cfg.guest_mtu(p);
    let v4 = |ip: &IpAddr| match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    };
    p.fixed_ips.iter().filter_map(v4).find_map(|ip| {
        let s = cfg.subnets.iter().find(|s| {
            s.enable_dhcp
                && s.network == p.network
                && matches!(s.cidr, IpNet::V4(c) if c.contains(&ip))
        })?;
        let IpNet::V4(cidr) = s.cidr else { return None };
        let dns: Vec<Ipv4Addr> = s.dns_nameservers.iter().filter_map(v4).collect();
        let host_routes: Vec<(Ipv4Net, Ipv4Addr)> = s
            .host_routes
            .iter()
            .filter_map(|(d, n)| match (d, n) {
                (IpNet::V4(d), IpAddr::V4(n)) => Some((*d, *n)),
                _ => None,
            })
            .collect();
        let opts = SubnetOptions {
            cidr,
            gateway: s.gateway_ip.as_ref().and_then(v4),
            dns: &dns,
            host_routes: &host_routes,
        };
        Some(PortDhcp::new(ip, &opts, mtu, p.dns_name.as_deref()))
    })
}

/// What the DHCP server did, summed over the switch's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhcpStats {
    /// Replies sent (OFFER, ACK, NAK).
    pub replies: u64,
    /// Requests that get no reply by design (RELEASE, DECLINE, a REQUEST for another server).
    pub unanswered: u64,
    /// Truncated or malformed requests, dropped.
    pub malformed: u64,
}

/// [`DhcpStats`] as the workers count them (rare events: one set for the whole switch).
#[derive(Default)]
pub(crate) struct DhcpCounters {
    replies: AtomicU64,
    unanswered: AtomicU64,
    malformed: AtomicU64,
}

impl DhcpCounters {
    /// Counts one answer and passes its reply on.
    pub(crate) fn count(&self, r: Result<Option<Vec<u8>>, DhcpError>) -> Option<Vec<u8>> {
        let c = match &r {
            Ok(Some(_)) => &self.replies,
            Ok(None) => &self.unanswered,
            Err(_) => &self.malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
        r.ok().flatten()
    }

    pub(crate) fn stats(&self) -> DhcpStats {
        DhcpStats {
            replies: self.replies.load(Ordering::Relaxed),
            unanswered: self.unanswered.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
        }
    }
}

/// Neutron's host name for a port without a dns_name: `host-10-0-0-5`.
pub fn default_hostname(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("host-{a}-{b}-{c}-{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_names_as_neutron_gives_them() {
        let hr = [(
            "192.168.0.0/16".parse().unwrap(),
            Ipv4Addr::new(10, 0, 0, 254),
        )];
        let s = SubnetOptions {
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: &[Ipv4Addr::new(8, 8, 8, 8)],
            host_routes: &hr,
        };
        let d = PortDhcp::new(Ipv4Addr::new(10, 0, 0, 5), &s, Some(1450), None);
        assert_eq!(d.address.to_string(), "10.0.0.5/24");
        assert_eq!(d.server, METADATA_IP);
        assert_eq!(d.hostname, "host-10-0-0-5");
        assert_eq!(
            d.routes,
            vec![
                ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(10, 0, 0, 1)),
                hr[0],
                ("169.254.169.254/32".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
            ]
        );
        // No gateway: no default route; the server is still 169.254.169.254.
        let s = SubnetOptions { gateway: None, ..s };
        let d = PortDhcp::new(Ipv4Addr::new(10, 0, 0, 5), &s, None, Some("web-1"));
        assert_eq!(d.server, METADATA_IP);
        assert_eq!(d.router, None);
        assert_eq!(d.hostname, "web-1");
        assert_eq!(d.routes[0].0, "192.168.0.0/16".parse::<Ipv4Net>().unwrap());
    }
}
