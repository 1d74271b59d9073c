//! End to end: `openstack server create` on `weft serve` boots a real QEMU
//! guest through libvirt (TCG on hosts without a usable KVM): the tiny guest
//! image of scripts/guest-image.sh uploaded with `image create`, a tenant
//! network, `server create --wait` ACTIVE with its address, a libvirt
//! domain running on the tap named after its port, which the in-process
//! switch wires: two guests with fixed addresses, each with its DHCP lease
//! from the switch (its address, the router, the server's name), its own
//! uuid from the metadata service in the switch, and a ping of the other
//! guest (its user data, run by the guest's init) in `console log show`;
//! stop/start, and `server delete --wait` leaving no domain, disk, port or
//! allocation behind.
//!
//! Needs root, libvirt and the openstack CLI (scripts/install-deps.sh); the
//! test runs scripts/libvirt.sh and scripts/guest-image.sh (both
//! idempotent) and fails, never skips, when they cannot work.

mod guest_util;
mod serve_util;

use guest_util::{ping_peer_user_data, repo, script, virsh, wait};
use serde_json::Value;
use serve_util::Serve;
use std::path::Path;
use std::process::Command;

fn virsh_list() -> String {
    virsh(&["list", "--all", "--name"])
}

/// Deletes a link when dropped (the test's physnet veth).
struct DelLink(&'static str);

impl Drop for DelLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
    }
}

fn status(s: &Serve, id: &str) -> Value {
    s.json(&["server", "show", id])
}

