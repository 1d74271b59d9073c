//! Two hosts (namespaces each running `weft switch`) joined by a veth "wire"
//! attached as each host's physnet uplink through AF_PACKET. VMs on the VLAN
//! network reach each other across hosts with VID 100 on the wire; flat
//! network traffic is untagged; the hosts' local VLAN ids never show.
//! Needs root.

mod switch_util;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use switch_util::*;

/// Host config: `order` decides local VLAN allocation, so the two hosts use
/// different local VLANs for the same network.
fn host_config(wire: &str, vlan_port: &str, flat_port: &str, idx: u8, vlan_first: bool) -> String {
    let vlan_net = r#"
[[network]]
name = "net-vlan100"
type = "vlan"
physnet = "physnet"
segmentation_id = 100
"#;
    let flat_net = r#"
[[network]]
name = "net-flat"
type = "flat"
physnet = "physnet"
"#;
    let nets = if vlan_first {
        format!("{vlan_net}{flat_net}")
    } else {
        format!("{flat_net}{vlan_net}")
    };
    format!(
        r#"
[[physnet]]
name = "physnet"
interface = "{wire}"

[[network]]
name = "net-unused"
type = "local"
{nets}
[[port]]
name = "{vlan_port}"
kind = "tap"
network = "net-vlan100"
mac = "fa:16:3e:72:00:0{idx}"
fixed_ips = ["10.72.0.{idx}"]

[[port]]
name = "{flat_port}"
kind = "tap"
network = "net-flat"
mac = "fa:16:3e:73:00:0{idx}"
fixed_ips = ["10.73.0.{idx}"]
"#
    )
}

struct Capture {
    child: std::process::Child,
}

impl Capture {
    /// tcpdump -e on `ifname` in `ns`, returning once it is listening.
    fn start(ns: &Netns, ifname: &str) -> Capture {
        let mut child = ns
            .command("tcpdump")
            .args(["-e", "-n", "-l", "-i", ifname])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/install-deps.sh installs it)");
        let err = child.stderr.take().expect("stderr");
        let mut r = BufReader::new(err);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.contains("listening on") {
                break;
            }
            line.clear();
        }
        Capture { child }
    }

    fn finish(mut self) -> Vec<String> {
        let _ = run("kill", &["-INT", &self.child.id().to_string()]);
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        let _ = self.child.wait();
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn vlan_and_flat_networks_cross_hosts_with_global_ids_on_the_wire() {
    let (ha, hb) = (Netns::new("h"), Netns::new("h"));
    let (wa, wb) = (uniq("w"), uniq("w"));
    sh(
        "ip",
        &["link", "add", &wa, "type", "veth", "peer", "name", &wb],
    );
    let _guard = RootLink { name: wa.clone() };
    sh("ip", &["link", "set", &wa, "netns", &ha.name]);
    sh("ip", &["link", "set", &wb, "netns", &hb.name]);

    let (a1, a2, b1, b2) = (uniq("a"), uniq("a"), uniq("b"), uniq("b"));
    let swa = SwitchProc::start(Some(&ha), "hosta", &host_config(&wa, &a1, &a2, 1, true));
    let swb = SwitchProc::start(Some(&hb), "hostb", &host_config(&wb, &b1, &b2, 2, false));
    let (va1, va2, vb1, vb2) = (
        Netns::new("v"),
        Netns::new("v"),
        Netns::new("v"),
        Netns::new("v"),
    );
    plug(Some(&ha), &a1, &va1, "fa:16:3e:72:00:01", "10.72.0.1/24");
    plug(Some(&ha), &a2, &va2, "fa:16:3e:73:00:01", "10.73.0.1/24");
    plug(Some(&hb), &b1, &vb1, "fa:16:3e:72:00:02", "10.72.0.2/24");
    plug(Some(&hb), &b2, &vb2, "fa:16:3e:73:00:02", "10.73.0.2/24");

    // Local VLANs differ between the hosts for the same network.
    let lv = |sw: &SwitchProc, port: &str| {
        let v = sw.ctl_json(&["ports"]);
        v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port)
            .unwrap()["local_vlan"]
            .as_u64()
            .unwrap()
    };
    let local_ids = [lv(&swa, &a1), lv(&swa, &a2), lv(&swb, &b1), lv(&swb, &b2)];
    assert_ne!(
        local_ids[0], local_ids[2],
        "test wants different local VLANs per host"
    );

    // Warm up ARP and MAC learning, then capture a clean exchange.
    assert!(
        va1.ping_ok("10.72.0.2", 15),
        "VLAN VMs cannot reach each other: A {} B {}",
        swa.log(),
        swb.log()
    );
    assert!(
        va2.ping_ok("10.73.0.2", 15),
        "flat VMs cannot reach each other"
    );
    let cap = Capture::start(&ha, &wa);
    assert!(va1
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.72.0.2"])
        .status
        .success());
    assert!(vb2
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.73.0.1"])
        .status
        .success());
    let lines = cap.finish();
    let text = lines.join("\n");

    let vlan_icmp: Vec<&String> = lines.iter().filter(|l| l.contains("10.72.0.")).collect();
    let flat_icmp: Vec<&String> = lines.iter().filter(|l| l.contains("10.73.0.")).collect();
    assert!(
        !vlan_icmp.is_empty() && !flat_icmp.is_empty(),
        "capture missed traffic:\n{text}"
    );
    for l in &vlan_icmp {
        assert!(
            l.contains("vlan 100,"),
            "VLAN network frame without VID 100: {l}"
        );
    }
    for l in &flat_icmp {
        assert!(
            !l.contains("802.1Q") && !l.contains("vlan "),
            "flat frame tagged: {l}"
        );
    }
    // Both directions of the VLAN exchange carried the global id.
    assert!(
        vlan_icmp
            .iter()
            .any(|l| l.contains("10.72.0.1 > 10.72.0.2")),
        "{text}"
    );
    assert!(vlan_icmp
        .iter()
        .any(|l| l.contains("10.72.0.2 > 10.72.0.1")));
    for id in local_ids {
        if id != 100 {
            assert!(
                !text.contains(&format!("vlan {id},")),
                "local VLAN {id} on the wire:\n{text}"
            );
        }
    }

    // TCP across hosts: GSO frames from the tap leave through AF_PACKET.
    let got = tcp_bytes(&vb1, &va1, "10.72.0.2", 16);
    assert_eq!(got, 16 * 1024 * 1024, "cross-host TCP transfer incomplete");

    // The VLAN VM cannot reach the flat network's VM (different segments).
    assert!(!va1.ping_ok("10.73.0.2", 2));

    let ports = swa.ctl_json(&["ports"]);
    let up = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == wa.as_str())
        .cloned()
        .unwrap();
    assert_eq!(up["role"], "uplink");
    assert_eq!(up["attached"], true);
    assert!(up["tx_frames"].as_u64().unwrap() > 0 && up["rx_frames"].as_u64().unwrap() > 0);
}
