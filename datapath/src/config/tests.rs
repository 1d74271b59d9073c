//! Config parsing and validation, through `SwitchConfig::from_toml`.

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
    assert!(err(&badphys).contains("network \"net-vlan100\": physnet: unknown physnet \"other\""));
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
        e.contains("network \"net-flat\": segmentation_id: a flat network has no segmentation_id"),
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
    let dupflat =
        format!("{GOOD}\n[[network]]\nname = \"again\"\ntype = \"flat\"\nphysnet = \"physnet\"\n");
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
    assert!(
        e.contains("kind: unknown port kind \"vhost\" (expected tap, system or vhostuser)"),
        "{e}"
    );
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

#[test]
fn busy_poll_us_is_a_switch_setting() {
    let c = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
    assert_eq!(c.switch.busy_poll_us, 0);
    let c = SwitchConfig::from_toml(
        &GOOD.replace("mac_aging_secs = 60", "busy_poll_us = 50"),
        "host.toml",
    )
    .unwrap();
    assert_eq!(c.switch.busy_poll_us, 50);
    let e = err(&GOOD.replace("mac_aging_secs = 60", "busy_poll_us = -1"));
    assert_eq!(
        e,
        "host.toml line 3: switch: busy_poll_us: -1 is out of range 0..=100000"
    );
    let e = err(&GOOD.replace("mac_aging_secs = 60", "busy_poll_us = 100001"));
    assert!(
        e.ends_with("busy_poll_us: 100001 is out of range 0..=100000"),
        "{e}"
    );
}

#[test]
fn a_network_mtu_is_told_to_guests_unless_the_tap_has_its_own() {
    let text = GOOD.replace(
        "name = \"net-local\"\ntype = \"local\"\n",
        "name = \"net-local\"\ntype = \"local\"\nmtu = 1450\n",
    );
    let c = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    assert_eq!(c.network("net-local").unwrap().mtu, Some(1450));
    assert_eq!(c.network("net-flat").unwrap().mtu, None);
    let vm2 = c.ports.iter().find(|p| p.name == "vm2").unwrap();
    assert_eq!(vm2.mtu, None, "a system port keeps its netdev's MTU");
    assert_eq!(c.guest_mtu(vm2), Some(1450));
    let mut tap = c.ports[0].clone();
    tap.network = "net-local".into();
    tap.mtu = Some(1400);
    assert_eq!(c.guest_mtu(&tap), Some(1400), "the tap's own wins");
    // Re-validation of a typed config (what the agent hands over) keeps it.
    let again = c.validated("again").unwrap();
    assert_eq!(again.network("net-local").unwrap().mtu, Some(1450));
    let e = err(&text.replace("mtu = 1450", "mtu = 67"));
    assert!(
        e.ends_with("network \"net-local\": mtu: 67 is out of range 68..=65535"),
        "{e}"
    );
}

#[test]
fn busy_poll_yield_defaults_on_and_takes_a_bool() {
    let c = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
    assert!(c.switch.busy_poll_yield);
    let c = SwitchConfig::from_toml(
        &GOOD.replace("mac_aging_secs = 60", "busy_poll_yield = false"),
        "host.toml",
    )
    .unwrap();
    assert!(!c.switch.busy_poll_yield);
    let e = err(&GOOD.replace("mac_aging_secs = 60", "busy_poll_yield = 1"));
    assert_eq!(
        e,
        "host.toml line 3: [switch]: invalid type: integer `1`, expected a boolean"
    );
}

#[test]
fn io_defaults_to_uring_and_takes_epoll() {
    let c = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
    assert_eq!(c.switch.io, crate::IoBackend::Uring);
    let c = SwitchConfig::from_toml(
        &GOOD.replace("mac_aging_secs = 60", "io = \"epoll\""),
        "host.toml",
    )
    .unwrap();
    assert_eq!(c.switch.io, crate::IoBackend::Epoll);
    // The typed config round-trips through the validator with it.
    assert_eq!(c.validated("x").unwrap().switch.io, crate::IoBackend::Epoll);
    let e = err(&GOOD.replace("mac_aging_secs = 60", "io = \"io_uring\""));
    assert_eq!(
        e,
        "host.toml line 3: switch: io: \"io_uring\" is not one of \"epoll\", \"uring\""
    );
}

