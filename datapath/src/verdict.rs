//! Small value types the hot path hands out: port numbers, stages, drop reasons, verdicts, outputs.

use std::fmt;

/// A switch port number. Stable across config reloads for a port of unchanged name.
/// Uplinks (one per physnet, named after its interface) are ports too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PortNo(pub u16);

impl fmt::Display for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Highest port number + 1. Port numbers are 1..MAX_PORTS.
pub const MAX_PORTS: usize = 16384;

/// Pipeline stages, named after the Neutron OVS agent tables they replace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Frame parsing (before any table).
    Parse = 0,
    /// br-int table 0: in_port -> local VLAN; uplink: global segment -> local VLAN.
    Classify,
    /// Table 24: ARP sender must be one of the port's (MAC, IP) pairs.
    ArpSpoof,
    /// Table 25: source MAC must be the port's MAC or an allowed pair's.
    MacSpoof,
    /// Table 71 (part): source IP, ND targets, DHCP guard.
    IpSpoof,
    /// Tables 71-73 / 81-82: security-group rules and connection tracking.
    Firewall,
    /// Table 60/94 NORMAL: MAC learning and unicast lookup per local VLAN.
    Forward,
    /// Flood within the local VLAN.
    Flood,
    /// br-phys: local VLAN -> wire (untagged for flat, segmentation_id for vlan).
    Uplink,
}

