//! End to end: the Compute API of `weft serve` driven by openstacksdk itself
//! (not through the CLI), as Ansible's and Terraform-style tooling use it:
//! both the proxy layer (`conn.compute.create_server`, `wait_for_server`,
//! the server actions, metadata, key pairs, `wait_for_delete`) and the cloud
//! layer (`conn.create_server(wait=True)`, which looks up the image, flavor
//! and network by name first, and gets a port on that network). The fake
//! driver runs the servers.
//!
//! Needs openstacksdk in /opt/weft-venv (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::{venv_bin, Serve};
use std::process::Command;

/// Runs with the admin's OS_* variables; prints one JSON object of what it saw.
const SCRIPT: &str = r#"
import json, openstack
conn = openstack.connect()
out = {}
image = conn.image.find_image('sdk-img')
flavor = conn.compute.find_flavor('sdk.tiny')
s = conn.compute.create_server(name='sdk-vm1', image_id=image.id, flavor_id=flavor.id,
                               networks='none', metadata={'role': 'web'})
s = conn.compute.wait_for_server(s, status='ACTIVE', wait=120)
out['status'] = s.status
out['listed'] = sorted(x.name for x in conn.compute.servers())
got = conn.compute.get_server(s.id)
out['flavor'] = got.flavor.original_name
out['image'] = got.image.id == image.id
conn.compute.stop_server(s)
out['stopped'] = conn.compute.wait_for_server(s, status='SHUTOFF', wait=60).status
conn.compute.start_server(s)
out['started'] = conn.compute.wait_for_server(s, status='ACTIVE', wait=60).status
conn.compute.set_server_metadata(s, tier='front')
out['metadata'] = conn.compute.get_server_metadata(s).metadata
kp = conn.compute.create_keypair(name='sdk-key')
out['private_key'] = (kp.private_key or '').startswith('-----BEGIN')
out['keypairs'] = [k.name for k in conn.compute.keypairs()]
# The cloud layer: names resolved by the SDK, then the same API.
c = conn.create_server('sdk-vm2', image='sdk-img', flavor='sdk.tiny', network='sdk-net',
                       auto_ip=False, wait=True, timeout=120)
out['cloud_addresses'] = list(conn.compute.get_server(c.id).addresses)
out['cloud_status'] = c.status
out['cloud_listed'] = sorted(x.name for x in conn.list_servers())
for srv in (s, c):
    conn.compute.delete_server(srv)
    conn.compute.wait_for_delete(srv, wait=60)
out['after_delete'] = [x.name for x in conn.compute.servers()]
try:
    conn.compute.get_server(s.id)
    out['gone'] = 'still there'
except openstack.exceptions.NotFoundException:
    out['gone'] = '404'
print(json.dumps(out))
"#;

#[test]
fn openstacksdk_drives_servers() {
    let s = Serve::start("compute-sdk", &["--compute-driver", "fake"]);
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", "sdk.tiny",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    s.json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        img.to_str().unwrap(),
        "sdk-img",
    ]);
    // `--nic auto` with no network to take is refused at the API, as Nova's.
    let auto = |name: &str| {
        vec![
            "server", "create", "--flavor", "sdk.tiny", "--image", "sdk-img", "--nic", "auto",
            "--wait", name,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let args = auto("sdk-auto0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = s.fails(&args);
    assert!(
        err.contains("Unable to automatically allocate a network"),
        "{err}"
    );
    s.json(&["network", "create", "sdk-net"]);
    s.json(&[
        "subnet",
        "create",
        "--network",
        "sdk-net",
        "--subnet-range",
        "10.93.0.0/24",
        "sdk-subnet",
    ]);
    let out = Command::new(venv_bin().join("python3"))
        .args(["-c", SCRIPT])
        .env_clear()
        .envs(&s.env)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "openstacksdk script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert_eq!(v["status"], "ACTIVE", "{v}");
    assert_eq!(v["listed"], serde_json::json!(["sdk-vm1"]), "{v}");
    assert_eq!(v["flavor"], "sdk.tiny", "{v}");
    assert_eq!(v["image"], true, "{v}");
    assert_eq!(v["stopped"], "SHUTOFF", "{v}");
    assert_eq!(v["started"], "ACTIVE", "{v}");
    assert_eq!(
        v["metadata"],
        serde_json::json!({"role": "web", "tier": "front"}),
        "{v}"
    );
    assert_eq!(v["private_key"], true, "{v}");
    assert_eq!(v["keypairs"], serde_json::json!(["sdk-key"]), "{v}");
    assert_eq!(v["cloud_status"], "ACTIVE", "{v}");
    assert_eq!(v["cloud_addresses"], serde_json::json!(["sdk-net"]), "{v}");
    assert_eq!(
        v["cloud_listed"],
        serde_json::json!(["sdk-vm1", "sdk-vm2"]),
        "{v}"
    );
    assert_eq!(v["after_delete"], serde_json::json!([]), "{v}");
    assert_eq!(v["gone"], "404", "{v}");

    // One network of the project: `auto` takes it; two: ambiguous (409).
    let args = auto("sdk-auto1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let one = s.json(&args);
    assert_eq!(one["status"], "ACTIVE", "{one}");
    assert!(one["addresses"].to_string().contains("sdk-net"), "{one}");
    s.json(&["network", "create", "sdk-net2"]);
    let args = auto("sdk-auto2");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = s.fails(&args);
    assert!(err.contains("Multiple possible networks found"), "{err}");
}
