//! The switch config file (TOML): physnets, networks, ports, and `[switch]` settings.
//!
//! ```toml
//! [switch]                      # optional
//! control_socket = "/run/weft/switch.sock"
//! mac_aging_secs = 300
//! workers = 2
//! worker_nice = -10             # niceness of the packet workers (ovs-ctl's default for ovs-vswitchd)
//! busy_poll_us = 0              # keep polling at most this long after a busy wakeup (0: sleep at once)
//! busy_poll_yield = true        # yield the core between two empty polls of a spin
//! io = "uring"                  # tap reads/writes: "uring" (batched) or "epoll" (a syscall per frame)
//! vhost_dir = "/run/weft/vhost" # where `vhostuser` ports' sockets are made (<vhost_dir>/<port name>)
//!
//! [[physnet]]
//! name = "physnet"
//! interface = "eth1"
//!
//! [tunnel]                      # optional: this host's VXLAN endpoint (Neutron's local_ip)
//! local_ip = "192.0.2.1"
//! udp_port = 4789               # default 4789
//!
//! [[tunnel_peer]]               # every other host's endpoint (flooding list, like the OVS
//! ip = "192.0.2.2"              # agent's tunnel ports); or `remote_ips = [...]` in [tunnel]
//!
//! [[network]]
//! name = "net-vxlan"
//! type = "vxlan"                # needs [tunnel]
//! segmentation_id = 1001        # the VNI
//!
//! [[network]]
//! name = "net-vlan100"
//! type = "vlan"                 # flat | vlan | vxlan | local
//! physnet = "physnet"
//! segmentation_id = 100
//!
//! [[port]]
//! name = "tap-vm1"
//! kind = "tap"                  # tap | system | vhostuser
//! network = "net-vlan100"
//! mac = "fa:16:3e:00:00:01"
//! fixed_ips = ["10.0.0.11"]
//! port_security = true
//! allowed_address_pairs = [{ mac = "fa:16:3e:00:00:99", ip_address = "10.0.0.0/24" }]
//! mtu = 1450                    # optional, tap ports: the MTU of the tap weft creates
//! capture = "/var/tmp/vm1.pcap" # optional: write the port's frames to a pcap file
//! security_groups = ["sg-web"] # optional (needs port_security): the port's firewall;
//!                               # [] drops everything but DHCP/ND; absent: no firewall
//! dns_name = "vm1"              # optional: DHCP host name (default host-10-0-0-11)
//! [port.metadata]               # optional: what 169.254.169.254 tells this port's guest
//! uuid = "0b6f…"                # instance id (required in the section)
//! name = "vm1"                  # optional: also hostname, availability_zone, project_id,
//! public_keys = { mykey = "ssh-ed25519 AAAA…" }  # launch_index, meta = { k = "v" },
//! user_data = "I2Nsb3VkLWNvbmZpZwo="          # user data, base64
//!
//! [[subnet]]                    # optional: the switch answers DHCPv4 for ports on it
//! network = "net-vlan100"
//! cidr = "10.0.0.0/24"
//! gateway_ip = "10.0.0.1"       # optional: router (option 3) and DHCP server address
//! dns_nameservers = ["10.0.0.53"]
//! host_routes = [{ destination = "192.168.0.0/16", nexthop = "10.0.0.254" }]
//! enable_dhcp = true            # default true, as in Neutron
//!
//! [[security_group]]            # a group the ports name, or their rules name as remote
//! id = "sg-web"
//! stateful = true               # default true; a port's groups must all agree
//! members = ["10.0.0.11", "10.0.0.0/28"]  # its ports' fixed IPs and allowed address pairs
//! [[security_group.rule]]       # one per security-group rule, as Neutron stores it
//! id = "5d0c..."                # the rule id (traces, hit counters)
//! direction = "ingress"         # ingress | egress, seen from the port
//! ethertype = "IPv4"            # IPv4 | IPv6
//! protocol = "tcp"              # tcp udp icmp icmpv6 sctp ... or a number; absent: any
//! port_range_min = 22           # destination ports, or ICMP type (min) and code (max)
//! port_range_max = 22
//! remote_ip_prefix = "10.0.0.0/24"  # or remote_group = "<group id>" (its members)
//! ```
//!
//! Every error names the source, the line, the object and the field:
//! `host.toml line 12: port "tap-vm1": mac: invalid MAC address "zz"`.