impl Stage {
    /// Number of stages.
    pub const COUNT: usize = 9;
    /// All stages in pipeline order.
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::Parse,
        Stage::Classify,
        Stage::ArpSpoof,
        Stage::MacSpoof,
        Stage::IpSpoof,
        Stage::Firewall,
        Stage::Forward,
        Stage::Flood,
        Stage::Uplink,
    ];

    /// Name used in traces and counters.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Classify => "classify",
            Stage::ArpSpoof => "arp_spoof",
            Stage::MacSpoof => "mac_spoof",
            Stage::IpSpoof => "ip_spoof",
            Stage::Firewall => "firewall",
            Stage::Forward => "forward",
            Stage::Flood => "flood",
            Stage::Uplink => "uplink",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame was dropped. Every drop is counted per port under one of these.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than its headers say.
    Truncated = 0,
    /// Header fields that make no sense (bad version, bad lengths, bad options).
    Malformed,
    /// Longer than any frame the switch carries.
    Oversized,
    /// The ingress port is not in the current snapshot.
    UnknownPort,
    /// VLAN 4095 is reserved and always dropped.
    ReservedVlan,
    /// A VM-side port sent a VLAN-tagged frame (incl. double tagged).
    TaggedOnVmPort,
    /// Uplink frame for a segment with no network on this host.
    UnknownSegment,
    /// Uplink frame carries a second tag inside the segment's tag.
    DoubleTagged,
    /// Multicast/broadcast source MAC.
    MulticastSource,
    /// Source MAC not the port's.
    MacSpoof,
    /// ARP sender MAC/IP not the port's.
    ArpSpoof,
    /// Malformed or non-Ethernet/IPv4 ARP from a secured port.
    ArpMalformed,
    /// Source IP not the port's.
    IpSpoof,
    /// ND target / link-layer option not the port's.
    NdSpoof,
    /// A VM answered as a DHCP/DHCPv6 server.
    DhcpServerSpoof,
    /// A VM sent an IPv6 router advertisement.
    RouterAdvertSpoof,
    /// Ethertype other than ARP/IPv4/IPv6 from a secured port.
    EthertypeNotAllowed,
    /// Destination was learned on the ingress port.
    Hairpin,
    /// Nowhere to send it (alone in its VLAN).
    NoDestination,
    /// No security-group rule of the port admits it (nor a tracked connection).
    SecurityGroup,
    /// Not valid in its tracked connection's state (or a TCP segment with no connection).
    ConntrackInvalid,
    /// A new connection the full connection table could not take.
    ConntrackFull,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 22;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::Oversized,
        DropReason::UnknownPort,
        DropReason::ReservedVlan,
        DropReason::TaggedOnVmPort,
        DropReason::UnknownSegment,
        DropReason::DoubleTagged,
        DropReason::MulticastSource,
        DropReason::MacSpoof,
        DropReason::ArpSpoof,
        DropReason::ArpMalformed,
        DropReason::IpSpoof,
        DropReason::NdSpoof,
        DropReason::DhcpServerSpoof,
        DropReason::RouterAdvertSpoof,
        DropReason::EthertypeNotAllowed,
        DropReason::Hairpin,
        DropReason::NoDestination,
        DropReason::SecurityGroup,
        DropReason::ConntrackInvalid,
        DropReason::ConntrackFull,
    ];

    /// snake_case name for counters and traces.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::Oversized => "oversized",
            DropReason::UnknownPort => "unknown_port",
            DropReason::ReservedVlan => "reserved_vlan",
            DropReason::TaggedOnVmPort => "tagged_on_vm_port",
            DropReason::UnknownSegment => "unknown_segment",
            DropReason::DoubleTagged => "double_tagged",
            DropReason::MulticastSource => "multicast_source",
            DropReason::MacSpoof => "mac_spoof",
            DropReason::ArpSpoof => "arp_spoof",
            DropReason::ArpMalformed => "arp_malformed",
            DropReason::IpSpoof => "ip_spoof",
            DropReason::NdSpoof => "nd_spoof",
            DropReason::DhcpServerSpoof => "dhcp_server_spoof",
            DropReason::RouterAdvertSpoof => "router_advert_spoof",
            DropReason::EthertypeNotAllowed => "ethertype_not_allowed",
            DropReason::Hairpin => "hairpin",
            DropReason::NoDestination => "no_destination",
            DropReason::SecurityGroup => "security_group",
            DropReason::ConntrackInvalid => "conntrack_invalid",
            DropReason::ConntrackFull => "conntrack_full",
        }
    }

    /// The stage that drops for this reason.
    pub fn stage(self) -> Stage {
        use DropReason::*;
        match self {
            Truncated | Malformed | Oversized => Stage::Parse,
            UnknownPort | ReservedVlan | TaggedOnVmPort | UnknownSegment | DoubleTagged
            | MulticastSource => Stage::Classify,
            ArpSpoof | ArpMalformed => Stage::ArpSpoof,
            MacSpoof => Stage::MacSpoof,
            IpSpoof | NdSpoof | DhcpServerSpoof | RouterAdvertSpoof | EthertypeNotAllowed => {
                Stage::IpSpoof
            }
            Hairpin => Stage::Forward,
            NoDestination => Stage::Flood,
            SecurityGroup | ConntrackInvalid | ConntrackFull => Stage::Firewall,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome for one frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Send to the outputs appended to the caller's vector.
    Forward,
    /// Dropped (and counted).
    Drop {
        /// Why.
        reason: DropReason,
    },
    /// A DHCP request the switch answers itself: not forwarded anywhere; the I/O shell sends
    /// [`crate::Worker::answer_dhcp`]'s reply back out of the ingress port.
    Dhcp,
    /// A frame for the metadata service at 169.254.169.254 (TCP, or ARP for it): not
    /// forwarded anywhere; the I/O shell sends [`crate::Worker::answer_metadata`]'s frames
    /// back out of the ingress port.
    Metadata,
}

/// What to do to the frame's VLAN tag on its way out of a port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EgressEdit {
    /// Send as received.
    Keep,
    /// Remove the outer 802.1Q tag.
    StripTag,
    /// Insert an 802.1Q tag with this VID (PCP 0).
    PushTag(u16),
    /// Rewrite the outer tag's VID, keeping PCP/DEI.
    RewriteVid(u16),
}

impl fmt::Display for EgressEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressEdit::Keep => f.write_str("keep"),
            EgressEdit::StripTag => f.write_str("strip_vlan"),
            EgressEdit::PushTag(v) => write!(f, "push_vlan:{v}"),
            EgressEdit::RewriteVid(v) => write!(f, "mod_vlan_vid:{v}"),
        }
    }
}

/// One copy of a frame to send.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Output {
    /// Egress port.
    pub port: PortNo,
    /// Tag edit to apply for that port (see [`crate::egress::apply_edit`]).
    pub edit: EgressEdit,
}
