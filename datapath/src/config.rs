//! The switch config file (TOML): physnets, networks, ports, and `[switch]` settings.
//!
//! ```toml
//! [switch]                      # optional
//! control_socket = "/run/weft/switch.sock"
//! mac_aging_secs = 300
//! workers = 2
//! worker_nice = -10             # niceness of the packet workers (ovs-ctl's default for ovs-vswitchd)
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
//! kind = "tap"                  # tap | system
//! network = "net-vlan100"
//! mac = "fa:16:3e:00:00:01"
//! fixed_ips = ["10.0.0.11"]
//! port_security = true
//! allowed_address_pairs = [{ mac = "fa:16:3e:00:00:99", ip_address = "10.0.0.0/24" }]
//! mtu = 1450                    # optional, tap ports: the MTU of the tap weft creates
//! ```
//!
//! Every error names the source, the line, the object and the field:
//! `host.toml line 12: port "tap-vm1": mac: invalid MAC address "zz"`.

use crate::mac::MacAddr;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Linux IFNAMSIZ - 1.
pub const MAX_IFNAME_LEN: usize = 15;
/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/weft/switch.sock";
/// Default MAC aging time, as the Linux bridge and OVS use.
pub const DEFAULT_MAC_AGING_SECS: u64 = 300;
/// Default capacity of the learned MAC table.
pub const DEFAULT_MAC_TABLE_SIZE: usize = 65536;
/// Default niceness of the packet workers: what `ovs-ctl` gives ovs-vswitchd
/// (`--ovs-vswitchd-priority`, default -10), so the switch is not starved by
/// the VMs' own busy processes on a loaded host.
pub const DEFAULT_WORKER_NICE: i32 = -10;

/// A validated switch configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// `[tunnel]`: this host's VXLAN tunnel endpoint and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for SwitchSettings {
    fn default() -> Self {
        SwitchSettings {
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            mac_aging_secs: DEFAULT_MAC_AGING_SECS,
            workers: None,
            mac_table_size: DEFAULT_MAC_TABLE_SIZE,
            worker_nice: DEFAULT_WORKER_NICE,
        }
    }
}

/// `[[physnet]]`: like a `bridge_mappings` entry plus the NIC on the physical bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysnetConfig {
    /// Physical network name, referenced by networks.
    pub name: String,
    /// Existing netdev carrying this physnet (becomes the uplink port of that name).
    pub interface: String,
}

/// Network type with its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Network name (unique).
    pub name: String,
    /// flat / vlan (with segmentation id) / local.
    pub network_type: NetworkType,
    /// Physnet for flat and vlan networks; None for local.
    pub physnet: Option<String>,
}

/// How the I/O shell attaches a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// weft creates and owns a tap (/dev/net/tun).
    Tap,
    /// An existing netdev attached by name (AF_PACKET).
    System,
    /// The VXLAN tunnel endpoint (a UDP socket; created by the switch from `[tunnel]`).
    Vxlan,
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortKind::Tap => "tap",
            PortKind::System => "system",
            PortKind::Vxlan => "vxlan",
        })
    }
}

/// An extra (MAC, IP or prefix) a port may send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressPair {
    /// None: the port's own MAC.
    pub mac: Option<MacAddr>,
    /// A host address (/32, /128) or a prefix.
    pub ip: IpNet,
}

/// `[[port]]`: a VM-side port.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A config error naming the source, the line, the object and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name or other label of the text (e.g. `host.toml`).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Object and field, e.g. `port "tap-vm1": mac` (may be empty).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---- raw (serde) layer: every value keeps its span so errors can name the line ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    switch: Option<RawSwitch>,
    #[serde(default)]
    physnet: Vec<RawPhysnet>,
    #[serde(default)]
    network: Vec<RawNetwork>,
    #[serde(default)]
    port: Vec<RawPort>,
    tunnel: Option<RawTunnel>,
    #[serde(default)]
    tunnel_peer: Vec<RawTunnelPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    local_ip: Spanned<String>,
    udp_port: Option<Spanned<i64>>,
    #[serde(default)]
    remote_ips: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnelPeer {
    ip: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    control_socket: Option<Spanned<String>>,
    mac_aging_secs: Option<Spanned<i64>>,
    workers: Option<Spanned<i64>>,
    mac_table_size: Option<Spanned<i64>>,
    worker_nice: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhysnet {
    name: Spanned<String>,
    interface: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: Spanned<String>,
    #[serde(rename = "type")]
    network_type: Spanned<String>,
    physnet: Option<Spanned<String>>,
    segmentation_id: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    kind: Option<Spanned<String>>,
    network: Spanned<String>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    fixed_ips: Vec<Spanned<String>>,
    port_security: Option<Spanned<bool>>,
    #[serde(default)]
    allowed_address_pairs: Vec<RawPair>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    mac: Option<Spanned<String>>,
    ip_address: Spanned<String>,
}

struct Ctx<'a> {
    text: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Option<Range<usize>>, path: String, message: String) -> ConfigError {
        ConfigError {
            source_name: self.source.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            path,
            message,
        }
    }

    /// The `[[table]]` header a byte offset falls under, for naming the object of a serde error.
    fn table_at(&self, offset: usize) -> String {
        let end = offset.min(self.text.len());
        let before = &self.text[..end];
        let mut found: Option<&str> = None;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for line in before.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                let name = t.split('#').next().unwrap_or("").trim();
                *counts.entry(name).or_default() += 1;
                found = Some(name);
            }
        }
        match found {
            Some(h) if h.starts_with("[[") => format!("{h} #{}", counts[h]),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".into());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name {name:?} is {} characters, the limit is {MAX_IFNAME_LEN}",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("invalid interface name {name:?}"));
    }
    Ok(())
}

