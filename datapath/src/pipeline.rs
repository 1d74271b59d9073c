//! The pipeline stages, as one pure function over a [`FlowKey`] (the decision-relevant headers of a
//! frame), the snapshot and the MAC table. Because the stages read only the key, caching the
//! result per key is exact: the flow cache cannot change a decision.

pub(crate) use crate::flow_key::FlowKey;
use crate::flow_key::{DHCP6_SERVER, DHCP_CLIENT, DHCP_SERVER, L3_ARP, L4_ICMP6, L4_UDP};
use crate::frame::{
    ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_ADVERT,
    TPID_8021Q,
};
use crate::mac_table::MacTable;
use crate::snapshot::{PortRole, Snapshot};
use crate::verdict::{DropReason, EgressEdit, Output, PortNo, Stage};

/// Where a frame goes after the forward stage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fwd {
    /// One port.
    Unicast(Output),
    /// All members of `vlan` but the ingress port.
    Flood { vlan: u16, tagged_ingress: bool },
}

/// A pipeline decision (cacheable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Decision {
    pub drop: Option<DropReason>,
    pub fwd: Fwd,
    /// MAC table slot of the learned source (refresh it on cache hits).
    pub learn_slot: Option<u32>,
    /// The decision holds until this time (a learned destination may age out).
    pub valid_until: u64,
}

impl Decision {
    /// Placeholder for empty cache entries.
    pub const EMPTY: Decision = Decision {
        drop: Some(DropReason::UnknownPort),
        fwd: Fwd::Flood {
            vlan: 0,
            tagged_ingress: false,
        },
        learn_slot: None,
        valid_until: 0,
    };

    fn drop(r: DropReason) -> Decision {
        Decision {
            drop: Some(r),
            fwd: Fwd::Flood {
                vlan: 0,
                tagged_ingress: false,
            },
            learn_slot: None,
            valid_until: u64::MAX,
        }
    }
}

/// Receives each stage's decision text (for `trace`); the no-op version compiles away.
pub(crate) trait Tracer {
    const ON: bool;
    fn step(&mut self, stage: Stage, text: String);
}

pub(crate) struct NoTrace;
impl Tracer for NoTrace {
    const ON: bool = false;
    #[inline]
    fn step(&mut self, _: Stage, _: String) {}
}

/// One stage's decision, as `weft trace` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// Stage.
    pub stage: Stage,
    /// What it decided and why.
    pub decision: String,
}

impl std::fmt::Display for TraceStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<10} {}", self.stage.name(), self.decision)
    }
}

pub(crate) struct Recorder(pub Vec<TraceStep>);
impl Tracer for Recorder {
    const ON: bool = true;
    fn step(&mut self, stage: Stage, decision: String) {
        self.0.push(TraceStep { stage, decision });
    }
}

macro_rules! trace {
    ($t:expr, $stage:expr, $($arg:tt)*) => {
        if T::ON {
            $t.step($stage, format!($($arg)*));
        }
    };
}