#[test]
fn server_create_boots_a_real_guest() {
    script("libvirt.sh");
    script("guest-image.sh");
    let image = repo().join("target/guest/weft-guest.qcow2");
    assert!(image.exists(), "{} missing", image.display());
    // This host's switch in-process: a VLAN physnet on a veth nobody reads
    // (the guest's network is a tenant VLAN), so the switch wires the
    // guest's tap and answers its DHCP.
    let cfg = tempfile::tempdir().unwrap();
    let _ = Command::new("ip").args(["link", "del", "cee-w1"]).output();
    for args in [
        &[
            "link", "add", "cee-w1", "type", "veth", "peer", "name", "cee-w2",
        ][..],
        &["link", "set", "cee-w1", "up"],
        &["link", "set", "cee-w2", "up"],
    ] {
        assert!(
            Command::new("ip").args(args).status().unwrap().success(),
            "ip {args:?}"
        );
    }
    let _veth = DelLink("cee-w1");
    let net_toml = cfg.path().join("net.toml");
    std::fs::write(
        &net_toml,
        "tenant_network_types = [\"vlan\"]\nnetwork_vlan_ranges = [\"physnet:600:699\"]\n",
    )
    .unwrap();
    let sw_toml = cfg.path().join("host.toml");
    std::fs::write(
        &sw_toml,
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n\n[[physnet]]\nname = \"physnet\"\ninterface = \"cee-w1\"\n",
            cfg.path().join("switch.sock").display()
        ),
    )
    .unwrap();
    let s = Serve::start(
        "compute-e2e",
        &[
            "--network-config",
            net_toml.to_str().unwrap(),
            "--switch-config",
            sw_toml.to_str().unwrap(),
            "--compute-driver",
            "libvirt",
            "--host",
            "weft-e2e-host",
            // The test guest ignores ACPI power-off: do not wait Nova's 60 s.
            "--shutdown-timeout-secs",
            "3",
        ],
    );

    let services = s.json(&["compute", "service", "list"]);
    assert_eq!(services[0]["Host"], "weft-e2e-host", "{services}");
    assert_eq!(services[0]["State"], "up");

    let img = s.json(&[
        "image",
        "create",
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--file",
        image.to_str().unwrap(),
        "weft-guest",
    ]);
    assert_eq!(img["status"], "active");
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "e2e.tiny",
    ]);
    s.json(&["network", "create", "e2e-net"]);
    s.json(&[
        "subnet",
        "create",
        "--network",
        "e2e-net",
        "--subnet-range",
        "10.61.0.0/24",
        "e2e-sub",
    ]);

    // Two guests with fixed addresses, each with user data (a script its
    // init runs, as cloud-init does) that pings the other through weft.
    let ips = ["10.61.0.21", "10.61.0.22"];
    let names = ["e2e-vm", "e2e-vm2"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let peer = ips[1 - i];
        let ud = cfg.path().join(format!("{name}.sh"));
        std::fs::write(&ud, ping_peer_user_data(peer)).unwrap();
        let nic = format!("net-id=e2e-net,v4-fixed-ip={}", ips[i]);
        let server = s.json(&[
            "server",
            "create",
            "--flavor",
            "e2e.tiny",
            "--image",
            "weft-guest",
            "--nic",
            &nic,
            "--user-data",
            ud.to_str().unwrap(),
            "--wait",
            name,
        ]);
        assert_eq!(server["status"], "ACTIVE", "{server}");
        let addrs = server["addresses"].to_string();
        assert!(addrs.contains(ips[i]), "{addrs}");
        assert_eq!(server["OS-EXT-SRV-ATTR:host"], "weft-e2e-host");
        ids.push(server["id"].as_str().unwrap().to_string());
    }
    let id = ids[0].clone();
    let domain = format!("weft-{id}");
    assert!(virsh_list().contains(&domain), "{}", virsh_list());

    // The domain's NIC is the port's tap, which the host's switch attaches.
    let ports = s.json(&["port", "list", "--device-id", &id]);
    let port_id = ports[0]["ID"].as_str().unwrap().to_string();
    let tap = format!("tap{}", &port_id[..11]);
    assert!(Path::new("/sys/class/net").join(&tap).exists(), "no {tap}");
    let port = s.json(&["port", "show", &port_id]);
    assert_eq!(port["binding_host_id"], "weft-e2e-host", "{port}");
    assert_eq!(port["device_owner"], "compute:nova");

    // Each guest boots, takes its address from the host's switch (DHCP
    // answered inside the switch, named after the server), reads its own
    // identity from the metadata service inside the switch, and pings the
    // other guest.
    for (i, sid) in ids.iter().enumerate() {
        let lease = format!("WEFT-GUEST lease ip={}/24 router=10.61.0.1", ips[i]);
        let hostname = format!("hostname={}", names[i]);
        let meta = format!("WEFT-GUEST metadata uuid={sid}");
        let ping = format!("WEFT-PING ok {}", ips[1 - i]);
        let mut text = String::new();
        wait(
            &format!("{}: lease, metadata and ping on its console", names[i]),
            300,
            || {
                let out = s.openstack(&["console", "log", "show", sid]);
                text = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(!text.contains("WEFT-PING failed"), "{text}");
                text.contains(&lease)
                    && text.contains(&hostname)
                    && text.contains(&meta)
                    && text.contains(&ping)
            },
        );
    }

    // Stop and start through the driver.
    assert!(s.openstack(&["server", "stop", &id]).status.success());
    wait("SHUTOFF", 120, || status(&s, &id)["status"] == "SHUTOFF");
    assert!(s.openstack(&["server", "start", &id]).status.success());
    wait("ACTIVE again", 120, || {
        status(&s, &id)["status"] == "ACTIVE"
    });

    // Delete: domains, disks, ports, taps and allocations gone.
    assert!(s
        .openstack(&["server", "delete", "--wait", &ids[1], &id])
        .status
        .success());
    assert!(!virsh_list().contains(&format!("weft-{}", ids[1])));
    assert!(!virsh_list().contains(&domain), "{}", virsh_list());
    assert!(!s.dir.join("state/instances").join(&id).exists());
    assert_eq!(
        s.json(&["port", "list", "--device-id", &id]),
        serde_json::json!([])
    );
    wait("the tap gone", 30, || {
        !Path::new("/sys/class/net").join(&tap).exists()
    });
    let rp = s.json(&["resource", "provider", "list", "--name", "weft-e2e-host"]);
    let rp_id = rp[0]["uuid"].as_str().unwrap().to_string();
    let usage = s.json(&["resource", "provider", "usage", "show", &rp_id]);
    assert!(
        usage.as_array().unwrap().iter().all(|u| u["usage"] == 0),
        "allocation kept: {usage}"
    );
}