//!
//! Reading a config is two steps: `raw` parses the TOML into typed structs that keep each
//! value's span (syntax, unknown keys, wrong types), then `validate` checks values, references
//! and duplicates and builds the [`SwitchConfig`]. A config built in code
//! ([`SwitchConfig::validated`]) goes through the same `validate`, so one set of rules and
//! messages holds for both.

mod error;
mod instance;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use error::ConfigError;
pub use instance::InstanceMetadata;

use crate::mac::MacAddr;
use error::Ctx;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Linux IFNAMSIZ - 1.
pub const MAX_IFNAME_LEN: usize = 15;
/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/weft/switch.sock";
/// Default directory of the `vhostuser` ports' sockets (beside the control socket).
pub const DEFAULT_VHOST_DIR: &str = "/run/weft/vhost";
/// Default MAC aging time, as the Linux bridge and OVS use.
pub const DEFAULT_MAC_AGING_SECS: u64 = 300;
/// Default capacity of the learned MAC table.
pub const DEFAULT_MAC_TABLE_SIZE: usize = 65536;
/// Default niceness of the packet workers: what `ovs-ctl` gives ovs-vswitchd
/// (`--ovs-vswitchd-priority`, default -10), so the switch is not starved by
/// the VMs' own busy processes on a loaded host.
pub const DEFAULT_WORKER_NICE: i32 = -10;
/// Default busy polling after a wakeup that moved frames: none (see
/// [`SwitchSettings::busy_poll_us`]).
pub const DEFAULT_BUSY_POLL_US: u64 = 0;
/// Default bound of the connection table (Linux's `nf_conntrack_max` on a host of 16 GiB).
pub const DEFAULT_CONNTRACK_SIZE: usize = 262_144;
/// Upper bound of `busy_poll_us` (100 ms).
pub const MAX_BUSY_POLL_US: u64 = 100_000;

/// A validated switch configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchConfig {
    /// `[switch]` settings (defaults when the section is absent).
    pub switch: SwitchSettings,
    /// `[[physnet]]`: physical networks and the NIC each is reached through.
    pub physnets: Vec<PhysnetConfig>,
    /// `[[network]]`
    pub networks: Vec<NetworkConfig>,
    /// `[[port]]`
    pub ports: Vec<PortConfig>,
    /// `[tunnel]` plus `[[tunnel_peer]]`: the VXLAN endpoint, if this host has one.
    pub tunnel: Option<TunnelConfig>,
    /// `[[subnet]]`: the networks' subnets, for the switch's DHCP server.
    pub subnets: Vec<SubnetConfig>,
    /// `[[security_group]]`: the groups ports name or rules name as remote.
    pub security_groups: Vec<SecurityGroupConfig>,
}

/// `[[subnet]]`: a subnet of a network, with the options its DHCP server hands out. An IPv6
/// subnet is accepted and kept (for the ports' addressing) but has no DHCP server here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubnetConfig {
    /// The network it belongs to.
    pub network: String,
    /// Its prefix.
    pub cidr: IpNet,
    /// gateway_ip: the router handed out, and the DHCP server's own address. None: no router.
    pub gateway_ip: Option<IpAddr>,
    /// dns_nameservers, in order.
    pub dns_nameservers: Vec<IpAddr>,
    /// host_routes (destination, nexthop).
    pub host_routes: Vec<(IpNet, IpAddr)>,
    /// Whether the switch answers DHCP for ports on it.
    pub enable_dhcp: bool,
}