/// Runs classify, port security and forward for one key. `learn` is false for trace (read-only).
pub(crate) fn decide<T: Tracer>(
    snap: &Snapshot,
    macs: &MacTable,
    k: &FlowKey,
    now: u64,
    learn: bool,
    t: &mut T,
) -> Decision {
    let in_port = k.in_port();
    // ---- classify (table 0) ----
    let Some(port) = snap.port(in_port) else {
        trace!(
            t,
            Stage::Classify,
            "in_port {} is not a port of this switch: drop",
            k.in_port()
        );
        return Decision::drop(DropReason::UnknownPort);
    };
    let src = k.src();
    if src.is_multicast() {
        trace!(t, Stage::Classify, "source {src} is a group address: drop");
        return Decision::drop(DropReason::MulticastSource);
    }
    let (vlan, tagged_ingress) = match port.role {
        PortRole::Vm => {
            if k.tag_count() > 0 {
                trace!(
                    t,
                    Stage::Classify,
                    "{} is a VM port and the frame carries {} VLAN tag(s) (outer vid {}): drop",
                    port.name,
                    k.tag_count(),
                    k.outer_vid()
                );
                return Decision::drop(DropReason::TaggedOnVmPort);
            }
            trace!(
                t,
                Stage::Classify,
                "in_port {} ({}) -> network {:?}, local VLAN {}",
                port.name,
                in_port,
                port.network.as_deref().unwrap_or(""),
                port.local_vlan
            );
            (port.local_vlan, false)
        }
        PortRole::Uplink => {
            let Some(up) = snap.uplink(in_port) else {
                return Decision::drop(DropReason::UnknownSegment);
            };
            if k.tag_count() == 0 {
                match up.flat_vlan {
                    Some(v) => {
                        trace!(
                            t,
                            Stage::Classify,
                            "uplink {}: untagged -> flat network, local VLAN {v}",
                            port.name
                        );
                        (v, false)
                    }
                    None => {
                        trace!(
                            t,
                            Stage::Classify,
                            "uplink {}: untagged and physnet {:?} has no flat network: drop",
                            port.name,
                            port.physnet.as_deref().unwrap_or("")
                        );
                        return Decision::drop(DropReason::UnknownSegment);
                    }
                }
            } else {
                let vid = k.outer_vid();
                if vid == 4095 {
                    trace!(
                        t,
                        Stage::Classify,
                        "uplink {}: VLAN 4095 is reserved: drop",
                        port.name
                    );
                    return Decision::drop(DropReason::ReservedVlan);
                }
                if k.outer_tpid() != TPID_8021Q {
                    trace!(
                        t,
                        Stage::Classify,
                        "uplink {}: outer TPID {:#06x} is not 802.1Q: drop",
                        port.name,
                        k.outer_tpid()
                    );
                    return Decision::drop(DropReason::UnknownSegment);
                }
                if k.tag_count() > 1 {
                    trace!(
                        t,
                        Stage::Classify,
                        "uplink {}: VLAN {vid} carries an inner tag: drop",
                        port.name
                    );
                    return Decision::drop(DropReason::DoubleTagged);
                }
                let local = if vid == 0 {
                    up.flat_vlan // priority-tagged: the untagged (flat) segment
                } else {
                    up.segments.get(&vid).copied()
                };
                match local {
                    Some(v) => {
                        trace!(
                            t,
                            Stage::Classify,
                            "uplink {}: global VLAN {vid} -> local VLAN {v}",
                            port.name
                        );
                        (v, true)
                    }
                    None => {
                        trace!(
                            t,
                            Stage::Classify,
                            "uplink {}: no network for VLAN {vid} on physnet {:?}: drop",
                            port.name,
                            port.physnet.as_deref().unwrap_or("")
                        );
                        return Decision::drop(DropReason::UnknownSegment);
                    }
                }
            }
        }
    };

    // ---- port security (tables 24, 25, 71) ----
    if let Some(sec) = snap.security(in_port) {
        // arp_spoof
        if k.ethertype() == ETH_P_ARP {
            if k.l3_kind() != L3_ARP {
                trace!(t, Stage::ArpSpoof, "ARP that is not Ethernet/IPv4: drop");
                return Decision::drop(DropReason::ArpMalformed);
            }
            let sha = k.l2addr();
            let spa = k.ip4();
            let ok = sec.mac_ok(sha) && (spa.is_unspecified() || sec.v4_ok(sha, spa));
            if !ok {
                trace!(
                    t,
                    Stage::ArpSpoof,
                    "ARP sha {sha} spa {spa} is not one of the port's addresses: drop"
                );
                return Decision::drop(DropReason::ArpSpoof);
            }
            trace!(t, Stage::ArpSpoof, "ARP sha {sha} spa {spa}: allowed");
        } else {
            trace!(t, Stage::ArpSpoof, "not ARP: skip");
        }
        // mac_spoof
        if !sec.mac_ok(src) {
            trace!(
                t,
                Stage::MacSpoof,
                "source MAC {src} is not the port's: drop"
            );
            return Decision::drop(DropReason::MacSpoof);
        }
        trace!(t, Stage::MacSpoof, "source MAC {src}: allowed");
        // ip_spoof + DHCP guard
        match k.ethertype() {
            ETH_P_ARP => trace!(t, Stage::IpSpoof, "ARP: checked by arp_spoof"),
            ETH_P_IPV4 => {
                let ip = k.ip4();
                if k.l4_kind() == L4_UDP && k.sport() == DHCP_SERVER {
                    trace!(
                        t,
                        Stage::IpSpoof,
                        "UDP from port 67: a VM may not be a DHCP server: drop"
                    );
                    return Decision::drop(DropReason::DhcpServerSpoof);
                }
                if ip.is_unspecified()
                    && k.l4_kind() == L4_UDP
                    && k.sport() == DHCP_CLIENT
                    && k.dport() == DHCP_SERVER
                {
                    trace!(
                        t,
                        Stage::IpSpoof,
                        "DHCP discover/request from 0.0.0.0: allowed"
                    );
                } else if sec.v4_ok(src, ip) {
                    trace!(t, Stage::IpSpoof, "source IP {ip}: allowed");
                } else {
                    trace!(
                        t,
                        Stage::IpSpoof,
                        "source IP {ip} is not the port's (for MAC {src}): drop"
                    );
                    return Decision::drop(DropReason::IpSpoof);
                }
            }
            ETH_P_IPV6 => {
                let ip = k.ip6();
                if k.l4_kind() == L4_UDP && k.sport() == DHCP6_SERVER {
                    trace!(
                        t,
                        Stage::IpSpoof,
                        "UDP from port 547: a VM may not be a DHCPv6 server: drop"
                    );
                    return Decision::drop(DropReason::DhcpServerSpoof);
                }
                let icmp6 = (k.l4_kind() == L4_ICMP6).then_some(k.sub() as u8);
                if icmp6 == Some(ND_ROUTER_ADVERT) {
                    trace!(t, Stage::IpSpoof, "router advertisement from a VM: drop");
                    return Decision::drop(DropReason::RouterAdvertSpoof);
                }
                if ip.is_unspecified() {
                    // DAD neighbor solicitations and MLD reports come from ::
                    if !matches!(icmp6, Some(ND_NEIGHBOR_SOLICIT | 131 | 132 | 143)) {
                        trace!(t, Stage::IpSpoof, "source :: is only for DAD and MLD: drop");
                        return Decision::drop(DropReason::IpSpoof);
                    }
                    trace!(t, Stage::IpSpoof, "source :: (DAD/MLD): allowed");
                } else if sec.v6_ok(src, ip) {
                    trace!(t, Stage::IpSpoof, "source IP {ip}: allowed");
                } else {
                    trace!(
                        t,
                        Stage::IpSpoof,
                        "source IP {ip} is not the port's (for MAC {src}): drop"
                    );
                    return Decision::drop(DropReason::IpSpoof);
                }
                if icmp6 == Some(ND_NEIGHBOR_ADVERT) {
                    let target = k.nd_target();
                    if !sec.v6_ok(src, target) {
                        trace!(
                            t,
                            Stage::IpSpoof,
                            "NA for target {target}, not the port's: drop"
                        );
                        return Decision::drop(DropReason::NdSpoof);
                    }
                    trace!(t, Stage::IpSpoof, "NA target {target}: allowed");
                }
                if matches!(icmp6, Some(ND_NEIGHBOR_ADVERT | ND_NEIGHBOR_SOLICIT)) && k.has_ll() {
                    let ll = k.l2addr();
                    if !sec.mac_ok(ll) {
                        trace!(
                            t,
                            Stage::IpSpoof,
                            "ND link-layer option {ll} is not the port's: drop"
                        );
                        return Decision::drop(DropReason::NdSpoof);
                    }
                }
            }
            other => {
                trace!(
                    t,
                    Stage::IpSpoof,
                    "ethertype {other:#06x} is not ARP/IPv4/IPv6: drop (port security)"
                );
                return Decision::drop(DropReason::EthertypeNotAllowed);
            }
        }
    } else if T::ON {
        let why = if port.role == PortRole::Uplink {
            "uplink"
        } else {
            "port_security=false"
        };
        t.step(Stage::ArpSpoof, format!("{why}: skip"));
        t.step(Stage::MacSpoof, format!("{why}: skip"));
        t.step(Stage::IpSpoof, format!("{why}: skip"));
    }

    // ---- forward (NORMAL): learn, then look up ----
    let aging = snap.mac_aging_ns();
    let mut learn_slot = None;
    if snap.static_mac(vlan, src).is_some() {
        trace!(
            t,
            Stage::Forward,
            "source {src} is a configured port MAC (static)"
        );
    } else if learn {
        learn_slot = macs.learn(vlan, src, in_port, now);
    } else if T::ON {
        t.step(
            Stage::Forward,
            format!("learn {src} on local VLAN {vlan} port {in_port}"),
        );
    }
    let dst = k.dst();
    let mut valid_until = u64::MAX;
    let mut fwd = Fwd::Flood {
        vlan,
        tagged_ingress,
    };
    if dst.is_multicast() {
        trace!(
            t,
            Stage::Forward,
            "destination {dst} is broadcast/multicast: flood"
        );
    } else {
        let found = match snap.static_mac(vlan, dst) {
            Some(p) => Some((p, u64::MAX)),
            None => macs
                .lookup(vlan, dst, now, aging)
                .map(|f| (f.port, f.last_seen.saturating_add(aging))),
        };
        match found {
            Some((p, _)) if p == in_port => {
                trace!(
                    t,
                    Stage::Forward,
                    "destination {dst} is on the ingress port: drop"
                );
                return Decision {
                    learn_slot,
                    ..Decision::drop(DropReason::Hairpin)
                };
            }
            Some((p, until)) => match snap.member(vlan, p) {
                Some(m) => {
                    valid_until = until;
                    let out = Output {
                        port: p,
                        edit: m.edit(tagged_ingress),
                    };
                    trace!(
                        t,
                        Stage::Forward,
                        "destination {dst} learned on port {} in local VLAN {vlan}: unicast",
                        port_name(snap, p)
                    );
                    fwd = Fwd::Unicast(out);
                }
                None => {
                    trace!(t, Stage::Forward, "destination {dst}: stale entry, flood");
                }
            },
            None => {
                trace!(
                    t,
                    Stage::Forward,
                    "destination {dst} unknown in local VLAN {vlan}: flood"
                );
            }
        }
    }

    // ---- flood ----
    if let Fwd::Flood { .. } = fwd {
        let members = snap.vlan(vlan).map(|v| v.members.as_slice()).unwrap_or(&[]);
        let n = members.iter().filter(|m| m.port != in_port).count();
        if n == 0 {
            trace!(t, Stage::Flood, "no other port in local VLAN {vlan}: drop");
            return Decision {
                learn_slot,
                ..Decision::drop(DropReason::NoDestination)
            };
        }
        if T::ON {
            let names: Vec<String> = members
                .iter()
                .filter(|m| m.port != in_port)
                .map(|m| port_name(snap, m.port))
                .collect();
            t.step(
                Stage::Flood,
                format!(
                    "local VLAN {vlan}: to {} (not the ingress port)",
                    names.join(", ")
                ),
            );
        }
    }
    if T::ON {
        trace_uplink(snap, vlan, in_port, fwd, t);
    }
    Decision {
        drop: None,
        fwd,
        learn_slot,
        valid_until,
    }
}