#[test]
fn vhostuser_ports_have_their_sockets_in_vhost_dir() {
    let c = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
    assert_eq!(c.switch.vhost_dir, PathBuf::from(DEFAULT_VHOST_DIR));
    let text = GOOD
        .replace("mac_aging_secs = 60", "vhost_dir = \"/var/run/weft-vhost\"")
        .replace("kind = \"system\"", "kind = \"vhostuser\"");
    let c = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    assert_eq!(c.switch.vhost_dir, PathBuf::from("/var/run/weft-vhost"));
    assert_eq!(c.ports[1].kind, PortKind::VhostUser);
    assert_eq!(c.ports[1].kind.to_string(), "vhostuser");
    // A typed config round-trips through the same validator.
    assert_eq!(c.validated("plan").unwrap(), c);
    let e = err(&GOOD.replace("mac_aging_secs = 60", "vhost_dir = \"run/vhost\""));
    assert_eq!(
        e,
        "host.toml line 3: switch: vhost_dir: \"run/vhost\" is not an absolute path"
    );
    // The socket is the guest's NIC: no MTU to set on it.
    let e = err(&text.replace(
        "port_security = false\n",
        "port_security = false\nmtu = 1450\n",
    ));
    assert!(e.contains("only tap ports take an mtu"), "{e}");
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
        err(&dup).contains(
            "network \"again\": segmentation_id: VNI 1001 is already used by network \"net-vx\""
        ),
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
    let c = SwitchConfig::from_toml(
        &TUNNEL.replace(
            "fixed_ips = [\"10.10.0.1\"]",
            "fixed_ips = [\"10.10.0.1\"]\ncapture = \"/var/tmp/vx1.pcap\"",
        ),
        "host.toml",
    )
    .unwrap();
    assert_eq!(
        c.ports[0].capture.as_deref(),
        Some(std::path::Path::new("/var/tmp/vx1.pcap"))
    );
    // A config built in code checks it the same way.
    assert_eq!(
        c.validated("code").unwrap().ports[0].capture,
        c.ports[0].capture
    );
    let e = err(&TUNNEL.replace(
        "fixed_ips = [\"10.10.0.1\"]",
        "fixed_ips = [\"10.10.0.1\"]\ncapture = \"vx1.pcap\"",
    ));
    assert!(
        e.contains("port \"tap-vx1\": capture: \"vx1.pcap\" is not an absolute path"),
        "{e}"
    );
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

/// A config built in code passes the same rules as the TOML text, with the same messages
/// (no line: there is no text).
#[test]
fn typed_configs_are_validated_like_text() {
    let good = SwitchConfig::from_toml(GOOD, "host.toml").unwrap();
    assert_eq!(good.validated("plan").unwrap(), good);
    let tunnel = SwitchConfig::from_toml(
        "[tunnel]\nlocal_ip = \"192.0.2.1\"\nremote_ips = [\"192.0.2.7\"]\n\
         [[tunnel_peer]]\nip = \"192.0.2.2\"\n\
         [[network]]\nname = \"vx\"\ntype = \"vxlan\"\nsegmentation_id = 1001\n",
        "host.toml",
    )
    .unwrap();
    assert_eq!(tunnel.validated("plan").unwrap(), tunnel);

    let typed_err = |c: &SwitchConfig| c.validated("plan").unwrap_err();
    let mut dup = good.clone();
    dup.ports.push(dup.ports[0].clone());
    let e = typed_err(&dup);
    assert_eq!(e.line, None);
    assert_eq!(
        e.to_string(),
        "plan: port \"tap-vm1\": name: duplicate port name \"tap-vm1\""
    );
    let mut no_mac = good.clone();
    no_mac.ports[0].mac = None;
    no_mac.ports[0].allowed_address_pairs.clear();
    assert_eq!(
        typed_err(&no_mac).to_string(),
        "plan: port \"tap-vm1\": mac: required when port_security = true"
    );
    let mut unknown_net = good.clone();
    unknown_net.ports[1].network = "nope".into();
    assert_eq!(
        typed_err(&unknown_net).to_string(),
        "plan: port \"vm2\": network: unknown network \"nope\""
    );
    let mut no_tunnel = tunnel.clone();
    no_tunnel.tunnel = None;
    assert_eq!(
        typed_err(&no_tunnel).to_string(),
        "plan: network \"vx\": type: a vxlan network needs a [tunnel] section with local_ip"
    );
    let mut vlan0 = good.clone();
    vlan0.networks[0].network_type = NetworkType::Vlan { segmentation_id: 0 };
    assert!(typed_err(&vlan0)
        .to_string()
        .contains("VLAN id 0 is out of range 1..=4094"));
}

const SUBNET: &str = r#"
[[subnet]]
network = "net-vlan100"
cidr = "10.0.0.0/24"
gateway_ip = "10.0.0.1"
dns_nameservers = ["10.0.0.53", "8.8.8.8"]
host_routes = [{ destination = "192.168.0.0/16", nexthop = "10.0.0.254" }]

[[subnet]]
network = "net-vlan100"
cidr = "2001:db8::/64"
enable_dhcp = false
"#;

#[test]
fn subnets_and_dns_names_parse_and_survive_validated() {
    let text = format!("{GOOD}{SUBNET}").replace(
        "port_security = true\n",
        "port_security = true\ndns_name = \"vm-one.example\"\n",
    );
    let c = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    assert_eq!(c.subnets.len(), 2);
    let s = &c.subnets[0];
    assert_eq!(s.network, "net-vlan100");
    assert_eq!(s.cidr.to_string(), "10.0.0.0/24");
    assert_eq!(s.gateway_ip, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(s.dns_nameservers.len(), 2);
    assert_eq!(s.host_routes[0].0.to_string(), "192.168.0.0/16");
    assert!(s.enable_dhcp, "enable_dhcp defaults to true, as in Neutron");
    assert!(!c.subnets[1].enable_dhcp);
    assert_eq!(c.ports[0].dns_name.as_deref(), Some("vm-one.example"));
    // A config built in code keeps them through the same validation.
    assert_eq!(c.validated("plan").unwrap(), c);
    // Without [[subnet]], nothing changes for existing configs.
    assert!(SwitchConfig::from_toml(GOOD, "host.toml")
        .unwrap()
        .subnets
        .is_empty());
}

#[test]
fn bad_subnets_are_refused_naming_the_field() {
    let with = |from: &str, to: &str| err(&format!("{GOOD}{SUBNET}").replacen(from, to, 1));
    let e = with(
        "network = \"net-vlan100\"\ncidr",
        "network = \"nope\"\ncidr",
    );
    assert!(
        e.contains("subnet \"10.0.0.0/24\": network: unknown network \"nope\""),
        "{e}"
    );
    let e = with("cidr = \"10.0.0.0/24\"", "cidr = \"10.0.0.0/33\"");
    assert!(e.contains("cidr: invalid CIDR"), "{e}");
    let e = with("gateway_ip = \"10.0.0.1\"", "gateway_ip = \"10.9.0.1\"");
    assert!(
        e.contains("gateway_ip: 10.9.0.1 is outside 10.0.0.0/24"),
        "{e}"
    );
    let e = with("\"8.8.8.8\"", "\"2001:db8::53\"");
    assert!(
        e.contains("dns_nameservers: 2001:db8::53 is not of the subnet's IP version"),
        "{e}"
    );
    let e = with("\"10.0.0.254\"", "\"x\"");
    assert!(
        e.contains("host_routes: nexthop: invalid IP address \"x\""),
        "{e}"
    );
    let e = with("enable_dhcp = false", "enable_dhcp = false\ncolour = 1");
    assert!(e.contains("colour"), "{e}");
    let e = err(&format!("{GOOD}{SUBNET}{SUBNET}"));
    assert!(e.contains("duplicate subnet 10.0.0.0/24"), "{e}");
    let e = err(&GOOD.replace(
        "port_security = true\n",
        "port_security = true\ndns_name = \"not a name\"\n",
    ));
    assert!(
        e.contains("dns_name: invalid host name \"not a name\""),
        "{e}"
    );
}