/// `[[security_group]]`: a Neutron security group with its rules and its members' addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecurityGroupConfig {
    /// Group id (unique).
    pub id: String,
    /// Stateful (connection tracking: replies pass) or stateless.
    pub stateful: bool,
    /// Addresses of the group's ports (any host): what a `remote_group` rule admits.
    pub members: Vec<IpNet>,
    /// Its rules.
    pub rules: Vec<RuleConfig>,
}

/// `[[security_group.rule]]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleConfig {
    /// Neutron rule id.
    pub id: String,
    /// Seen from the port.
    pub direction: crate::secgroup::Direction,
    /// `ethertype`.
    pub family: crate::secgroup::Family,
    /// IP protocol number; None: any.
    pub protocol: Option<u8>,
    /// Lowest destination port, or ICMP type.
    pub port_min: Option<u16>,
    /// Highest destination port, or ICMP code.
    pub port_max: Option<u16>,
    /// The peer.
    pub remote: RuleRemote,
}

/// A rule's peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RuleRemote {
    /// Anywhere.
    Any,
    /// `remote_ip_prefix`.
    Prefix(IpNet),
    /// `remote_group`: the members of that `[[security_group]]`.
    Group(String),
}

/// `[tunnel]`: this host's VXLAN tunnel endpoint and its peers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TunnelConfig {
    /// Local tunnel IP (the socket binds to it; it is the outer source address).
    pub local_ip: IpAddr,
    /// UDP port (default 4789).
    pub udp_port: u16,
    /// The other hosts' tunnel IPs: unknown unicast and broadcast go to all of them, and only
    /// datagrams from them are accepted.
    pub peers: Vec<IpAddr>,
}

impl TunnelConfig {
    /// The name of the tunnel endpoint as a switch port (`weft ctl ports`, traces).
    pub fn port_name(&self) -> String {
        tunnel_port_name(self.udp_port)
    }
}

/// The switch port name of a VXLAN endpoint on `udp_port` (not a netdev).
pub fn tunnel_port_name(udp_port: u16) -> String {
    format!("vxlan-{udp_port}")
}

/// `[switch]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchSettings {
    /// Unix socket for `weft ctl` / `weft trace`.
    pub control_socket: PathBuf,
    /// Learned MAC entries older than this are forgotten.
    pub mac_aging_secs: u64,
    /// Number of packet worker threads (None: the I/O shell decides).
    pub workers: Option<usize>,
    /// Maximum number of learned MAC entries (all VLANs together).
    pub mac_table_size: usize,
    /// Niceness of the packet worker threads (-20..=19).
    pub worker_nice: i32,
    /// After a wakeup that moved frames, a packet worker keeps polling (epoll_wait with a zero
    /// timeout) this many microseconds before sleeping again, to save the sleep/wakeup pair (a
    /// context switch here, a try_to_wake_up in the sender's syscall) under a steady stream.
    /// 0 (the default) turns it off: on the 2-core bench machine, where the switch shares the
    /// cores with both iperf3 ends, polling never helped; 100 µs left one-host 64 B UDP within
    /// the spread and 1000 µs lowered it and TCP (benches/RESULTS.md). The spinning takes CPU
    /// the VMs need; worth trying (e.g. 50) where the switch has cores of its own. Read when
    /// the workers start, like `workers` and `worker_nice`. The window adapts: it halves after
    /// each window that found nothing, and grows back after one that did (see the worker's
    /// spin policy), so it costs little where traffic is sparse.
    pub busy_poll_us: u64,
    /// Whether a spinning worker gives its core away (sched_yield) between two polls that
    /// found nothing. A spin at niceness -10 that never yields takes the core from the VM
    /// whose answer it is waiting for, on a host whose cores the switch shares with its VMs.
    pub busy_poll_yield: bool,
    /// How the packet workers read and write taps (see [`IoBackend`]). Read when the workers
    /// start. `uring` falls back to `epoll` (with a warning) where io_uring is unavailable.
    #[serde(default)]
    pub io: IoBackend,
    /// The most connections the firewall tracks at once (all ports together); a new connection
    /// beyond it is refused and counted, established ones are never evicted.
    pub conntrack_size: usize,
    /// Where the switch makes the vhost-user socket of each `vhostuser` port, named after the
    /// port (QEMU's `-chardev socket,path=<vhost_dir>/<port name>`). Read when a port opens.
    pub vhost_dir: PathBuf,
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            mac_aging_secs: DEFAULT_MAC_AGING_SECS,
            workers: None,
            mac_table_size: DEFAULT_MAC_TABLE_SIZE,
            worker_nice: DEFAULT_WORKER_NICE,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            busy_poll_yield: true,
            io: IoBackend::default(),
            conntrack_size: DEFAULT_CONNTRACK_SIZE,
            vhost_dir: PathBuf::from(DEFAULT_VHOST_DIR),
        }
    }
}

