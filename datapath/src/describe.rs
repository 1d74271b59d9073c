//! Frame descriptions for `weft trace`, in the spirit of `ovs-appctl ofproto/trace`:
//!
//! ```text
//! in_port=tap-vm1 dl_src=fa:16:3e:00:00:01 dl_dst=fa:16:3e:00:00:02 udp nw_src=10.0.0.11 nw_dst=10.0.0.12 tp_src=68 tp_dst=67
//! in_port=eth1 dl_vlan=100 dl_dst=ff:ff:ff:ff:ff:ff arp arp_spa=10.0.0.99 arp_tpa=10.0.0.11
//! ```
//!
//! Fields (space or comma separated): `in_port` (name or number, required), `dl_src`, `dl_dst`,
//! `dl_vlan` (repeat for inner tags), `dl_type`, `nw_src`, `nw_dst`, `tp_src`, `tp_dst`,
//! `arp_op`, `arp_sha`, `arp_spa`, `arp_tha`, `arp_tpa`, `icmp_type`, `icmp_code`, `nd_target`,
//! `nd_sll`, `nd_tll`, `tcp_flags`; protocol words `arp`, `ip`, `ipv6`, `icmp`, `icmp6`, `udp`,
//! `udp6`, `tcp`, `tcp6`. Defaults: `dl_src` = the port's MAC, `dl_dst` = broadcast, IP sources =
//! the port's first fixed IP of the family.

use crate::build::{FrameBuilder, SpecL3, SpecL4};
use crate::frame::{FrameView, L3, L4, TPID_8021Q};
use crate::mac::MacAddr;
use crate::snapshot::Snapshot;
use crate::verdict::PortNo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A frame description that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeError {
    /// `in_port` missing.
    #[error("in_port is required")]
    NoInPort,
    /// `in_port` names no port.
    #[error("in_port {0:?}: no such port")]
    UnknownPort(String),
    /// A field value does not parse.
    #[error("{field}: invalid value {value:?}")]
    BadValue {
        /// Field.
        field: String,
        /// Value.
        value: String,
    },
    /// A word that is not a field or protocol.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// Contradicting fields.
    #[error("{0}")]
    Conflict(String),
}

#[derive(Default)]
struct Fields {
    in_port: Option<String>,
    dl_src: Option<MacAddr>,
    dl_dst: Option<MacAddr>,
    vlans: Vec<u16>,
    dl_type: Option<u16>,
    nw_src: Option<IpAddr>,
    nw_dst: Option<IpAddr>,
    tp_src: Option<u16>,
    tp_dst: Option<u16>,
    arp_op: Option<u16>,
    arp_sha: Option<MacAddr>,
    arp_spa: Option<Ipv4Addr>,
    arp_tha: Option<MacAddr>,
    arp_tpa: Option<Ipv4Addr>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    nd_target: Option<Ipv6Addr>,
    nd_ll: Option<MacAddr>,
    tcp_flags: Option<u8>,
    proto: Option<&'static str>,
    v6: bool,
}

fn bad(field: &str, value: &str) -> DescribeError {
    DescribeError::BadValue {
        field: field.into(),
        value: value.into(),
    }
}

fn num<T: TryFrom<u64>>(field: &str, v: &str) -> Result<T, DescribeError> {
    let n = if let Some(h) = v.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else {
        v.parse::<u64>()
    }
    .map_err(|_| bad(field, v))?;
    T::try_from(n).map_err(|_| bad(field, v))
}

fn parse<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, DescribeError> {
    v.parse().map_err(|_| bad(field, v))
}

impl Fields {
    /// Reads every token of a description; the first bad one is the error.
    fn parse(desc: &str) -> Result<Fields, DescribeError> {
        let mut f = Fields::default();
        for tok in desc.split([' ', ',', '\t', '\n']).filter(|t| !t.is_empty()) {
            match tok.split_once('=') {
                Some((k, v)) => f.set(k, v)?,
                None => f.set_protocol(tok)?,
            }
        }
        Ok(f)
    }

    /// A bare protocol word (`udp`, `icmp6`, ...): the `6` forms pick IPv6 too.
    fn set_protocol(&mut self, word: &str) -> Result<(), DescribeError> {
        let (p, v6) = match word {
            "arp" => ("arp", false),
            "ip" => ("ip", false),
            "ipv6" => ("ip", true),
            "icmp" => ("icmp", false),
            "icmp6" => ("icmp", true),
            "udp" => ("udp", false),
            "udp6" => ("udp", true),
            "tcp" => ("tcp", false),
            "tcp6" => ("tcp", true),
            other => return Err(DescribeError::UnknownField(other.to_string())),
        };
        self.proto = Some(p);
        self.v6 |= v6;
        Ok(())
    }