fn port_name(snap: &Snapshot, p: PortNo) -> String {
    snap.port(p)
        .map(|i| i.name.clone())
        .unwrap_or_else(|| p.to_string())
}

fn trace_uplink<T: Tracer>(snap: &Snapshot, vlan: u16, in_port: PortNo, fwd: Fwd, t: &mut T) {
    let mut outs = Vec::new();
    expand(snap, in_port, fwd, &mut outs);
    let mut any = false;
    for o in outs {
        if snap.port(o.port).map(|p| p.role) == Some(PortRole::Uplink) {
            any = true;
            let tunnel = snap.tunnel().filter(|tn| tn.port == o.port);
            if let Some(tn) = tunnel {
                let vni = tn
                    .vni_of_vlan(vlan)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into());
                let dest = if tn.peers.is_empty() {
                    "no tunnel peers".to_string()
                } else {
                    format!(
                        "to the VTEP the destination was learned behind, else flood to {}",
                        tn.peers
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                t.step(
                    Stage::Uplink,
                    format!(
                        "local VLAN {vlan} -> tunnel {}: VXLAN VNI {vni} from {}: {dest}",
                        port_name(snap, o.port),
                        tn.local_ip
                    ),
                );
                continue;
            }
            let text = match o.edit {
                EgressEdit::Keep => "untagged (flat)".to_string(),
                EgressEdit::StripTag => "strip tag (flat)".to_string(),
                EgressEdit::PushTag(v) => format!("push global VLAN {v}"),
                EgressEdit::RewriteVid(v) => format!("rewrite to global VLAN {v}"),
            };
            t.step(
                Stage::Uplink,
                format!(
                    "local VLAN {vlan} -> uplink {}: {text}",
                    port_name(snap, o.port)
                ),
            );
        }
    }
    if !any {
        let local = snap
            .network_by_local_vlan(vlan)
            .map(|n| n.uplink.is_none())
            .unwrap_or(true);
        let why = if local {
            "network has no uplink (local)"
        } else {
            "not sent to the uplink"
        };
        t.step(Stage::Uplink, why.to_string());
    }
}

/// Appends the outputs of a forwarding decision.
#[inline]
pub(crate) fn expand(snap: &Snapshot, in_port: PortNo, fwd: Fwd, out: &mut Vec<Output>) -> usize {
    match fwd {
        Fwd::Unicast(o) => {
            out.push(o);
            1
        }
        Fwd::Flood {
            vlan,
            tagged_ingress,
        } => {
            let Some(v) = snap.vlan(vlan) else { return 0 };
            let before = out.len();
            out.extend(
                v.members
                    .iter()
                    .filter(|m| m.port != in_port)
                    .map(|m| Output {
                        port: m.port,
                        edit: m.edit(tagged_ingress),
                    }),
            );
            out.len() - before
        }
    }
}
