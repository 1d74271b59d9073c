//! End to end, as root: `weft serve` on host 1 (a namespace) and `weft agent`
//! on host 2, joined by a veth "physical wire"; the real `openstack` CLI
//! creates a VLAN provider network, a subnet and ports bound to both hosts;
//! namespace "VMs" hang off veths named like Nova's taps (`tap` + 11 chars of
//! the port id). They ping each other with VID 100 on the wire, a port on
//! another network cannot reach them, ports turn ACTIVE, a kill -9'd agent
//! comes back without reconfiguration, and deleting a port stops its traffic.
//! Every namespace and interface name starts with `wnet`; taps live only
//! inside those namespaces.

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PORT: u16 = 18992;
const MGMT1: &str = "10.250.7.1";
const MGMT2: &str = "10.250.7.2";

mod netlab;
use netlab::{must, openrc, os_in, ping, plug_vm, wait_for, Lab};

/// The real CLI, run inside host 1 (where the API listens).
fn os(env: &HashMap<String, String>, args: &[&str]) -> Result<Value, String> {
    os_in("wnet-h1", env, args)
}

fn os_ok(env: &HashMap<String, String>, args: &[&str]) -> Value {
    os(env, args).unwrap_or_else(|e| panic!("{e}"))
}

fn port_status(env: &HashMap<String, String>, id: &str) -> String {
    os(env, &["port", "show", id, "-f", "value", "-c", "status"])
        .map(|v| v.as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn start_agent(lab: &Lab, env: &HashMap<String, String>) -> Child {
    let log = std::fs::File::create(lab.dir.join("agent.log")).unwrap();
    Command::new("ip")
        .args([
            "netns",
            "exec",
            "wnet-h2",
            env!("CARGO_BIN_EXE_weft"),
            "agent",
            "--ctrl",
        ])
        .arg(format!("http://{MGMT1}:{PORT}"))
        .args(["--host", "wnet-host2", "--config"])
        .arg(lab.dir.join("h2.toml"))
        .envs(env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn openstack_cli_to_wire_across_two_hosts() {
    let mut lab = Lab::new(
        "wnet",
        &["wnet-h1", "wnet-h2", "wnet-vm1", "wnet-vm2", "wnet-vm3"],
    );
    let dir = lab.dir.clone();
    // Management link (API + agent sync) and the data "wire" between the hosts.
    must(
        Some("wnet-h1"),
        &[
            "ip", "link", "add", "wnet-m1", "type", "veth", "peer", "name", "wnet-m2", "netns",
            "wnet-h2",
        ],
    );
    must(
        Some("wnet-h1"),
        &[
            "ip",
            "addr",
            "add",
            &format!("{MGMT1}/24"),
            "dev",
            "wnet-m1",
        ],
    );
    must(
        Some("wnet-h2"),
        &[
            "ip",
            "addr",
            "add",
            &format!("{MGMT2}/24"),
            "dev",
            "wnet-m2",
        ],
    );
    must(Some("wnet-h1"), &["ip", "link", "set", "wnet-m1", "up"]);
    must(Some("wnet-h2"), &["ip", "link", "set", "wnet-m2", "up"]);
    must(
        Some("wnet-h1"),
        &[
            "ip", "link", "add", "wnet-w1", "type", "veth", "peer", "name", "wnet-w2", "netns",
            "wnet-h2",
        ],
    );
    must(Some("wnet-h1"), &["ip", "link", "set", "wnet-w1", "up"]);
    must(Some("wnet-h2"), &["ip", "link", "set", "wnet-w2", "up"]);

    std::fs::write(
        dir.join("net.toml"),
        "tenant_network_types = [\"vlan\"]\nnetwork_vlan_ranges = [\"physnet:300:399\"]\n",
    )
    .unwrap();
    for (h, wire) in [("h1", "wnet-w1"), ("h2", "wnet-w2")] {
        let cfg = format!(
            "[switch]\ncontrol_socket = \"{}\"\n\n[[physnet]]\nname = \"physnet\"\ninterface = \"{wire}\"\n",
            dir.join(format!("{h}.sock")).display()
        );
        std::fs::write(dir.join(format!("{h}.toml")), cfg).unwrap();
    }
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let serve = Command::new("ip")
        .args([
            "netns",
            "exec",
            "wnet-h1",
            env!("CARGO_BIN_EXE_weft"),
            "serve",
            "--state-dir",
        ])
        .arg(&state)
        .args([
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--public-url",
            &format!("http://{MGMT1}:{PORT}"),
        ])
        .arg("--network-config")
        .arg(dir.join("net.toml"))
        .arg("--switch-config")
        .arg(dir.join("h1.toml"))
        .args(["--host", "wnet-host1"])
        .env("WEFT_ADMIN_PASSWORD", "wnet-secret")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.children.push(serve);
    wait_for("admin-openrc", 60, || state.join("admin-openrc").exists());
    let env = openrc(&state.join("admin-openrc"));
    wait_for("the API", 60, || {
        os(&env, &["token", "issue", "-f", "json"]).is_ok()
    });
    let agent = start_agent(&lab, &env);
    lab.children.push(agent);

    // The catalog lists networking; the CLI drives it.
    let cat = os_ok(&env, &["catalog", "list", "-f", "json"]);
    assert!(
        cat.to_string().contains("\"network\""),
        "no network service in the catalog: {cat}"
    );
    let n1 = os_ok(
        &env,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "physnet",
            "--provider-segment",
            "100",
            "wnet-n1",
            "-f",
            "json",
        ],
    );
    assert_eq!(n1["provider:segmentation_id"], 100);
    os_ok(
        &env,
        &[
            "subnet",
            "create",
            "--network",
            "wnet-n1",
            "--subnet-range",
            "10.61.0.0/24",
            "wnet-s1",
            "-f",
            "json",
        ],
    );
    os_ok(
        &env,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "physnet",
            "--provider-segment",
            "200",
            "wnet-n2",
            "-f",
            "json",
        ],
    );
    os_ok(
        &env,
        &[
            "subnet",
            "create",
            "--network",
            "wnet-n2",
            "--subnet-range",
            "10.61.0.0/24",
            "wnet-s2",
            "-f",
            "json",
        ],
    );
    let p1 = os_ok(
        &env,
        &[
            "port",
            "create",
            "--network",
            "wnet-n1",
            "--host",
            "wnet-host1",
            "--fixed-ip",
            "subnet=wnet-s1,ip-address=10.61.0.11",
            "wnet-p1",
            "-f",
            "json",
        ],
    );
    let p2 = os_ok(
        &env,
        &[
            "port",
            "create",
            "--network",
            "wnet-n1",
            "--host",
            "wnet-host2",
            "--fixed-ip",
            "subnet=wnet-s1,ip-address=10.61.0.12",
            "wnet-p2",
            "-f",
            "json",
        ],
    );
    let p3 = os_ok(
        &env,
        &[
            "port",
            "create",
            "--network",
            "wnet-n2",
            "--host",
            "wnet-host2",
            "--fixed-ip",
            "subnet=wnet-s2,ip-address=10.61.0.13",
            "wnet-p3",
            "-f",
            "json",
        ],
    );
    let (id1, id2, id3) = (
        p1["id"].as_str().unwrap(),
        p2["id"].as_str().unwrap(),
        p3["id"].as_str().unwrap(),
    );
    assert_eq!(p1["status"], "DOWN", "DOWN until the agent wires it");
    assert_eq!(p1["binding_vif_type"], "tap");

    plug_vm("wnet-h1", "wnet-vm1", "wnet-e1", &p1);
    plug_vm("wnet-h2", "wnet-vm2", "wnet-e2", &p2);
    plug_vm("wnet-h2", "wnet-vm3", "wnet-e3", &p3);
    for id in [id1, id2, id3] {
        wait_for(&format!("port {id} ACTIVE"), 60, || {
            port_status(&env, id) == "ACTIVE"
        });
    }

    // Cross-host ping, with VID 100 on the wire.
    let cap_path = dir.join("wire.txt");
    let cap = Command::new("ip")
        .args([
            "netns", "exec", "wnet-h2", "tcpdump", "-e", "-n", "-l", "-i", "wnet-w2",
        ])
        .stdout(std::fs::File::create(&cap_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (scripts/install-deps.sh installs it)");
    lab.children.push(cap);
    std::thread::sleep(Duration::from_secs(1));
    wait_for("vm1 -> vm2 ping across hosts", 30, || {
        ping("wnet-vm1", "10.61.0.12")
    });
    assert!(ping("wnet-vm2", "10.61.0.11"), "vm2 cannot ping vm1");
    std::thread::sleep(Duration::from_millis(500));
    let wire = std::fs::read_to_string(&cap_path).unwrap();
    assert!(
        wire.contains("vlan 100") && wire.contains("10.61.0.11"),
        "no VID 100 ICMP on the wire:\n{wire}"
    );
    // Network 2 (VLAN 200 on the same physnet) may be on the wire, but only
    // in its own VID: its frames (e.g. vm3's IPv6 router solicitations) are
    // tagged 200, nothing of it appears in VID 100, and no other VID (a
    // host-local VLAN) shows at all.
    let mac3 = p3["mac_address"].as_str().unwrap();
    for line in wire.lines().filter(|l| l.contains("vlan ")) {
        let vid = line
            .split("vlan ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or("");
        assert!(
            vid == "100" || vid == "200",
            "unexpected VID {vid} on the wire: {line}"
        );
        if line.contains(mac3) || line.contains("10.61.0.13") {
            assert_eq!(vid, "200", "network 2 leaked into VID 100: {line}");
        }
    }

    // Another network (VLAN 200, same addresses) cannot reach them.
    assert!(
        !ping("wnet-vm3", "10.61.0.11"),
        "vm3 on another network reached vm1"
    );
    assert!(
        !ping("wnet-vm3", "10.61.0.12"),
        "vm3 on another network reached vm2"
    );

    // kill -9 the agent; restart it; traffic resumes without reconfiguration.
    let mut old = lab.children.remove(1);
    old.kill().unwrap();
    old.wait().unwrap();
    let agent = start_agent(&lab, &env);
    lab.children.insert(1, agent);
    wait_for("ping after agent restart", 60, || {
        ping("wnet-vm1", "10.61.0.12")
    });
    assert_eq!(port_status(&env, id2), "ACTIVE");

    // Deleting the port unplugs it: traffic stops.
    os_ok(&env, &["port", "delete", id2]);
    wait_for("traffic to stop after port delete", 30, || {
        !ping("wnet-vm1", "10.61.0.12")
    });
    let ports = os_ok(&env, &["port", "list", "-f", "json"]);
    assert_eq!(ports.as_array().map(|a| a.len()), Some(2), "{ports}");
}
