//! End to end, the server actions with the real `openstack` CLI on `weft
//! serve` and a real TCG guest: `server add network` / `add port` /
//! `remove port` hot-plug NICs into the running libvirt domain (virsh
//! dumpxml shows them) on taps the switch wires (the ports go ACTIVE);
//! `server image create` uploads a standalone qcow2 of the disk (qemu-img
//! info on the downloaded bytes); `server rebuild` onto that snapshot boots
//! the guest again on the same ports and addresses; `server resize` +
//! `resize confirm` redefine the domain with the new flavor's vCPUs and
//! grow its root disk.
//!
//! Needs root, libvirt and the openstack CLI. Names: veth `cx-w1`/`cx-w2`,
//! host `weft-cx-host`, resources `cx-*`.

mod guest_util;
mod serve_util;

use guest_util::{repo, script, virsh, wait};
use serde_json::Value;
use serve_util::Serve;
use std::path::Path;
use std::process::Command;

/// Deletes the veth, and any domain of this test left by a failure.
struct Cleanup(Option<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "cx-w1"]).output();
        if let Some(d) = &self.0 {
            let _ = virsh(&["destroy", d]);
            let _ = virsh(&["undefine", "--managed-save", d]);
        }
    }
}

fn serve() -> (Serve, tempfile::TempDir) {
    let cfg = tempfile::tempdir().unwrap();
    let _ = Command::new("ip").args(["link", "del", "cx-w1"]).output();
    for args in [
        &[
            "link", "add", "cx-w1", "type", "veth", "peer", "name", "cx-w2",
        ][..],
        &["link", "set", "cx-w1", "up"],
        &["link", "set", "cx-w2", "up"],
    ] {
        assert!(
            Command::new("ip").args(args).status().unwrap().success(),
            "ip {args:?}"
        );
    }
    let net_toml = cfg.path().join("net.toml");
    std::fs::write(
        &net_toml,
        "tenant_network_types = [\"vlan\"]\nnetwork_vlan_ranges = [\"physnet:700:799\"]\n",
    )
    .unwrap();
    let sw_toml = cfg.path().join("host.toml");
    std::fs::write(
        &sw_toml,
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n\n[[physnet]]\nname = \"physnet\"\ninterface = \"cx-w1\"\n",
            cfg.path().join("switch.sock").display()
        ),
    )
    .unwrap();
    let s = Serve::start(
        "cx-actions",
        &[
            "--network-config",
            net_toml.to_str().unwrap(),
            "--switch-config",
            sw_toml.to_str().unwrap(),
            "--compute-driver",
            "libvirt",
            "--host",
            "weft-cx-host",
            "--shutdown-timeout-secs",
            "3",
        ],
    );
    (s, cfg)
}

fn lease_seen(s: &Serve, id: &str, ip: &str) -> bool {
    let out = s.openstack(&["console", "log", "show", id]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("WEFT-GUEST lease ip={ip}/24"))
}

fn first_ip(server: &Value, net: &str) -> String {
    let text = server["addresses"].to_string();
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|x| x.starts_with(net))
        .unwrap_or_else(|| panic!("no {net} address in {text}"))
        .to_string()
}