fn parse_ip_or_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| format!("invalid IP address or CIDR {s:?}"))
}

impl SwitchConfig {
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
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let table = span
                .as_ref()
                .map(|s| cx.table_at(s.start))
                .unwrap_or_default();
            cx.err(span, table, e.message().trim().to_string())
        })?;

        // [switch]
        let mut switch = SwitchSettings::default();
        if let Some(s) = raw.switch {
            if let Some(p) = s.control_socket {
                if p.get_ref().is_empty() {
                    return Err(cx.err(
                        Some(p.span()),
                        "switch: control_socket".into(),
                        "must not be empty".into(),
                    ));
                }
                switch.control_socket = PathBuf::from(p.get_ref());
            }
            if let Some(a) = s.mac_aging_secs {
                let v = *a.get_ref();
                if !(1..=1_000_000).contains(&v) {
                    return Err(cx.err(
                        Some(a.span()),
                        "switch: mac_aging_secs".into(),
                        format!("{v} is out of range 1..=1000000"),
                    ));
                }
                switch.mac_aging_secs = v as u64;
            }
            if let Some(w) = s.workers {
                let v = *w.get_ref();
                if !(1..=256).contains(&v) {
                    return Err(cx.err(
                        Some(w.span()),
                        "switch: workers".into(),
                        format!("{v} is out of range 1..=256"),
                    ));
                }
                switch.workers = Some(v as usize);
            }
            if let Some(n) = s.worker_nice {
                let v = *n.get_ref();
                if !(-20..=19).contains(&v) {
                    return Err(cx.err(
                        Some(n.span()),
                        "switch: worker_nice".into(),
                        format!("{v} is out of range -20..=19"),
                    ));
                }
                switch.worker_nice = v as i32;
            }
            if let Some(m) = s.mac_table_size {
                let v = *m.get_ref();
                if !(16..=(1 << 24)).contains(&v) {
                    return Err(cx.err(
                        Some(m.span()),
                        "switch: mac_table_size".into(),
                        format!("{v} is out of range 16..=16777216"),
                    ));
                }
                switch.mac_table_size = v as usize;
            }
        }

        // [tunnel], [[tunnel_peer]]
        let tunnel = match raw.tunnel {
            None => {
                if let Some(p) = raw.tunnel_peer.first() {
                    return Err(cx.err(
                        Some(p.ip.span()),
                        "[[tunnel_peer]] #1: ip".into(),
                        "tunnel peers need a [tunnel] section with local_ip".into(),
                    ));
                }
                None
            }
            Some(t) => {
                let parse_ip = |s: &Spanned<String>, path: &str| -> Result<IpAddr, ConfigError> {
                    let ip: IpAddr = s.get_ref().parse().map_err(|_| {
                        cx.err(
                            Some(s.span()),
                            path.to_string(),
                            format!("invalid IP address {:?}", s.get_ref()),
                        )
                    })?;
                    if ip.is_unspecified() || ip.is_multicast() {
                        return Err(cx.err(
                            Some(s.span()),
                            path.to_string(),
                            format!("{ip} is not a unicast address"),
                        ));
                    }
                    Ok(ip)
                };
                let local_ip = parse_ip(&t.local_ip, "tunnel: local_ip")?;
                let udp_port = match &t.udp_port {
                    None => crate::tunnel::VXLAN_UDP_PORT,
                    Some(p) => {
                        let v = *p.get_ref();
                        if !(1..=65535).contains(&v) {
                            return Err(cx.err(
                                Some(p.span()),
                                "tunnel: udp_port".into(),
                                format!("{v} is out of range 1..=65535"),
                            ));
                        }
                        v as u16
                    }
                };
                let mut peers = Vec::new();
                let all = t
                    .remote_ips
                    .iter()
                    .map(|s| (s, "tunnel: remote_ips".to_string()))
                    .chain(
                        raw.tunnel_peer
                            .iter()
                            .enumerate()
                            .map(|(i, p)| (&p.ip, format!("[[tunnel_peer]] #{}: ip", i + 1))),
                    );
                for (s, path) in all {
                    let ip = parse_ip(s, &path)?;
                    if ip == local_ip {
                        return Err(cx.err(
                            Some(s.span()),
                            path,
                            format!("{ip} is this host's own local_ip"),
                        ));
                    }
                    if ip.is_ipv4() != local_ip.is_ipv4() {
                        return Err(cx.err(
                            Some(s.span()),
                            path,
                            format!("{ip} is not of local_ip {local_ip}'s address family"),
                        ));
                    }
                    if peers.contains(&ip) {
                        return Err(cx.err(Some(s.span()), path, format!("duplicate peer {ip}")));
                    }
                    peers.push(ip);
                }
                Some(TunnelConfig {
                    local_ip,
                    udp_port,
                    peers,
                })
            }
        };

        // [[physnet]]
        let mut physnets = Vec::new();
        let mut physnet_names = HashSet::new();
        let mut interfaces: HashMap<String, String> = HashMap::new();
        for p in raw.physnet {
            let name = p.name.get_ref().clone();
            let obj = format!("physnet {name:?}");
            if name.is_empty() {
                return Err(cx.err(
                    Some(p.name.span()),
                    "physnet: name".into(),
                    "must not be empty".into(),
                ));
            }
            if !physnet_names.insert(name.clone()) {
                return Err(cx.err(
                    Some(p.name.span()),
                    format!("{obj}: name"),
                    format!("duplicate physnet name {name:?}"),
                ));
            }
            let ifname = p.interface.get_ref().clone();
            check_ifname(&ifname)
                .map_err(|m| cx.err(Some(p.interface.span()), format!("{obj}: interface"), m))?;
            if let Some(other) = interfaces.insert(ifname.clone(), obj.clone()) {
                return Err(cx.err(
                    Some(p.interface.span()),
                    format!("{obj}: interface"),
                    format!("interface {ifname:?} is already used by {other}"),
                ));
            }
            physnets.push(PhysnetConfig {
                name,
                interface: ifname,
            });
        }

        // [[network]]
        let mut networks = Vec::new();
        let mut network_names = HashSet::new();
        let mut segments: HashMap<(String, Option<u16>), String> = HashMap::new();
        let mut vnis: HashMap<i64, String> = HashMap::new();
        for n in raw.network {
            let name = n.name.get_ref().clone();
            let obj = format!("network {name:?}");
            if name.is_empty() {
                return Err(cx.err(
                    Some(n.name.span()),
                    "network: name".into(),
                    "must not be empty".into(),
                ));
            }
            if !network_names.insert(name.clone()) {
                return Err(cx.err(
                    Some(n.name.span()),
                    format!("{obj}: name"),
                    format!("duplicate network name {name:?}"),
                ));
            }
            let ty = n.network_type.get_ref().as_str();
            let seg = match &n.segmentation_id {
                None => None,
                Some(s) => {
                    let v = *s.get_ref();
                    if ty == "vlan" && !(1..=4094).contains(&v) {
                        return Err(cx.err(
                            Some(s.span()),
                            format!("{obj}: segmentation_id"),
                            format!("VLAN id {v} is out of range 1..=4094"),
                        ));
                    }
                    if ty == "vxlan" && !(1..=i64::from(crate::tunnel::MAX_VNI)).contains(&v) {
                        return Err(cx.err(
                            Some(s.span()),
                            format!("{obj}: segmentation_id"),
                            format!("VNI {v} is out of range 1..=16777215"),
                        ));
                    }
                    Some((v, s.span()))
                }
            };
            let network_type = match ty {
                "vlan" => match seg {
                    Some((v, _)) => NetworkType::Vlan {
                        segmentation_id: v as u16,
                    },
                    None => {
                        return Err(cx.err(
                            Some(n.name.span()),
                            format!("{obj}: segmentation_id"),
                            "a vlan network needs segmentation_id (1..=4094)".into(),
                        ))
                    }
                },
                "vxlan" => {
                    let Some((v, span)) = seg else {
                        return Err(cx.err(
                            Some(n.name.span()),
                            format!("{obj}: segmentation_id"),
                            "a vxlan network needs segmentation_id (the VNI, 1..=16777215)".into(),
                        ));
                    };
                    if tunnel.is_none() {
                        return Err(cx.err(
                            Some(n.network_type.span()),
                            format!("{obj}: type"),
                            "a vxlan network needs a [tunnel] section with local_ip".into(),
                        ));
                    }
                    if let Some(other) = vnis.insert(v, name.clone()) {
                        return Err(cx.err(
                            Some(span),
                            format!("{obj}: segmentation_id"),
                            format!("VNI {v} is already used by network {other:?}"),
                        ));
                    }
                    NetworkType::Vxlan {
                        segmentation_id: v as u32,
                    }
                }
                "geneve" | "gre" => {
                    return Err(cx.err(
                        Some(n.network_type.span()),
                        format!("{obj}: type"),
                        format!("network type {ty:?} is not supported by this switch (vxlan is)"),
                    ))
                }
                "flat" | "local" => {
                    if let Some((_, span)) = seg {
                        return Err(cx.err(
                            Some(span),
                            format!("{obj}: segmentation_id"),
                            format!("a {ty} network has no segmentation_id"),
                        ));
                    }
                    if ty == "flat" {
                        NetworkType::Flat
                    } else {
                        NetworkType::Local
                    }
                }
                other => {
                    return Err(cx.err(
                        Some(n.network_type.span()),
                        format!("{obj}: type"),
                        format!(
                            "unknown network type {other:?} (expected flat, vlan, vxlan or local)"
                        ),
                    ))
                }
            };
            let physnet = match (&network_type, &n.physnet) {
                (NetworkType::Local | NetworkType::Vxlan { .. }, None) => None,
                (NetworkType::Local | NetworkType::Vxlan { .. }, Some(p)) => {
                    return Err(cx.err(
                        Some(p.span()),
                        format!("{obj}: physnet"),
                        format!("a {ty} network has no physnet"),
                    ))
                }
                (_, None) => {
                    return Err(cx.err(
                        Some(n.name.span()),
                        format!("{obj}: physnet"),
                        format!("a {ty} network needs a physnet"),
                    ))
                }
                (_, Some(p)) => {
                    if !physnet_names.contains(p.get_ref()) {
                        return Err(cx.err(
                            Some(p.span()),
                            format!("{obj}: physnet"),
                            format!("unknown physnet {:?}", p.get_ref()),
                        ));
                    }
                    let key = (
                        p.get_ref().clone(),
                        match network_type {
                            NetworkType::Vlan { segmentation_id } => Some(segmentation_id),
                            _ => None,
                        },
                    );
                    if let Some(other) = segments.insert(key.clone(), name.clone()) {
                        let what = match key.1 {
                            Some(v) => format!("VLAN {v} on physnet {:?}", key.0),
                            None => format!("the flat segment of physnet {:?}", key.0),
                        };
                        let span = n
                            .segmentation_id
                            .as_ref()
                            .map(|s| s.span())
                            .unwrap_or_else(|| p.span());
                        let field = if key.1.is_some() {
                            "segmentation_id"
                        } else {
                            "physnet"
                        };
                        return Err(cx.err(
                            Some(span),
                            format!("{obj}: {field}"),
                            format!("{what} is already used by network {other:?}"),
                        ));
                    }
                    Some(p.get_ref().clone())
                }
            };
            networks.push(NetworkConfig {
                name,
                network_type,
                physnet,
            });
        }

        // [[port]]
        let mut ports = Vec::new();
        let mut port_names = HashSet::new();
        for p in raw.port {
            let name = p.name.get_ref().clone();
            let obj = format!("port {name:?}");
            check_ifname(&name)
                .map_err(|m| cx.err(Some(p.name.span()), format!("{obj}: name"), m))?;
            if !port_names.insert(name.clone()) {
                return Err(cx.err(
                    Some(p.name.span()),
                    format!("{obj}: name"),
                    format!("duplicate port name {name:?}"),
                ));
            }
            if let Some(other) = interfaces.get(&name) {
                return Err(cx.err(
                    Some(p.name.span()),
                    format!("{obj}: name"),
                    format!("{name:?} is the uplink interface of {other}"),
                ));
            }
            if let Some(t) = &tunnel {
                if name == t.port_name() {
                    return Err(cx.err(
                        Some(p.name.span()),
                        format!("{obj}: name"),
                        format!("{name:?} is the name of the tunnel endpoint"),
                    ));
                }
            }
            let kind = match &p.kind {
                None => PortKind::Tap,
                Some(k) => match k.get_ref().as_str() {
                    "tap" => PortKind::Tap,
                    "system" => PortKind::System,
                    other => {
                        return Err(cx.err(
                            Some(k.span()),
                            format!("{obj}: kind"),
                            format!("unknown port kind {other:?} (expected tap or system)"),
                        ))
                    }
                },
            };
            if !network_names.contains(p.network.get_ref()) {
                return Err(cx.err(
                    Some(p.network.span()),
                    format!("{obj}: network"),
                    format!("unknown network {:?}", p.network.get_ref()),
                ));
            }
            let port_security = p
                .port_security
                .as_ref()
                .map(|s| *s.get_ref())
                .unwrap_or(true);
            let mac = match &p.mac {
                None => None,
                Some(m) => {
                    let mac: MacAddr =
                        m.get_ref()
                            .parse()
                            .map_err(|e: crate::mac::MacParseError| {
                                cx.err(Some(m.span()), format!("{obj}: mac"), e.to_string())
                            })?;
                    if mac.is_multicast() || mac == MacAddr::ZERO {
                        return Err(cx.err(
                            Some(m.span()),
                            format!("{obj}: mac"),
                            format!("{mac} is not a unicast MAC address"),
                        ));
                    }
                    Some(mac)
                }
            };
            if mac.is_none() && port_security {
                return Err(cx.err(
                    Some(p.name.span()),
                    format!("{obj}: mac"),
                    "required when port_security = true".into(),
                ));
            }
            let mut fixed_ips = Vec::new();
            for ip in &p.fixed_ips {
                let addr: IpAddr = ip.get_ref().parse().map_err(|_| {
                    cx.err(
                        Some(ip.span()),
                        format!("{obj}: fixed_ips"),
                        format!("invalid IP address {:?}", ip.get_ref()),
                    )
                })?;
                fixed_ips.push(addr);
            }
            let mut allowed_address_pairs = Vec::new();
            for pair in &p.allowed_address_pairs {
                let pmac = match &pair.mac {
                    None => None,
                    Some(m) => Some(m.get_ref().parse::<MacAddr>().map_err(|e| {
                        cx.err(
                            Some(m.span()),
                            format!("{obj}: allowed_address_pairs: mac"),
                            e.to_string(),
                        )
                    })?),
                };
                if pmac.is_none() && mac.is_none() {
                    return Err(cx.err(
                        Some(pair.ip_address.span()),
                        format!("{obj}: allowed_address_pairs: mac"),
                        "required when the port has no mac".into(),
                    ));
                }
                let ip = parse_ip_or_cidr(pair.ip_address.get_ref()).map_err(|m| {
                    cx.err(
                        Some(pair.ip_address.span()),
                        format!("{obj}: allowed_address_pairs: ip_address"),
                        m,
                    )
                })?;
                allowed_address_pairs.push(AddressPair { mac: pmac, ip });
            }
            let mtu = match &p.mtu {
                None => None,
                Some(m) => {
                    let v = *m.get_ref();
                    if kind != PortKind::Tap {
                        return Err(cx.err(
                            Some(m.span()),
                            format!("{obj}: mtu"),
                            "only tap ports take an mtu (a system port keeps its netdev's)".into(),
                        ));
                    }
                    if !(68..=65535).contains(&v) {
                        return Err(cx.err(
                            Some(m.span()),
                            format!("{obj}: mtu"),
                            format!("{v} is out of range 68..=65535"),
                        ));
                    }
                    Some(v as u32)
                }
            };
            ports.push(PortConfig {
                mtu,
                name,
                kind,
                network: p.network.into_inner(),
                mac,
                fixed_ips,
                port_security,
                allowed_address_pairs,
            });
        }

        Ok(SwitchConfig {
            switch,
            physnets,
            networks,
            ports,
            tunnel,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[switch]
mac_aging_secs = 60

[[physnet]]
name = "physnet"
interface = "eth1"

[[network]]
name = "net-vlan100"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[network]]
name = "net-flat"
type = "flat"
physnet = "physnet"

[[network]]
name = "net-local"
type = "local"

[[port]]
name = "tap-vm1"
kind = "tap"
network = "net-vlan100"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.11", "2001:db8::11"]
port_security = true
allowed_address_pairs = [{ ip_address = "10.0.0.0/24" }, { mac = "fa:16:3e:00:00:99", ip_address = "10.0.1.5" }]

[[port]]
name = "vm2"
kind = "system"
network = "net-local"
port_security = false
"#;

    fn err(text: &str) -> String {
        SwitchConfig::from_toml(text, "host.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_the_issue_format() {
        let c = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
        assert_eq!(c.switch.mac_aging_secs, 60);
        assert_eq!(
            c.switch.control_socket,
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        assert_eq!(c.physnets[0].interface, "eth1");
        assert_eq!(
            c.networks[0].network_type,
            NetworkType::Vlan {
                segmentation_id: 100
            }
        );
        assert_eq!(c.networks[1].network_type, NetworkType::Flat);
        assert_eq!(c.networks[2].physnet, None);
        let p = &c.ports[0];
        assert_eq!(p.fixed_ips.len(), 2);
        assert!(p.port_security);
        assert_eq!(p.allowed_address_pairs[0].ip.to_string(), "10.0.0.0/24");
        assert_eq!(p.allowed_address_pairs[0].mac, None);
        assert_eq!(p.allowed_address_pairs[1].ip.to_string(), "10.0.1.5/32");
        assert_eq!(c.ports[1].kind, PortKind::System);
        assert!(!c.ports[1].port_security);
        assert_eq!(c.ports[1].mac, None);
    }

    #[test]
    fn bad_mac_names_field_and_line() {
        let text = GOOD.replace("mac = \"fa:16:3e:00:00:01\"", "mac = \"zz\"");
        let line = text.lines().position(|l| l.contains("\"zz\"")).unwrap() + 1;
        assert_eq!(
            err(&text),
            format!("host.toml line {line}: port \"tap-vm1\": mac: invalid MAC address \"zz\"")
        );
    }

    #[test]
    fn unknown_key_rejected_with_line() {
        let text = GOOD.replace("kind = \"system\"", "kind = \"system\"\ncolour = \"red\"");
        let line = text.lines().position(|l| l.contains("colour")).unwrap() + 1;
        let e = err(&text);
        assert!(
            e.starts_with(&format!(
                "host.toml line {line}: [[port]] #2: unknown field `colour`"
            )),
            "{e}"
        );
    }

    #[test]
    fn unknown_top_level_section() {
        let e = err("[[bridge]]\nname = \"x\"\n");
        assert!(e.starts_with("host.toml line 1"), "{e}");
        assert!(e.contains("unknown field `bridge`"), "{e}");
    }

    #[test]
    fn duplicates_and_references() {
        let dup = GOOD.replacen("name = \"vm2\"", "name = \"tap-vm1\"", 1);
        assert!(
            err(&dup).contains("port \"tap-vm1\": name: duplicate port name"),
            "{}",
            err(&dup)
        );
        let badnet = GOOD.replace("network = \"net-local\"", "network = \"nope\"");
        assert!(err(&badnet).contains("port \"vm2\": network: unknown network \"nope\""));
        let badphys = GOOD.replace(
            "physnet = \"physnet\"\nsegmentation_id",
            "physnet = \"other\"\nsegmentation_id",
        );
        assert!(
            err(&badphys).contains("network \"net-vlan100\": physnet: unknown physnet \"other\"")
        );
        let dupnet = GOOD.replace("name = \"net-local\"", "name = \"net-flat\"");
        assert!(err(&dupnet).contains("duplicate network name"));
    }

    #[test]
    fn vlan_ranges_and_segment_rules() {
        let e = err(&GOOD.replace("segmentation_id = 100", "segmentation_id = 4095"));
        assert!(
            e.contains(
                "network \"net-vlan100\": segmentation_id: VLAN id 4095 is out of range 1..=4094"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace("segmentation_id = 100", "segmentation_id = 0"));
        assert!(e.contains("out of range"), "{e}");
        let e = err(&GOOD.replace("segmentation_id = 100\n", ""));
        assert!(e.contains("needs segmentation_id"), "{e}");
        let e = err(&GOOD.replace("type = \"flat\"", "type = \"flat\"\nsegmentation_id = 5"));
        assert!(
            e.contains(
                "network \"net-flat\": segmentation_id: a flat network has no segmentation_id"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace("type = \"local\"", "type = \"local\"\nsegmentation_id = 5"));
        assert!(e.contains("a local network has no segmentation_id"), "{e}");
        let e = err(&GOOD.replace(
            "type = \"local\"",
            "type = \"local\"\nphysnet = \"physnet\"",
        ));
        assert!(e.contains("a local network has no physnet"), "{e}");
        let e = err(&GOOD.replace("type = \"local\"", "type = \"vxlan\""));
        assert!(e.contains("needs segmentation_id (the VNI"), "{e}");
        let e = err(&GOOD.replace("type = \"local\"", "type = \"stt\""));
        assert!(e.contains("type: unknown network type \"stt\""), "{e}");
        let dupseg = format!(
            "{GOOD}\n[[network]]\nname = \"again\"\ntype = \"vlan\"\nphysnet = \"physnet\"\nsegmentation_id = 100\n"
        );
        let line = dupseg.lines().count();
        let e = err(&dupseg);
        assert_eq!(
            e,
            format!("host.toml line {line}: network \"again\": segmentation_id: VLAN 100 on physnet \"physnet\" is already used by network \"net-vlan100\"")
        );
        let dupflat = format!(
            "{GOOD}\n[[network]]\nname = \"again\"\ntype = \"flat\"\nphysnet = \"physnet\"\n"
        );
        assert!(err(&dupflat).contains("flat segment"), "{}", err(&dupflat));
    }

    #[test]
    fn interface_names_and_ips() {
        let e = err(&GOOD.replace(
            "interface = \"eth1\"",
            "interface = \"averyveryverylongname\"",
        ));
        assert!(e.contains("physnet \"physnet\": interface: interface name \"averyveryverylongname\" is 21 characters, the limit is 15"), "{e}");
        let e = err(&GOOD.replace("name = \"vm2\"", "name = \"port-name-too-long\""));
        assert!(e.contains("is 18 characters"), "{e}");
        let e = err(&GOOD.replace("\"10.0.0.11\"", "\"10.0.0.300\""));
        assert!(
            e.contains("port \"tap-vm1\": fixed_ips: invalid IP address \"10.0.0.300\""),
            "{e}"
        );
        let e = err(&GOOD.replace("\"10.0.0.0/24\"", "\"10.0.0.0/33\""));
        assert!(
            e.contains("allowed_address_pairs: ip_address: invalid IP address or CIDR"),
            "{e}"
        );
        let e = err(&GOOD.replace("mac = \"fa:16:3e:00:00:99\"", "mac = \"nope\""));
        assert!(
            e.contains("allowed_address_pairs: mac: invalid MAC address \"nope\""),
            "{e}"
        );
        let e = err(&GOOD.replace("name = \"vm2\"", "name = \"eth1\""));
        assert!(e.contains("uplink interface"), "{e}");
        let e = err(&GOOD.replace("port_security = false\n", ""));
        assert!(
            e.contains("port \"vm2\": mac: required when port_security = true"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind = \"system\"", "kind = \"vhost\""));
        assert!(e.contains("kind: unknown port kind \"vhost\""), "{e}");
        let e = err(&GOOD.replace("mac = \"fa:16:3e:00:00:01\"", "mac = \"ff:ff:ff:ff:ff:ff\""));
        assert!(e.contains("not a unicast MAC"), "{e}");
    }

    #[test]
    fn wrong_types_and_switch_section() {
        let e = err(&GOOD.replace("segmentation_id = 100", "segmentation_id = \"100\""));
        assert!(e.contains("line"), "{e}");
        let e = err(&GOOD.replace("mac_aging_secs = 60", "mac_aging_secs = 0"));
        assert!(
            e.contains("switch: mac_aging_secs: 0 is out of range"),
            "{e}"
        );
        let e = err(&GOOD.replace("mac_aging_secs = 60", "workers = 0"));
        assert!(e.contains("switch: workers"), "{e}");
        let e = err(&GOOD.replace("mac_aging_secs = 60", "worker_nice = -21"));
        assert!(e.contains("switch: worker_nice"), "{e}");
        let e = err("[[port]]\nname = \"a\"\n");
        assert!(e.contains("missing field `network`"), "{e}");
        let c = SwitchConfig::from_toml("", "empty.toml").unwrap();
        assert!(c.ports.is_empty());
    }

    const TUNNEL: &str = r#"
[tunnel]
local_ip = "192.0.2.1"
remote_ips = ["192.0.2.3"]

[[tunnel_peer]]
ip = "192.0.2.2"

[[network]]
name = "net-vx"
type = "vxlan"
segmentation_id = 1001

[[port]]
name = "tap-vx1"
network = "net-vx"
mac = "fa:16:3e:00:10:01"
fixed_ips = ["10.10.0.1"]
"#;

    #[test]
    fn vxlan_networks_and_tunnel_peers() {
        let c = SwitchConfig::from_toml(TUNNEL, "host.toml").unwrap();
        let t = c.tunnel.as_ref().unwrap();
        assert_eq!(t.local_ip.to_string(), "192.0.2.1");
        assert_eq!(t.udp_port, 4789);
        assert_eq!(t.port_name(), "vxlan-4789");
        let peers: Vec<String> = t.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["192.0.2.3", "192.0.2.2"]);
        assert_eq!(
            c.networks[0].network_type,
            NetworkType::Vxlan {
                segmentation_id: 1001
            }
        );
        assert_eq!(c.networks[0].physnet, None);
        assert_eq!(c.networks[0].network_type.to_string(), "vxlan 1001");
    }

    #[test]
    fn vxlan_errors_name_the_field() {
        let e = err(&TUNNEL.replace("segmentation_id = 1001", "segmentation_id = 16777216"));
        assert!(
            e.contains("network \"net-vx\": segmentation_id: VNI 16777216 is out of range"),
            "{e}"
        );
        let e = err(&TUNNEL.replace("segmentation_id = 1001", "segmentation_id = 0"));
        assert!(e.contains("VNI 0 is out of range"), "{e}");
        let no_tunnel = TUNNEL
            .replace(
                "[tunnel]\nlocal_ip = \"192.0.2.1\"\nremote_ips = [\"192.0.2.3\"]\n",
                "",
            )
            .replace("[[tunnel_peer]]\nip = \"192.0.2.2\"\n", "");
        let e = err(&no_tunnel);
        assert!(
            e.contains("network \"net-vx\": type: a vxlan network needs a [tunnel] section"),
            "{e}"
        );
        let e = err(&TUNNEL.replace("local_ip = \"192.0.2.1\"", "local_ip = \"nope\""));
        assert!(
            e.starts_with("host.toml line 3: tunnel: local_ip: invalid IP address \"nope\""),
            "{e}"
        );
        let e = err(&TUNNEL.replace("ip = \"192.0.2.2\"", "ip = \"192.0.2.1\""));
        assert!(
            e.contains("[[tunnel_peer]] #1: ip: 192.0.2.1 is this host's own local_ip"),
            "{e}"
        );
        let e = err(&TUNNEL.replace("ip = \"192.0.2.2\"", "ip = \"192.0.2.3\""));
        assert!(e.contains("duplicate peer 192.0.2.3"), "{e}");
        let e = err(&TUNNEL.replace("ip = \"192.0.2.2\"", "ip = \"2001:db8::2\""));
        assert!(e.contains("address family"), "{e}");
        let e = err(&TUNNEL.replace("local_ip = \"192.0.2.1\"", "local_ip = \"0.0.0.0\""));
        assert!(e.contains("not a unicast address"), "{e}");
        let e = err(&TUNNEL.replace("remote_ips", "udp_port = 0\nremote_ips"));
        assert!(e.contains("tunnel: udp_port: 0 is out of range"), "{e}");
        let e = err(&TUNNEL.replace("type = \"vxlan\"", "type = \"geneve\""));
        assert!(
            e.contains("network type \"geneve\" is not supported by this switch"),
            "{e}"
        );
        let e = err(&TUNNEL.replace(
            "segmentation_id = 1001",
            "segmentation_id = 1001\nphysnet = \"x\"",
        ));
        assert!(e.contains("a vxlan network has no physnet"), "{e}");
        let dup = format!(
            "{TUNNEL}\n[[network]]\nname = \"again\"\ntype = \"vxlan\"\nsegmentation_id = 1001\n"
        );
        assert!(
            err(&dup).contains("network \"again\": segmentation_id: VNI 1001 is already used by network \"net-vx\""),
            "{}",
            err(&dup)
        );
        let e = err(&TUNNEL.replace("name = \"tap-vx1\"", "name = \"vxlan-4789\""));
        assert!(e.contains("name of the tunnel endpoint"), "{e}");
        let c = SwitchConfig::from_toml(
            &TUNNEL.replace(
                "fixed_ips = [\"10.10.0.1\"]",
                "fixed_ips = [\"10.10.0.1\"]\nmtu = 1450",
            ),
            "host.toml",
        )
        .unwrap();
        assert_eq!(c.ports[0].mtu, Some(1450));
        let e = err(&TUNNEL.replace(
            "fixed_ips = [\"10.10.0.1\"]",
            "fixed_ips = [\"10.10.0.1\"]\nmtu = 20",
        ));
        assert!(
            e.contains("port \"tap-vx1\": mtu: 20 is out of range"),
            "{e}"
        );
        let e = err(&TUNNEL.replace(
            "fixed_ips = [\"10.10.0.1\"]",
            "fixed_ips = [\"10.10.0.1\"]\nkind = \"system\"\nmtu = 1450",
        ));
        assert!(e.contains("only tap ports take an mtu"), "{e}");
        let e = err("[[tunnel_peer]]\nip = \"192.0.2.2\"\n");
        assert!(e.contains("need a [tunnel] section"), "{e}");
    }

    #[test]
    fn load_reports_missing_file() {
        let e = SwitchConfig::load(Path::new("/nonexistent/weft.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/weft.toml: cannot read config"),
            "{e}"
        );
    }
}