    /// One `field=value` (OVS's names, with their IPv6 aliases).
    fn set(&mut self, k: &str, v: &str) -> Result<(), DescribeError> {
        match k {
            "in_port" => self.in_port = Some(v.to_string()),
            "dl_src" => self.dl_src = Some(parse(k, v)?),
            "dl_dst" => self.dl_dst = Some(parse(k, v)?),
            "dl_vlan" => {
                let vid: u16 = num(k, v)?;
                if vid > 4095 {
                    return Err(bad(k, v));
                }
                self.vlans.push(vid)
            }
            "dl_type" => self.dl_type = Some(num(k, v)?),
            "nw_src" | "ipv6_src" => self.nw_src = Some(parse(k, v)?),
            "nw_dst" | "ipv6_dst" => self.nw_dst = Some(parse(k, v)?),
            "tp_src" => self.tp_src = Some(num(k, v)?),
            "tp_dst" => self.tp_dst = Some(num(k, v)?),
            "arp_op" => self.arp_op = Some(num(k, v)?),
            "arp_sha" => self.arp_sha = Some(parse(k, v)?),
            "arp_spa" => self.arp_spa = Some(parse(k, v)?),
            "arp_tha" => self.arp_tha = Some(parse(k, v)?),
            "arp_tpa" => self.arp_tpa = Some(parse(k, v)?),
            "icmp_type" | "icmpv6_type" => self.icmp_type = Some(num(k, v)?),
            "icmp_code" | "icmpv6_code" => self.icmp_code = Some(num(k, v)?),
            "nd_target" => self.nd_target = Some(parse(k, v)?),
            "nd_sll" | "nd_tll" => self.nd_ll = Some(parse(k, v)?),
            "tcp_flags" => self.tcp_flags = Some(num(k, v)?),
            other => return Err(DescribeError::UnknownField(other.to_string())),
        }
        Ok(())
    }

    /// The protocol: the word given, else the one the address fields imply (an `nd_target`
    /// means ICMPv6 ND, IP addresses IP, ARP fields ARP); None builds a raw `dl_type` frame.
    fn protocol(&self) -> Option<&'static str> {
        self.proto.or(
            if self.nw_src.is_some() || self.nw_dst.is_some() || self.nd_target.is_some() {
                Some(if self.nd_target.is_some() {
                    "icmp"
                } else {
                    "ip"
                })
            } else if self.arp_spa.is_some() || self.arp_tpa.is_some() || self.arp_op.is_some() {
                Some("arp")
            } else {
                None
            },
        )
    }

    /// Whether the frame is IPv6: asked for, or implied by an IPv6 address.
    fn is_v6(&self) -> bool {
        self.v6
            || matches!(self.nw_src, Some(IpAddr::V6(_)))
            || matches!(self.nw_dst, Some(IpAddr::V6(_)))
            || self.nd_target.is_some()
    }
}

/// What a description leaves out is taken from the ingress port as configured: its MAC and
/// its first fixed IP of each family (so a trace shows what that VM's frames would meet).
struct PortDefaults {
    src: MacAddr,
    fixed_ips: Vec<IpAddr>,
}

impl PortDefaults {
    /// The port's first fixed IP of a family; else the IPv6 link-local of its MAC or 0.0.0.0.
    fn ip(&self, want_v6: bool) -> IpAddr {
        self.fixed_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == want_v6)
            .unwrap_or_else(|| {
                if want_v6 {
                    IpAddr::V6(self.src.ipv6_link_local())
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                }
            })
    }
}

/// Builds the frame a description stands for; returns the ingress port and the bytes.
pub fn parse_description(desc: &str, snap: &Snapshot) -> Result<(PortNo, Vec<u8>), DescribeError> {
    let f = Fields::parse(desc)?;
    let name = f.in_port.clone().ok_or(DescribeError::NoInPort)?;
    let port = snap
        .port_by_name(&name)
        .or_else(|| name.parse::<u16>().ok().and_then(|n| snap.port(PortNo(n))))
        .ok_or_else(|| DescribeError::UnknownPort(name.clone()))?;
    let fixed_ips: Vec<IpAddr> = snap
        .config()
        .ports
        .iter()
        .find(|p| p.name == port.name)
        .map(|p| p.fixed_ips.clone())
        .unwrap_or_default();
    let src = f
        .dl_src
        .or(port.mac)
        .unwrap_or(MacAddr([0x02, 0, 0, 0, 0, 1]));
    let defaults = PortDefaults { src, fixed_ips };
    let l3 = match f.protocol() {
        None => SpecL3::Raw(f.dl_type.unwrap_or(0x88b5)),
        Some("arp") => arp_spec(&f, &defaults),
        Some(p) => ip_spec(&f, p, &defaults)?,
    };
    let mut b = FrameBuilder {
        dst: f.dl_dst.unwrap_or(MacAddr::BROADCAST),
        src,
        tags: Vec::new(),
        l3,
        payload_len: 0,
    };
    for vid in f.vlans {
        b = b.vlan(TPID_8021Q, vid);
    }
    Ok((port.no, b.build()))
}