/// `[switch] io`: how the packet workers move frames through taps.
///
/// Both wait for input with epoll. `Epoll` then reads a tap one frame per `read` (and one more
/// that finds it empty) and writes one frame per `writev`; `Uring` submits a burst of reads into
/// the worker's registered batch buffer and all of a round's tap writes with one
/// `io_uring_enter` each, so a burst costs two syscalls instead of two per frame. AF_PACKET,
/// tunnel and vhost-user ports, and taps under a capture or fault wrapper, take their ordinary
/// path with either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// read/writev per frame.
    Epoll,
    /// Batched through io_uring: the default, as it measured better on the one-host bench
    /// (benches/RESULTS.md, "io_uring for taps": 64 B UDP received 1.43-1.83x, TCP 1 stream
    /// 1.29-1.55x, TCP_RR 1.04-1.06x of epoll in two alternating runs; ping p50 3-11 % higher).
    #[default]
    Uring,
}

impl IoBackend {
    /// The config file's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Epoll => "epoll",
            IoBackend::Uring => "uring",
        }
    }
}

/// `[[physnet]]`: like a `bridge_mappings` entry plus the NIC on the physical bridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhysnetConfig {
    /// Physical network name, referenced by networks.
    pub name: String,
    /// Existing netdev carrying this physnet (becomes the uplink port of that name).
    pub interface: String,
}

/// Network type with its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum NetworkType {
    /// Untagged on the physnet.
    Flat,
    /// 802.1Q tagged on the physnet with this global VLAN id.
    Vlan {
        /// Global VLAN id on the wire, 1..=4094.
        segmentation_id: u16,
    },
    /// Host-local: never leaves through an uplink.
    Local,
    /// VXLAN: carried to the tunnel peers with this VNI.
    Vxlan {
        /// VNI, 1..=16777215.
        segmentation_id: u32,
    },
}

impl fmt::Display for NetworkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkType::Flat => f.write_str("flat"),
            NetworkType::Vlan { segmentation_id } => write!(f, "vlan {segmentation_id}"),
            NetworkType::Local => f.write_str("local"),
            NetworkType::Vxlan { segmentation_id } => write!(f, "vxlan {segmentation_id}"),
        }
    }
}

/// `[[network]]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfig {
    /// Network name (unique).
    pub name: String,
    /// flat / vlan (with segmentation id) / local.
    pub network_type: NetworkType,
    /// Physnet for flat and vlan networks; None for local.
    pub physnet: Option<String>,
    /// The network's MTU (Neutron's `mtu`: 1500 on a flat/vlan physnet, 1450 on vxlan over a
    /// 1500-byte underlay), which DHCP (option 26) and the metadata service tell guests. Every
    /// port of the network has it, taps the switch creates and netdevs it only attaches (a
    /// VM's tap that QEMU opened) alike, so it is the network's, not the port's. None: not told.
    pub mtu: Option<u32>,
}

/// How the I/O shell attaches a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PortKind {
    /// weft creates and owns a tap (/dev/net/tun).
    Tap,
    /// An existing netdev attached by name (AF_PACKET).
    System,
    /// The VXLAN tunnel endpoint (a UDP socket; created by the switch from `[tunnel]`).
    Vxlan,
    /// A QEMU guest's virtio-net rings, shared over a vhost-user socket the switch serves at
    /// `<[switch] vhost_dir>/<port name>` (as OVS-DPDK's `dpdkvhostuser` ports).
    VhostUser,
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortKind::Tap => "tap",
            PortKind::System => "system",
            PortKind::Vxlan => "vxlan",
            PortKind::VhostUser => "vhostuser",
        })
    }
}

