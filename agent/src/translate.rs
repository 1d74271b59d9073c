//! Desired host state -> switch config, as a pure function.
//!
//! The output is the switch's own TOML format (the one `weft switch --config`
//! reads), so the datapath's parser validates it and the agent depends only
//! on that documented format. The host's `[switch]`, `[[physnet]]` (its
//! bridge_mappings) and `[tunnel]` (its `local_ip`) sections are kept as
//! written; networks, ports and the other hosts' tunnel endpoints
//! (`[[tunnel_peer]]`) come from ctrl.
//!
//! vxlan networks become switch vxlan networks with their VNI when the host
//! has a `[tunnel] local_ip`, else host-local (on one host that is all they
//! need). geneve networks are wired host-local: the datapath has no Geneve
//! endpoint.

use crate::networking::sync::{HostNetwork, HostPort, HostState};
use std::collections::{BTreeMap, BTreeSet};
use toml::{Table, Value};

/// How the host state maps onto this switch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The switch config as TOML text.
    pub config: String,
    /// Port id -> interface name, for ports the switch will carry.
    pub wired: BTreeMap<String, String>,
    /// Ports bound here that cannot be wired (unknown physnet, admin down), with why.
    pub unwired: BTreeMap<String, String>,
}

/// The datapath's type for a network segment, or why it cannot carry it here.
fn datapath_type(
    n: &HostNetwork,
    physnets: &BTreeSet<String>,
    tunnel: bool,
) -> Result<(&'static str, Option<String>, Option<u32>), String> {
    let need_physnet = |p: &Option<String>| match p {
        Some(p) if physnets.contains(p) => Ok(p.clone()),
        Some(p) => Err(format!("physical network {p} is not mapped on this host")),
        None => Err("network has no physical network".to_string()),
    };
    match n.network_type.as_str() {
        "flat" => Ok(("flat", Some(need_physnet(&n.physical_network)?), None)),
        "vlan" => Ok((
            "vlan",
            Some(need_physnet(&n.physical_network)?),
            n.segmentation_id,
        )),
        "vxlan" if tunnel => match n.segmentation_id {
            Some(vni) => Ok(("vxlan", None, Some(vni))),
            None => Err("vxlan network has no segmentation id".to_string()),
        },
        // Without a tunnel endpoint (vxlan) or a datapath for it (geneve), an overlay is
        // wired host-local: ports on this host reach each other and nothing else.
        "local" | "vxlan" | "geneve" => Ok(("local", None, None)),
        other => Err(format!(
            "network type {other} is not supported by this datapath"
        )),
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_port(out: &mut String, p: &HostPort, mtu: Option<u32>) {
    use std::fmt::Write;
    let ips: Vec<String> = p.fixed_ips.iter().map(|s| q(s)).collect();
    let pairs: Vec<String> = p
        .allowed_address_pairs
        .iter()
        .map(|a| {
            if a.mac_address.is_empty() {
                format!("{{ ip_address = {} }}", q(&a.ip_address))
            } else {
                format!(
                    "{{ ip_address = {}, mac = {} }}",
                    q(&a.ip_address),
                    q(&a.mac_address)
                )
            }
        })
        .collect();
    let _ = write!(
        out,
        "\n[[port]]\nname = {}\nkind = {}\nnetwork = {}\nmac = {}\nfixed_ips = [{}]\nport_security = {}\nallowed_address_pairs = [{}]\n",
        q(&p.devname),
        q(&p.kind),
        q(&p.network_id),
        q(&p.mac_address),
        ips.join(", "),
        p.port_security_enabled,
        pairs.join(", ")
    );
    // A tap weft creates gets its network's MTU (1450 on vxlan), as os-vif sets Nova's taps.
    if let Some(m) = mtu.filter(|m| p.kind == "tap" && (68..=65535).contains(m)) {
        let _ = writeln!(out, "mtu = {m}");
    }
}

/// The host's own config: kept verbatim; ctrl's networks and ports are appended.
#[derive(Debug, Clone)]
pub struct HostBase {
    pub text: String,
    /// Names of the `[[physnet]]` sections (the bridge mappings).
    pub physnets: BTreeSet<String>,
    /// `[tunnel] local_ip`: this host's VXLAN endpoint, reported to ctrl.
    pub tunnel_ip: Option<String>,
    /// Peers the host config lists itself (`remote_ips`, `[[tunnel_peer]]`).
    pub static_peers: BTreeSet<String>,
}

impl HostBase {
    pub fn parse(text: &str) -> Result<HostBase, String> {
        let t: Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for key in ["network", "port"] {
            if t.get(key).is_some_and(|v| {
                !v.is_array()
                    || v.as_array()
                        .is_some_and(|a| a.iter().any(|x| !x.is_table()))
            }) {
                return Err(format!("{key} must be written as [[{key}]] sections"));
            }
        }
        let physnets = t
            .get("physnet")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let tunnel = t.get("tunnel").and_then(Value::as_table);
        let tunnel_ip = match tunnel.map(|t| t.get("local_ip")) {
            None => None,
            Some(Some(Value::String(s))) => Some(
                s.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("tunnel: local_ip: invalid IP address {s:?}"))?
                    .to_string(),
            ),
            Some(_) => return Err("tunnel: local_ip must be an IP address string".into()),
        };
        let canon = |v: &Value| {
            v.as_str()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.to_string())
        };
        let mut static_peers: BTreeSet<String> = tunnel
            .and_then(|t| t.get("remote_ips"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(canon).collect())
            .unwrap_or_default();
        if let Some(a) = t.get("tunnel_peer").and_then(Value::as_array) {
            static_peers.extend(a.iter().filter_map(|p| p.get("ip").and_then(canon)));
        }
        Ok(HostBase {
            text: text.to_string(),
            physnets,
            tunnel_ip,
            static_peers,
        })
    }
}

/// Builds the switch config for `st` on a host whose own config is `base`.
/// Text is written directly (not through a TOML document model): a resync
/// of 10,000 ports must take milliseconds, not seconds.
pub fn plan(base: &HostBase, st: &HostState) -> Plan {
    use std::fmt::Write;
    let mut plan = Plan::default();
    let mut usable = BTreeMap::new();
    for n in &st.networks {
        match datapath_type(n, &base.physnets, base.tunnel_ip.is_some()) {
            Ok(t) => {
                usable.insert(n.id.as_str(), t);
            }
            Err(why) => {
                plan.unwired.insert(n.id.clone(), why);
            }
        }
    }
    let mut out = String::with_capacity(base.text.len() + 256 * st.ports.len());
    out.push_str(&base.text);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let mut used_networks = BTreeSet::new();
    let mut ports_text = String::new();
    let mut unwired = BTreeMap::new();
    for p in &st.ports {
        if let Some(why) = plan.unwired.get(&p.network_id) {
            unwired.insert(p.id.clone(), why.clone());
            continue;
        }
        if !usable.contains_key(p.network_id.as_str()) {
            unwired.insert(p.id.clone(), "network missing from host state".into());
            continue;
        }
        if !p.admin_state_up {
            unwired.insert(p.id.clone(), "administratively down".into());
            continue;
        }
        used_networks.insert(p.network_id.as_str());
        plan.wired.insert(p.id.clone(), p.devname.clone());
        let mtu = st
            .networks
            .iter()
            .find(|n| n.id == p.network_id)
            .map(|n| n.mtu);
        write_port(&mut ports_text, p, mtu);
    }
    plan.unwired = unwired;
    for (id, (ty, physnet, seg)) in &usable {
        if !used_networks.contains(id) {
            continue;
        }
        let _ = write!(out, "\n[[network]]\nname = {}\ntype = {}\n", q(id), q(ty));
        if let Some(p) = physnet {
            let _ = writeln!(out, "physnet = {}", q(p));
        }
        if let Some(s) = seg {
            let _ = writeln!(out, "segmentation_id = {s}");
        }
    }
    out.push_str(&ports_text);
    if let Some(own) = &base.tunnel_ip {
        for peer in &st.tunnel_peers {
            let canon = peer
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_default();
            // Skip our own address, peers the host lists itself, and other families.
            let family_ok = own.contains(':') == canon.contains(':');
            if canon.is_empty() || &canon == own || base.static_peers.contains(&canon) || !family_ok
            {
                continue;
            }
            let _ = write!(out, "\n[[tunnel_peer]]\nip = {}\n", q(&canon));
        }
    }
    plan.config = out;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networking::model::AddressPair;

    fn base() -> HostBase {
        HostBase::parse(
            r#"
[switch]
control_socket = "/run/weft/h1.sock"
[[physnet]]
name = "physnet"
interface = "eth1"
"#,
        )
        .unwrap()
    }

    #[test]
    fn strings_are_escaped_and_inline_arrays_refused() {
        assert_eq!(q("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        assert!(HostBase::parse("network = [\"x\"]").is_err());
    }

    fn net(id: &str, ty: &str, physnet: Option<&str>, seg: Option<u32>) -> HostNetwork {
        HostNetwork {
            id: id.into(),
            network_type: ty.into(),
            physical_network: physnet.map(String::from),
            segmentation_id: seg,
            mtu: 1500,
            admin_state_up: true,
        }
    }

    fn port(id: &str, net: &str) -> HostPort {
        HostPort {
            id: id.into(),
            network_id: net.into(),
            mac_address: "fa:16:3e:00:00:01".into(),
            fixed_ips: vec!["10.0.0.5".into()],
            admin_state_up: true,
            port_security_enabled: true,
            allowed_address_pairs: vec![AddressPair {
                ip_address: "10.0.9.0/24".into(),
                mac_address: String::new(),
            }],
            security_groups: vec![],
            kind: "system".into(),
            devname: format!("tap{}", &id[..11]),
            status: "DOWN".into(),
        }
    }

    #[test]
    fn vlan_port_becomes_system_port_on_mapped_physnet() {
        let st = HostState {
            host: "h1".into(),
            revision: 7,
            networks: vec![
                net("n1", "vlan", Some("physnet"), Some(100)),
                net("n2", "vlan", Some("elsewhere"), Some(101)),
                net("n3", "vxlan", None, Some(1001)),
            ],
            ports: vec![
                port("aaaaaaaa-1111-2222", "n1"),
                port("bbbbbbbb-1111-2222", "n2"),
                port("cccccccc-1111-2222", "n3"),
            ],
            security_groups: vec![],
            tunnel_peers: vec![],
        };
        let p = plan(&base(), &st);
        let cfg: Table = toml::from_str(&p.config).unwrap();
        // The switch's own parser accepts it (names, MACs, IPs, pairs).
        weft_datapath::config::SwitchConfig::from_toml(&p.config, "plan").unwrap();
        assert_eq!(
            cfg["switch"]["control_socket"].as_str(),
            Some("/run/weft/h1.sock")
        );
        let nets = cfg["network"].as_array().unwrap();
        assert_eq!(nets.len(), 2);
        let n1 = nets
            .iter()
            .find(|n| n["name"].as_str() == Some("n1"))
            .unwrap();
        assert_eq!(n1["type"].as_str(), Some("vlan"));
        assert_eq!(n1["segmentation_id"].as_integer(), Some(100));
        let n3 = nets
            .iter()
            .find(|n| n["name"].as_str() == Some("n3"))
            .unwrap();
        assert_eq!(n3["type"].as_str(), Some("local"));
        let ports = cfg["port"].as_array().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0]["name"].as_str(), Some("tapaaaaaaaa-11"));
        assert_eq!(ports[0]["kind"].as_str(), Some("system"));
        assert_eq!(
            ports[0]["allowed_address_pairs"][0]["ip_address"].as_str(),
            Some("10.0.9.0/24")
        );
        assert!(p.unwired["bbbbbbbb-1111-2222"].contains("not mapped"));
        assert_eq!(p.wired.len(), 2);
    }

    #[test]
    fn vxlan_networks_tunnel_when_the_host_has_a_local_ip() {
        let tbase = HostBase::parse(
            r#"
[switch]
control_socket = "/run/weft/h1.sock"
[tunnel]
local_ip = "192.0.2.1"
remote_ips = ["192.0.2.7"]
"#,
        )
        .unwrap();
        assert_eq!(tbase.tunnel_ip.as_deref(), Some("192.0.2.1"));
        let st = HostState {
            host: "h1".into(),
            revision: 3,
            networks: vec![
                net("n3", "vxlan", None, Some(1001)),
                net("n4", "geneve", None, Some(7)),
            ],
            ports: vec![
                port("cccccccc-1111-2222", "n3"),
                port("eeeeeeee-1111-2222", "n4"),
            ],
            security_groups: vec![],
            tunnel_peers: vec![
                "192.0.2.2".into(),
                "192.0.2.1".into(),   // our own: skipped
                "192.0.2.7".into(),   // listed by the host config: skipped
                "2001:db8::5".into(), // other family: skipped
            ],
        };
        let p = plan(&tbase, &st);
        let c = weft_datapath::config::SwitchConfig::from_toml(&p.config, "plan").unwrap();
        let n3 = c.network("n3").unwrap();
        assert_eq!(
            n3.network_type,
            weft_datapath::NetworkType::Vxlan {
                segmentation_id: 1001
            }
        );
        assert_eq!(
            c.network("n4").unwrap().network_type,
            weft_datapath::NetworkType::Local
        );
        let t = c.tunnel.unwrap();
        let peers: Vec<String> = t.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["192.0.2.7", "192.0.2.2"]);
        assert_eq!(p.wired.len(), 2);
        // System ports keep their netdev's MTU; a tap weft creates gets the network's.
        assert_eq!(c.ports[0].mtu, None);
        let mut tap_state = st.clone();
        tap_state.ports[0].kind = "tap".into();
        tap_state.networks[0].mtu = 1450;
        let c = weft_datapath::config::SwitchConfig::from_toml(
            &plan(&tbase, &tap_state).config,
            "plan",
        )
        .unwrap();
        assert_eq!(c.ports[0].mtu, Some(1450));

        // Without a local_ip the same state is wired host-local and no peers are written.
        let p = plan(&base(), &st);
        let c = weft_datapath::config::SwitchConfig::from_toml(&p.config, "plan").unwrap();
        assert_eq!(
            c.network("n3").unwrap().network_type,
            weft_datapath::NetworkType::Local
        );
        assert!(c.tunnel.is_none());
        assert!(HostBase::parse("[tunnel]\nlocal_ip = \"nope\"\n").is_err());
    }

    #[test]
    fn admin_down_ports_are_unplugged_and_output_is_deterministic() {
        let mut down = port("dddddddd-1111-2222", "n1");
        down.admin_state_up = false;
        let st = HostState {
            host: "h1".into(),
            revision: 1,
            networks: vec![net("n1", "flat", Some("physnet"), None)],
            ports: vec![down],
            security_groups: vec![],
            tunnel_peers: vec![],
        };
        let a = plan(&base(), &st);
        assert!(a.wired.is_empty());
        assert_eq!(a.unwired.len(), 1);
        assert_eq!(a, plan(&base(), &st));
    }
}
