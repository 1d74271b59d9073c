//! End to end, as root: `weft serve` in a namespace wires ports that the real `openstack`
//! CLI creates; namespace "VMs" on those ports run busybox udhcpc and curl, and get their
//! fixed IP, gateway, MTU and routes from the switch's DHCP server, a renewal that carries a
//! changed subnet option, and their own instance's data from the metadata service at
//! 169.254.169.254, answered inside the switch, which follows a change to the port. Namespaces and interfaces are named `dh…`;
//! the API listens on 18201.

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};

mod netlab;
use netlab::{must, openrc, os_in, sh, wait_for, Lab};

const PORT: u16 = 18201;
const HOST_NS: &str = "dh-h1";

fn os(env: &HashMap<String, String>, args: &[&str]) -> Value {
    os_in(HOST_NS, env, args).unwrap_or_else(|e| panic!("{e}"))
}

/// busybox udhcpc in `vm` on `ifname` with a script that applies the lease (address, MTU,
/// option 121 routes) and writes its options to `dir/<vm>.lease`; returns them.
fn udhcpc(dir: &std::path::Path, vm: &str, ifname: &str) -> String {
    let script = dir.join(format!("{vm}.sh"));
    let rec = dir.join(format!("{vm}.lease"));
    let _ = std::fs::remove_file(&rec);
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    for v in ip mask router dns mtu staticroutes hostname lease; do eval "echo $v=\$$v"; done > {r}.tmp
    mv {r}.tmp {r}
    ;;
esac
exit 0
"#,
            r = rec.display()
        ),
    )
    .unwrap();
    must(None, &["chmod", "+x", &script.to_string_lossy()]);
    let out = sh(
        Some(vm),
        &[
            "busybox",
            "udhcpc",
            "-i",
            ifname,
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "mtu",
            "-O",
            "staticroutes",
            "-s",
            &script.to_string_lossy(),
        ],
    );
    std::fs::read_to_string(&rec).unwrap_or_else(|_| {
        panic!(
            "{vm} got no lease: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn value<'a>(lease: &'a str, key: &str) -> &'a str {
    lease
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {lease}"))
        .trim()
}

fn curl(vm: &str, path: &str) -> String {
    let o = sh(
        Some(vm),
        &[
            "curl",
            "-s",
            "-f",
            "-m",
            "5",
            &format!("http://169.254.169.254{path}"),
        ],
    );
    assert!(o.status.success(), "{vm}: curl {path} failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A port bound to this host whose tap the switch creates (`weft_port_kind=tap`), moved
/// into the VM's namespace once it exists; returns the port.
fn vm_port(env: &HashMap<String, String>, vm: &str, net: &str, name: &str, device: &str) -> Value {
    let p = os(
        env,
        &[
            "port",
            "create",
            "--network",
            net,
            "--host",
            "dh-host1",
            "--device",
            device,
            "--binding-profile",
            "weft_port_kind=tap",
            name,
            "-f",
            "json",
        ],
    );
    let id = p["id"].as_str().unwrap();
    let tap = format!("tap{}", &id[..11]);
    wait_for(&format!("tap {tap}"), 60, || {
        sh(Some(HOST_NS), &["ip", "link", "show", &tap])
            .status
            .success()
    });
    must(Some(HOST_NS), &["ip", "link", "set", &tap, "netns", vm]);
    let mac = p["mac_address"].as_str().unwrap();
    must(Some(vm), &["ip", "link", "set", &tap, "address", mac]);
    must(
        Some(vm),
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{tap}.disable_ipv6=1"),
        ],
    );
    must(Some(vm), &["ip", "link", "set", &tap, "up"]);
    p
}

fn tap_of(p: &Value) -> String {
    format!("tap{}", &p["id"].as_str().unwrap()[..11])
}

fn ip_of(p: &Value) -> String {
    p["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn vms_on_ports_weft_serve_wires_get_leases_and_their_own_metadata() {
    assert!(
        std::path::Path::new("/usr/bin/busybox").exists()
            || std::path::Path::new("/bin/busybox").exists(),
        "busybox missing: run scripts/install-deps.sh"
    );
    let mut lab = Lab::new("dh", &[HOST_NS, "dh-vm1", "dh-vm2", "dh-vm3"]);
    let dir = lab.dir.clone();
    // A physnet NIC for the VLAN networks (a veth whose peer nobody reads).
    must(
        Some(HOST_NS),
        &[
            "ip", "link", "add", "dh-w1", "type", "veth", "peer", "name", "dh-w2",
        ],
    );
    must(Some(HOST_NS), &["ip", "link", "set", "dh-w1", "up"]);
    must(Some(HOST_NS), &["ip", "link", "set", "dh-w2", "up"]);
    std::fs::write(
        dir.join("net.toml"),
        "tenant_network_types = [\"vlan\"]\nnetwork_vlan_ranges = [\"physnet:300:399\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("h1.toml"),
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n\n[[physnet]]\nname = \"physnet\"\ninterface = \"dh-w1\"\n",
            dir.join("h1.sock").display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let serve = Command::new("ip")
        .args([
            "netns",
            "exec",
            HOST_NS,
            env!("CARGO_BIN_EXE_weft"),
            "serve",
            "--state-dir",
        ])
        .arg(&state)
        .args([
            "--listen",
            &format!("127.0.0.1:{PORT}"),
            "--public-url",
            &format!("http://127.0.0.1:{PORT}"),
        ])
        .arg("--network-config")
        .arg(dir.join("net.toml"))
        .arg("--switch-config")
        .arg(dir.join("h1.toml"))
        .args(["--host", "dh-host1"])
        .env("WEFT_ADMIN_PASSWORD", "dh-secret")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.children.push(serve);
    wait_for("admin-openrc", 60, || state.join("admin-openrc").exists());
    let env = openrc(&state.join("admin-openrc"));
    wait_for("the API", 60, || {
        os_in(HOST_NS, &env, &["token", "issue", "-f", "json"]).is_ok()
    });

    for (net, mtu, cidr) in [
        ("dh-n1", "1400", "10.93.0.0/24"),
        ("dh-n2", "1500", "10.94.0.0/24"),
    ] {
        os(
            &env,
            &["network", "create", "--mtu", mtu, net, "-f", "json"],
        );
        os(
            &env,
            &[
                "subnet",
                "create",
                "--network",
                net,
                "--subnet-range",
                cidr,
                "--dns-nameserver",
                "10.93.0.53",
                "--host-route",
                "destination=192.168.93.0/24,gateway=10.93.0.254",
                &format!("{net}-s"),
                "-f",
                "json",
            ],
        );
    }
    let p1 = vm_port(
        &env,
        "dh-vm1",
        "dh-n1",
        "web-1",
        "11111111-0000-4000-8000-000000000001",
    );
    let p2 = vm_port(
        &env,
        "dh-vm2",
        "dh-n1",
        "web-2",
        "22222222-0000-4000-8000-000000000002",
    );
    let p3 = vm_port(
        &env,
        "dh-vm3",
        "dh-n2",
        "db-1",
        "33333333-0000-4000-8000-000000000003",
    );

    // DHCP: the port's fixed IP, the subnet's gateway, the network's MTU, DNS, the port's
    // name as host name, the routes (default, host route, on-link metadata).
    let lease = udhcpc(&dir, "dh-vm1", &tap_of(&p1));
    assert_eq!(value(&lease, "ip"), ip_of(&p1), "{lease}");
    assert_eq!(value(&lease, "mask"), "24");
    assert_eq!(value(&lease, "router"), "10.93.0.1");
    assert_eq!(value(&lease, "mtu"), "1400");
    assert_eq!(value(&lease, "dns"), "10.93.0.53");
    assert_eq!(value(&lease, "hostname"), "web-1");
    assert_eq!(value(&lease, "lease"), "86400");
    assert_eq!(
        value(&lease, "staticroutes"),
        "0.0.0.0/0 10.93.0.1 192.168.93.0/24 10.93.0.254 169.254.169.254/32 0.0.0.0"
    );
    let link =
        String::from_utf8_lossy(&sh(Some("dh-vm1"), &["ip", "link", "show", &tap_of(&p1)]).stdout)
            .into_owned();
    assert!(link.contains("mtu 1400"), "{link}");
    let routes =
        String::from_utf8_lossy(&sh(Some("dh-vm1"), &["ip", "-4", "route"]).stdout).into_owned();
    assert!(routes.contains("default via 10.93.0.1"), "{routes}");
    assert!(
        routes.contains("192.168.93.0/24 via 10.93.0.254"),
        "{routes}"
    );
    assert!(
        routes.lines().any(|l| l.starts_with("169.254.169.254 dev")),
        "{routes}"
    );

    // A subnet option changed through the API is in the next renewal, no restart.
    os(
        &env,
        &[
            "subnet",
            "set",
            "--no-dns-nameservers",
            "--dns-nameserver",
            "10.93.0.54",
            "dh-n1-s",
        ],
    );
    wait_for("the new DNS server in a lease", 30, || {
        value(&udhcpc(&dir, "dh-vm1", &tap_of(&p1)), "dns") == "10.93.0.54"
    });

    // Metadata: each VM reads its own instance, on one network and across two.
    udhcpc(&dir, "dh-vm2", &tap_of(&p2));
    udhcpc(&dir, "dh-vm3", &tap_of(&p3));
    for (vm, p, device, name) in [
        (
            "dh-vm1",
            &p1,
            "11111111-0000-4000-8000-000000000001",
            "web-1",
        ),
        (
            "dh-vm2",
            &p2,
            "22222222-0000-4000-8000-000000000002",
            "web-2",
        ),
        (
            "dh-vm3",
            &p3,
            "33333333-0000-4000-8000-000000000003",
            "db-1",
        ),
    ] {
        let md: Value = serde_json::from_str(&curl(vm, "/openstack/latest/meta_data.json"))
            .unwrap_or_else(|e| panic!("{vm}: meta_data.json: {e}"));
        assert_eq!(md["uuid"], device, "{vm}: {md}");
        assert_eq!(md["hostname"], name, "{vm}: {md}");
        assert_eq!(curl(vm, "/latest/meta-data/local-ipv4"), ip_of(p), "{vm}");
        assert_eq!(curl(vm, "/latest/meta-data/instance-id"), device, "{vm}");
    }
    assert_eq!(curl("dh-vm1", "/openstack/latest/vendor_data2.json"), "{}");
    let nd: Value =
        serde_json::from_str(&curl("dh-vm1", "/openstack/latest/network_data.json")).unwrap();
    assert_eq!(nd["links"][0]["ethernet_mac_address"], p1["mac_address"]);
    assert_eq!(nd["networks"][0]["ip_address"], ip_of(&p1).as_str());
    // Unknown paths, and a port with no instance (no device_id): 404.
    let o = sh(
        Some("dh-vm1"),
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "5",
            "http://169.254.169.254/nope",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
    // A change to the port reaches the metadata service without a restart.
    os(&env, &["port", "set", "--name", "web-2b", "web-2"]);
    wait_for("web-2's new name in its metadata", 30, || {
        curl("dh-vm2", "/latest/meta-data/hostname") == "web-2b"
    });
}