/// An ARP request by default, from the port's address to 0.0.0.0; `nw_src`/`nw_dst` stand in
/// for `arp_spa`/`arp_tpa` when those are not given.
fn arp_spec(f: &Fields, d: &PortDefaults) -> SpecL3 {
    let spa = f.arp_spa.or(match f.nw_src {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    });
    let spa = spa.unwrap_or(match d.ip(false) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    });
    let tpa = f
        .arp_tpa
        .or(match f.nw_dst {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    SpecL3::Arp {
        op: f.arp_op.unwrap_or(1),
        sha: f.arp_sha.unwrap_or(d.src),
        spa,
        tha: f.arp_tha.unwrap_or(MacAddr::ZERO),
        tpa,
    }
}

/// An IP packet of protocol `p` from the port's address to the broadcast (or all-nodes)
/// address by default; the two addresses must be of one family.
fn ip_spec(f: &Fields, p: &str, d: &PortDefaults) -> Result<SpecL3, DescribeError> {
    let v6 = f.is_v6();
    let s = f.nw_src.unwrap_or_else(|| d.ip(v6));
    let dst = f.nw_dst.unwrap_or(if v6 {
        IpAddr::V6("ff02::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))
    } else {
        IpAddr::V4(Ipv4Addr::BROADCAST)
    });
    if s.is_ipv6() != dst.is_ipv6() {
        return Err(DescribeError::Conflict(
            "nw_src and nw_dst are of different families".into(),
        ));
    }
    let l4 = l4_spec(f, p, s.is_ipv6());
    Ok(SpecL3::Ip { src: s, dst, l4 })
}

/// The transport header: a TCP SYN to port 80, UDP 12345 -> 12345, an echo request, or (with
/// `nd_target`) a neighbor solicitation, unless the fields say otherwise.
fn l4_spec(f: &Fields, p: &str, v6: bool) -> SpecL4 {
    match p {
        "udp" => SpecL4::Udp {
            sport: f.tp_src.unwrap_or(12345),
            dport: f.tp_dst.unwrap_or(12345),
        },
        "tcp" => SpecL4::Tcp {
            sport: f.tp_src.unwrap_or(12345),
            dport: f.tp_dst.unwrap_or(80),
            flags: f.tcp_flags.unwrap_or(0x02),
        },
        "icmp" if v6 => {
            let ty = f
                .icmp_type
                .unwrap_or(if f.nd_target.is_some() { 135 } else { 128 });
            SpecL4::Icmpv6 {
                ty,
                code: f.icmp_code.unwrap_or(0),
                nd_target: f.nd_target.or(if ty == 135 || ty == 136 {
                    Some(Ipv6Addr::UNSPECIFIED)
                } else {
                    None
                }),
                ll: f.nd_ll,
            }
        }
        "icmp" => SpecL4::Icmp {
            ty: f.icmp_type.unwrap_or(8),
            code: f.icmp_code.unwrap_or(0),
        },
        _ => SpecL4::None(0),
    }
}

/// One-line summary of a parsed frame (first line of a trace).
pub fn summarize(v: &FrameView) -> String {
    let mut s = format!("dl_src={} dl_dst={}", v.src, v.dst);
    for t in v.tags.iter().take(usize::from(v.tag_count.min(2))) {
        s.push_str(&format!(" vlan(tpid={:#06x},vid={})", t.tpid, t.vid()));
    }
    if v.tag_count > 2 {
        s.push_str(" (more tags)");
    }
    s.push_str(&format!(" dl_type={:#06x}", v.ethertype));
    match v.l3 {
        L3::Other => {}
        L3::ArpOther => s.push_str(" arp(non-Ethernet/IPv4)"),
        L3::Arp(a) => s.push_str(&format!(
            " arp op={} sha={} spa={} tha={} tpa={}",
            a.op, a.sha, a.spa, a.tha, a.tpa
        )),
        L3::Ipv4 { src, dst, proto } => {
            s.push_str(&format!(" nw_src={src} nw_dst={dst} nw_proto={proto}"))
        }
        L3::Ipv6 { src, dst, proto } => {
            s.push_str(&format!(" ipv6_src={src} ipv6_dst={dst} nw_proto={proto}"))
        }
    }
    match v.l4 {
        L4::None => {}
        L4::Udp { sport, dport } => s.push_str(&format!(" udp tp_src={sport} tp_dst={dport}")),
        L4::Tcp { sport, dport } => s.push_str(&format!(" tcp tp_src={sport} tp_dst={dport}")),
        L4::Icmp { ty, code } => s.push_str(&format!(" icmp type={ty} code={code}")),
        L4::Icmpv6 { ty, code, nd } => {
            s.push_str(&format!(" icmp6 type={ty} code={code}"));
            if let Some(nd) = nd {
                s.push_str(&format!(" nd_target={}", nd.target));
                if let Some(ll) = nd.ll {
                    s.push_str(&format!(" nd_ll={ll}"));
                }
            }
        }
    }
    s
}