/// An extra (MAC, IP or prefix) a port may send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct AddressPair {
    /// None: the port's own MAC.
    pub mac: Option<MacAddr>,
    /// A host address (/32, /128) or a prefix.
    pub ip: IpNet,
}

/// `[[port]]`: a VM-side port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortConfig {
    /// Interface name (max 15 chars).
    pub name: String,
    /// tap or system.
    pub kind: PortKind,
    /// Network name.
    pub network: String,
    /// The port's MAC; required when port_security is on.
    pub mac: Option<MacAddr>,
    /// Fixed IPs (v4 and v6).
    pub fixed_ips: Vec<IpAddr>,
    /// MAC/IP/ARP/ND anti-spoofing and DHCP guard (default true).
    pub port_security: bool,
    /// Extra addresses the port may use.
    pub allowed_address_pairs: Vec<AddressPair>,
    /// MTU to give a tap the switch creates (the network's MTU: 1450 for vxlan on a
    /// 1500-byte underlay). None: the kernel default. Tap ports only.
    pub mtu: Option<u32>,
    /// Write every frame the port receives and sends to this pcap file (absolute path), for
    /// `tcpdump -r`; a reload that changes or removes it moves or stops the capture. None: no
    /// capture.
    pub capture: Option<std::path::PathBuf>,
    /// DNS name given as the DHCP host name (Neutron's `dns_name`). None: `host-<ip>`.
    pub dns_name: Option<String>,
    /// `[port.metadata]`: the instance the metadata service at 169.254.169.254 describes to
    /// this port. None: the port has no instance, every metadata path is 404.
    pub metadata: Option<InstanceMetadata>,
    /// Ids of the port's `[[security_group]]`s: its firewall. None: no firewall (the port
    /// passes everything port security lets through); empty: only DHCP/ND pass. Only with
    /// port_security.
    pub security_groups: Option<Vec<String>>,
}

impl SwitchConfig {
    /// The MTU guests on port `p` are told (DHCP option 26, metadata): the port's own when
    /// the switch sizes its tap, else its network's.
    pub fn guest_mtu(&self, p: &PortConfig) -> Option<u32> {
        p.mtu.or_else(|| {
            self.networks
                .iter()
                .find(|n| n.name == p.network)
                .and_then(|n| n.mtu)
        })
    }

    /// Reads and validates a config file; errors are labelled with the file name.
    pub fn load(path: &Path) -> Result<SwitchConfig, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: source.clone(),
            line: None,
            path: String::new(),
            message: format!("cannot read config: {e}"),
        })?;
        SwitchConfig::from_toml(&text, &source)
    }

    /// Parses and validates config text; `source_name` labels errors (e.g. the file name).
    pub fn from_toml(text: &str, source_name: &str) -> Result<SwitchConfig, ConfigError> {
        let cx = Ctx {
            text,
            source: source_name,
            has_lines: true,
        };
        let raw = raw::parse(&cx)?;
        validate::validate(&cx, raw)
    }

    /// Checks a config built in code (the agent's plan) with the same rules and the same
    /// messages as [`SwitchConfig::from_toml`], and returns it as the switch will use it
    /// (allowed address pairs truncated to their prefix, tunnel peers in one list). Errors
    /// name `source_name`, the object and the field, but no line.
    pub fn validated(&self, source_name: &str) -> Result<SwitchConfig, ConfigError> {
        let cx = Ctx {
            text: "",
            source: source_name,
            has_lines: false,
        };
        validate::validate(&cx, raw::RawFile::from_config(self))
    }

    /// Looks up a network by name.
    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Looks up a physnet by name.
    pub fn physnet(&self, name: &str) -> Option<&PhysnetConfig> {
        self.physnets.iter().find(|p| p.name == name)
    }
}