#[test]
fn interface_snapshot_rebuild_resize_on_a_real_guest() {
    script("libvirt.sh");
    script("guest-image.sh");
    let image = repo().join("target/guest/weft-guest.qcow2");
    let mut cleanup = Cleanup(None);
    let (s, cfg) = serve();
    s.json(&[
        "image",
        "create",
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--file",
        image.to_str().unwrap(),
        "cx-guest",
    ]);
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "cx.tiny",
    ]);
    s.json(&[
        "flavor", "create", "--vcpus", "2", "--ram", "192", "--disk", "2", "cx.big",
    ]);
    for (net, range) in [("cx-net", "10.71.0.0/24"), ("cx-net2", "10.72.0.0/24")] {
        s.json(&["network", "create", net]);
        s.json(&[
            "subnet",
            "create",
            "--network",
            net,
            "--subnet-range",
            range,
            &format!("{net}-sub"),
        ]);
    }
    let server = s.json(&[
        "server",
        "create",
        "--flavor",
        "cx.tiny",
        "--image",
        "cx-guest",
        "--network",
        "cx-net",
        "--wait",
        "cx-vm",
    ]);
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let id = server["id"].as_str().unwrap().to_string();
    let domain = format!("weft-{id}");
    cleanup.0 = Some(domain.clone());
    let ip = first_ip(&server, "10.71.0.");
    wait("the first lease", 180, || lease_seen(&s, &id, &ip));

    // `server add network`: a port made on cx-net2, bound here, hot-plugged.
    assert!(s
        .openstack(&["server", "add", "network", &id, "cx-net2"])
        .status
        .success());
    let ports = s.json(&["port", "list", "--device-id", &id, "--network", "cx-net2"]);
    let added = ports[0]["ID"]
        .as_str()
        .expect("a port on cx-net2")
        .to_string();
    let tap = format!("tap{}", &added[..11]);
    assert!(virsh(&["dumpxml", &domain]).contains(&format!("<target dev='{tap}'/>")));
    wait(
        "the hot-plugged port ACTIVE (the switch wired its tap)",
        60,
        || s.json(&["port", "show", &added])["status"] == "ACTIVE",
    );
    let shown = s.json(&["server", "show", &id]);
    assert!(
        shown["addresses"].to_string().contains("10.72.0."),
        "{shown}"
    );
    let ifaces = s.json(&["port", "list", "--device-id", &id]);
    assert_eq!(ifaces.as_array().unwrap().len(), 2, "{ifaces}");

    // `server add port` / `remove port` with a port made beforehand.
    let p = s.json(&["port", "create", "--network", "cx-net2", "cx-port"]);
    let pid = p["id"].as_str().unwrap().to_string();
    let mac = p["mac_address"].as_str().unwrap().to_string();
    assert!(s
        .openstack(&["server", "add", "port", &id, &pid])
        .status
        .success());
    assert!(virsh(&["dumpxml", &domain]).contains(&mac));
    let bound = s.json(&["port", "show", &pid]);
    assert_eq!(bound["device_id"], id.as_str());
    assert_eq!(bound["binding_host_id"], "weft-cx-host");
    // A port in use by this server cannot be attached twice.
    assert!(!s
        .openstack(&["server", "add", "port", &id, &pid])
        .status
        .success());
    assert!(s
        .openstack(&["server", "remove", "port", &id, &pid])
        .status
        .success());
    assert!(!virsh(&["dumpxml", "--inactive", &domain]).contains(&mac));
    assert_eq!(s.json(&["port", "show", &pid])["device_id"], "");

    // `server image create`: a standalone qcow2 of the disk, Nova's properties.
    let snap = s.json(&[
        "server", "image", "create", "--name", "cx-snap", "--wait", &id,
    ]);
    let snap_id = snap["id"].as_str().unwrap().to_string();
    let img = s.json(&["image", "show", &snap_id]);
    assert_eq!(img["status"], "active", "{img}");
    let props = img["properties"].to_string();
    assert!(props.contains("\"image_type\":\"snapshot\""), "{props}");
    assert!(props.contains(&id), "instance_uuid: {props}");
    let file = cfg.path().join("cx-snap.qcow2");
    assert!(s
        .openstack(&["image", "save", "--file", file.to_str().unwrap(), &snap_id])
        .status
        .success());
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&file)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");
    assert!(info.get("backing-filename").is_none(), "{info}");
    wait("ACTIVE after the snapshot", 60, || {
        s.json(&["server", "show", &id])["OS-EXT-STS:task_state"].is_null()
    });

    // `server rebuild` onto the snapshot: booted again, same addresses.
    let before = s.json(&["server", "show", &id])["addresses"].clone();
    // (`--wait` prints "Complete" before its JSON: read the server after.)
    let out = s.openstack(&["server", "rebuild", "--image", &snap_id, "--wait", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = s.json(&["server", "show", &id]);
    assert_eq!(after["status"], "ACTIVE", "{after}");
    assert_eq!(after["addresses"], before);
    assert!(after["image"].to_string().contains(&snap_id), "{after}");
    wait("the rebuilt guest's lease", 180, || {
        lease_seen(&s, &id, &ip)
    });

    // `server resize` + confirm: the domain has 2 vCPUs.
    assert!(s
        .openstack(&["server", "resize", "--flavor", "cx.big", "--wait", &id])
        .status
        .success());
    wait("VERIFY_RESIZE", 120, || {
        s.json(&["server", "show", &id])["status"] == "VERIFY_RESIZE"
    });
    assert!(virsh(&["dumpxml", &domain]).contains(">2</vcpu>"));
    // Its root disk grown to the new flavor's 2 GiB.
    let blk = virsh(&["domblkinfo", &domain, "vda"]);
    assert!(blk.contains("2147483648"), "{blk}");
    assert!(s
        .openstack(&["server", "resize", "confirm", &id])
        .status
        .success());
    wait("ACTIVE after confirm", 60, || {
        s.json(&["server", "show", &id])["status"] == "ACTIVE"
    });
    let rp = s.json(&["resource", "provider", "list", "--name", "weft-cx-host"]);
    let rp_id = rp[0]["uuid"].as_str().unwrap().to_string();
    let usage = s.json(&["resource", "provider", "usage", "show", &rp_id]);
    let vcpu = usage
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["resource_class"] == "VCPU")
        .unwrap();
    assert_eq!(vcpu["usage"], 2, "{usage}");

    assert!(s
        .openstack(&["server", "delete", "--wait", &id])
        .status
        .success());
    assert!(!virsh(&["list", "--all", "--name"]).contains(&domain));
    assert_eq!(
        s.json(&["port", "list", "--device-id", &id]),
        serde_json::json!([])
    );
    wait("the taps gone", 30, || {
        !Path::new("/sys/class/net").join(&tap).exists()
    });
}
