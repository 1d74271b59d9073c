//! End to end, as root: a tenant network (no provider attributes, so ctrl
//! draws a VXLAN VNI from its default range) spans two hosts: `weft serve`
//! on host 1 and `weft agent` on host 2 (namespaces), each with a tunnel
//! endpoint on the underlay link between them (host 1: `[tunnel] local_ip`
//! in its switch config; host 2: `--tunnel-ip`). The agents report
//! their tunnel IPs to ctrl and build tunnels to each other; with the real
//! `openstack` CLI, ports on both hosts ping and move TCP across with the
//! network's VNI on the wire, and a second tenant network (another VNI, the
//! same addresses) cannot reach them. Names start with `wvxn`.

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PORT: u16 = 18993;
const MGMT1: &str = "10.250.8.1";

mod netlab;
use netlab::{must, openrc, os_in, ping, plug_vm, sh, wait_for, Lab};

/// The real CLI, run inside host 1 (where the API listens).
fn os(env: &HashMap<String, String>, args: &[&str]) -> Result<Value, String> {
    os_in("wvxn-h1", env, args)
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
            "wvxn-h2",
            env!("CARGO_BIN_EXE_weft"),
            "agent",
            "--ctrl",
        ])
        .arg(format!("http://{MGMT1}:{PORT}"))
        .args([
            "--host",
            "wvxn-host2",
            "--tunnel-ip",
            "198.51.100.2",
            "--config",
        ])
        .arg(lab.dir.join("h2.toml"))
        .envs(env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn tenant_vxlan_network_spans_two_hosts() {
    let mut lab = Lab::new(
        "wvxn",
        &["wvxn-h1", "wvxn-h2", "wvxn-vm1", "wvxn-vm2", "wvxn-vm3"],
    );
    let dir = lab.dir.clone();
    // Management link (API + agent sync), and the underlay the tunnels run over.
    for (a, b, net) in [
        ("wvxn-m1", "wvxn-m2", "10.250.8"),
        ("wvxn-w1", "wvxn-w2", "198.51.100"),
    ] {
        must(
            Some("wvxn-h1"),
            &[
                "ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", "wvxn-h2",
            ],
        );
        must(
            Some("wvxn-h1"),
            &["ip", "addr", "add", &format!("{net}.1/24"), "dev", a],
        );
        must(
            Some("wvxn-h2"),
            &["ip", "addr", "add", &format!("{net}.2/24"), "dev", b],
        );
        must(Some("wvxn-h1"), &["ip", "link", "set", a, "up"]);
        must(Some("wvxn-h2"), &["ip", "link", "set", b, "up"]);
    }
    // No physnets: each host only has its tunnel endpoint (Neutron's local_ip): host 1 in its
    // switch config, host 2 through `weft agent --tunnel-ip`.
    for (h, tunnel) in [
        ("h1", "\n[tunnel]\nlocal_ip = \"198.51.100.1\"\n"),
        ("h2", ""),
    ] {
        let cfg = format!(
            "[switch]\ncontrol_socket = \"{}\"\n{tunnel}",
            dir.join(format!("{h}.sock")).display()
        );
        std::fs::write(dir.join(format!("{h}.toml")), cfg).unwrap();
    }
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    // Default networking config: tenant networks are vxlan, VNIs 1000-2000.
    let serve = Command::new("ip")
        .args([
            "netns",
            "exec",
            "wvxn-h1",
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
        .arg("--switch-config")
        .arg(dir.join("h1.toml"))
        .args(["--host", "wvxn-host1"])
        .env("WEFT_ADMIN_PASSWORD", "wvxn-secret")
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

    // Tenant networks: no provider attributes, so ctrl draws a VNI.
    let mut vni = Vec::new();
    for (n, s) in [("wvxn-n1", "wvxn-s1"), ("wvxn-n2", "wvxn-s2")] {
        let net = os_ok(&env, &["network", "create", n, "-f", "json"]);
        assert_eq!(net["provider:network_type"], "vxlan", "{net}");
        assert_eq!(net["mtu"], 1450, "vxlan MTU on a 1500-byte underlay: {net}");
        let v = net["provider:segmentation_id"].as_u64().unwrap();
        assert!((1000..=2000).contains(&v), "{net}");
        vni.push(v);
        os_ok(
            &env,
            &[
                "subnet",
                "create",
                "--network",
                n,
                "--subnet-range",
                "10.62.0.0/24",
                s,
                "-f",
                "json",
            ],
        );
    }
    let port = |net: &str, host: &str, subnet: &str, ip: &str, name: &str| {
        os_ok(
            &env,
            &[
                "port",
                "create",
                "--network",
                net,
                "--host",
                host,
                "--fixed-ip",
                &format!("subnet={subnet},ip-address={ip}"),
                name,
                "-f",
                "json",
            ],
        )
    };
    let p1 = port("wvxn-n1", "wvxn-host1", "wvxn-s1", "10.62.0.11", "wvxn-p1");
    let p2 = port("wvxn-n1", "wvxn-host2", "wvxn-s1", "10.62.0.12", "wvxn-p2");
    let p3 = port("wvxn-n2", "wvxn-host2", "wvxn-s2", "10.62.0.13", "wvxn-p3");
    plug_vm("wvxn-h1", "wvxn-vm1", "wvxn-e1", &p1);
    plug_vm("wvxn-h2", "wvxn-vm2", "wvxn-e2", &p2);
    plug_vm("wvxn-h2", "wvxn-vm3", "wvxn-e3", &p3);
    for (vm, e) in [
        ("wvxn-vm1", "wvxn-e1"),
        ("wvxn-vm2", "wvxn-e2"),
        ("wvxn-vm3", "wvxn-e3"),
    ] {
        // The network's MTU, as DHCP option 26 would tell a guest.
        must(Some(vm), &["ip", "link", "set", e, "mtu", "1450"]);
    }
    for p in [&p1, &p2, &p3] {
        let id = p["id"].as_str().unwrap();
        wait_for(&format!("port {id} ACTIVE"), 60, || {
            port_status(&env, id) == "ACTIVE"
        });
    }

    let cap_path = dir.join("wire.txt");
    let cap = Command::new("ip")
        .args([
            "netns", "exec", "wvxn-h2", "tcpdump", "-nn", "-l", "-i", "wvxn-w2", "udp", "port",
            "4789",
        ])
        .stdout(std::fs::File::create(&cap_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (scripts/install-deps.sh installs it)");
    lab.children.push(cap);
    std::thread::sleep(Duration::from_secs(1));
    wait_for("vm1 -> vm2 ping across hosts over VXLAN", 60, || {
        ping("wvxn-vm1", "10.62.0.12")
    });
    assert!(ping("wvxn-vm2", "10.62.0.11"), "vm2 cannot ping vm1");
    std::thread::sleep(Duration::from_millis(500));
    let wire = std::fs::read_to_string(&cap_path).unwrap();
    assert!(
        wire.contains("198.51.100.1.4789 > 198.51.100.2.4789: VXLAN")
            && wire.contains(&format!("vni {}", vni[0]))
            && wire.contains("10.62.0.11 > 10.62.0.12: ICMP echo request"),
        "no VXLAN VNI {} ICMP on the wire:\n{wire}",
        vni[0]
    );

    // The other tenant network (another VNI, same addresses) cannot reach them.
    assert!(
        !ping("wvxn-vm3", "10.62.0.11"),
        "vm3 on another network reached vm1"
    );
    assert!(
        !ping("wvxn-vm3", "10.62.0.12"),
        "vm3 on another network reached vm2"
    );

    // TCP across the tunnel (offloaded frames from the veth are segmented before encap).
    let srv = Command::new("ip")
        .args(["netns", "exec", "wvxn-vm2", "python3", "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',5202))\ns.listen(1)\nc,_=s.accept()\nn=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n n+=len(b)\nprint(n)"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("TCP server", 10, || {
        String::from_utf8_lossy(&sh(Some("wvxn-vm2"), &["ss", "-ltn"]).stdout).contains(":5202")
    });
    let c = sh(
        Some("wvxn-vm1"),
        &["python3", "-c",
          "import socket\ns=socket.create_connection(('10.62.0.12',5202),timeout=30)\nb=b'x'*65536\nfor _ in range(128): s.sendall(b)\ns.close()"],
    );
    assert!(
        c.status.success(),
        "TCP client: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let out = srv.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (8 * 1024 * 1024).to_string()
    );
}
