//! Validation: raw structs -> [`SwitchConfig`]. Ranges, references between sections (a
//! network's physnet, a port's network, vxlan networks and `[tunnel]`) and duplicates (names,
//! interfaces, segments, VNIs, peers). Sections are checked in file order, `[switch]`,
//! `[tunnel]`, `[[physnet]]`, `[[network]]`, `[[port]]`, `[[subnet]]`, and the first error is reported with
//! the line of the offending value.

mod network;
mod port;
mod security_group;
mod subnet;

use super::error::{ConfigError, Ctx};
use super::raw::{RawFile, RawPhysnet, RawSwitch, RawTunnel, RawTunnelPeer};
use super::{
    IoBackend, PhysnetConfig, SwitchConfig, SwitchSettings, TunnelConfig, MAX_BUSY_POLL_US,
    MAX_IFNAME_LEN,
};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use toml::Spanned;

/// Names already taken by earlier sections, for references and duplicate checks.
#[derive(Default)]
struct Names {
    physnets: HashSet<String>,
    /// Uplink interface -> the physnet object using it.
    interfaces: HashMap<String, String>,
    networks: HashSet<String>,
}

/// Checks every section of `raw` and builds the config.
pub(super) fn validate(cx: &Ctx<'_>, raw: RawFile) -> Result<SwitchConfig, ConfigError> {
    let switch = match raw.switch {
        Some(s) => switch_settings(cx, s)?,
        None => SwitchSettings::default(),
    };
    let tunnel = tunnel(cx, raw.tunnel, &raw.tunnel_peer)?;
    let mut names = Names::default();
    let physnets = physnets(cx, raw.physnet, &mut names)?;
    let networks = network::networks(cx, raw.network, tunnel.is_some(), &mut names)?;
    let security_groups = security_group::groups(cx, &raw.security_group)?;
    let ports = port::ports(cx, raw.port, tunnel.as_ref(), &names, &security_groups)?;
    let subnets = subnet::subnets(cx, raw.subnet, &names)?;
    Ok(SwitchConfig {
        switch,
        physnets,
        networks,
        ports,
        tunnel,
        subnets,
        security_groups,
    })
}

/// An integer setting within `range`, or an error naming `path`.
fn in_range(
    cx: &Ctx<'_>,
    v: &Spanned<i64>,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    let n = *v.get_ref();
    if !range.contains(&n) {
        return Err(cx.err(
            Some(v.span()),
            path.into(),
            format!("{n} is out of range {}..={}", range.start(), range.end()),
        ));
    }
    Ok(n)
}

/// `[switch]`
fn switch_settings(cx: &Ctx<'_>, s: RawSwitch) -> Result<SwitchSettings, ConfigError> {
    let mut switch = SwitchSettings::default();
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
        switch.mac_aging_secs = in_range(cx, &a, "switch: mac_aging_secs", 1..=1_000_000)? as u64;
    }
    if let Some(w) = s.workers {
        switch.workers = Some(in_range(cx, &w, "switch: workers", 1..=256)? as usize);
    }
    if let Some(n) = s.worker_nice {
        switch.worker_nice = in_range(cx, &n, "switch: worker_nice", -20..=19)? as i32;
    }
    if let Some(b) = s.busy_poll_us {
        let max = MAX_BUSY_POLL_US as i64;
        switch.busy_poll_us = in_range(cx, &b, "switch: busy_poll_us", 0..=max)? as u64;
    }
    if let Some(y) = &s.busy_poll_yield {
        switch.busy_poll_yield = *y.get_ref();
    }
    if let Some(io) = &s.io {
        switch.io = match io.get_ref().as_str() {
            "epoll" => IoBackend::Epoll,
            "uring" => IoBackend::Uring,
            other => {
                return Err(cx.err(
                    Some(io.span()),
                    "switch: io".into(),
                    format!("{other:?} is not one of \"epoll\", \"uring\""),
                ))
            }
        };
    }
    if let Some(c) = s.conntrack_size {
        switch.conntrack_size =
            in_range(cx, &c, "switch: conntrack_size", 16..=(1 << 24))? as usize;
    }
    if let Some(d) = s.vhost_dir {
        if !std::path::Path::new(d.get_ref()).is_absolute() {
            return Err(cx.err(
                Some(d.span()),
                "switch: vhost_dir".into(),
                format!("{:?} is not an absolute path", d.get_ref()),
            ));
        }
        switch.vhost_dir = PathBuf::from(d.get_ref());
    }
    if let Some(m) = s.mac_table_size {
        switch.mac_table_size =
            in_range(cx, &m, "switch: mac_table_size", 16..=(1 << 24))? as usize;
    }
    Ok(switch)
}

/// A tunnel endpoint address: a unicast IP.
fn unicast_ip(cx: &Ctx<'_>, s: &Spanned<String>, path: &str) -> Result<IpAddr, ConfigError> {
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
}

/// `[tunnel]` and `[[tunnel_peer]]` (peers only with a tunnel).
fn tunnel(
    cx: &Ctx<'_>,
    raw: Option<RawTunnel>,
    raw_peers: &[RawTunnelPeer],
) -> Result<Option<TunnelConfig>, ConfigError> {
    let Some(t) = raw else {
        if let Some(p) = raw_peers.first() {
            return Err(cx.err(
                Some(p.ip.span()),
                "[[tunnel_peer]] #1: ip".into(),
                "tunnel peers need a [tunnel] section with local_ip".into(),
            ));
        }
        return Ok(None);
    };
    let local_ip = unicast_ip(cx, &t.local_ip, "tunnel: local_ip")?;
    let udp_port = match &t.udp_port {
        None => crate::tunnel::VXLAN_UDP_PORT,
        Some(p) => in_range(cx, p, "tunnel: udp_port", 1..=65535)? as u16,
    };
    let mut peers = Vec::new();
    let all = t
        .remote_ips
        .iter()
        .map(|s| (s, "tunnel: remote_ips".to_string()))
        .chain(
            raw_peers
                .iter()
                .enumerate()
                .map(|(i, p)| (&p.ip, format!("[[tunnel_peer]] #{}: ip", i + 1))),
        );
    for (s, path) in all {
        let ip = unicast_ip(cx, s, &path)?;
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
    Ok(Some(TunnelConfig {
        local_ip,
        udp_port,
        peers,
    }))
}

/// `[[physnet]]`: unique names, valid and unshared interfaces.
fn physnets(
    cx: &Ctx<'_>,
    raw: Vec<RawPhysnet>,
    names: &mut Names,
) -> Result<Vec<PhysnetConfig>, ConfigError> {
    let mut physnets = Vec::new();
    for p in raw {
        let name = p.name.get_ref().clone();
        let obj = format!("physnet {name:?}");
        if name.is_empty() {
            return Err(cx.err(
                Some(p.name.span()),
                "physnet: name".into(),
                "must not be empty".into(),
            ));
        }
        if !names.physnets.insert(name.clone()) {
            return Err(cx.err(
                Some(p.name.span()),
                format!("{obj}: name"),
                format!("duplicate physnet name {name:?}"),
            ));
        }
        let ifname = p.interface.get_ref().clone();
        check_ifname(&ifname)
            .map_err(|m| cx.err(Some(p.interface.span()), format!("{obj}: interface"), m))?;
        if let Some(other) = names.interfaces.insert(ifname.clone(), obj.clone()) {
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
    Ok(physnets)
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
