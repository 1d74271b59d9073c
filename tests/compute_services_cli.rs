//! End to end: `openstack compute service set/delete` against `weft serve`
//! with one fake compute host: disable with a reason, enable, force down
//! and up (2.11+), as the real CLI sends them (it looks the service up by
//! host and binary and PUTs `/os-services/{uuid}` at 2.53+, or the older
//! per-action URLs below); a member is refused; the service list shows
//! every change. And a deleted server listed as DELETED with
//! `server list --changes-since`.
//!
//! Needs python-openstackclient in /opt/weft-venv (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::{fails_as, json_as, Serve};

const HOST: &str = "na-cli-host";

fn the_service(s: &Serve, mv: &str) -> Value {
    let rows = s.json(&[
        "--os-compute-api-version",
        mv,
        "compute",
        "service",
        "list",
        "--host",
        HOST,
        "--long",
    ]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

fn set(s: &Serve, mv: &str, args: &[&str]) {
    let mut all = vec!["--os-compute-api-version", mv, "compute", "service", "set"];
    all.extend(args);
    all.extend([HOST, "nova-compute"]);
    let out = s.openstack(&all);
    assert!(
        out.status.success(),
        "{all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openstack_compute_service_set_and_delete() {
    let s = Serve::start(
        "na-services-cli",
        &["--compute-driver", "fake", "--host", HOST],
    );
    for mv in ["2.79", "2.1"] {
        set(&s, mv, &["--disable", "--disable-reason", "maintenance"]);
        let v = the_service(&s, mv);
        assert_eq!(v["Status"], "disabled", "{mv}: {v}");
        assert_eq!(v["Disabled Reason"], "maintenance", "{mv}: {v}");
        set(&s, mv, &["--enable"]);
        let v = the_service(&s, mv);
        assert_eq!(v["Status"], "enabled", "{mv}: {v}");
        assert_eq!(v["Disabled Reason"], Value::Null, "{mv}: {v}");
    }
    for mv in ["2.79", "2.11"] {
        set(&s, mv, &["--down"]);
        let v = the_service(&s, mv);
        assert_eq!(v["State"], "down", "{mv}: {v}");
        assert_eq!(v["Forced Down"], true, "{mv}: {v}");
        set(&s, mv, &["--up"]);
        assert_eq!(the_service(&s, mv)["State"], "up");
    }

    // A member may not.
    s.json(&["project", "create", "na-demo"]);
    s.json(&[
        "user",
        "create",
        "--password",
        "pw",
        "--project",
        "na-demo",
        "na-demo",
    ]);
    assert!(s
        .openstack(&[
            "role",
            "add",
            "--user",
            "na-demo",
            "--project",
            "na-demo",
            "member"
        ])
        .status
        .success());
    let demo = s.env_of("na-demo", "pw", "na-demo");
    fails_as(
        &demo,
        &[
            "--os-compute-api-version",
            "2.1",
            "compute",
            "service",
            "set",
            "--disable",
            HOST,
            "nova-compute",
        ],
    );
    assert_eq!(the_service(&s, "2.79")["Status"], "enabled");

    // A deleted server shows as DELETED to a member polling with
    // `--changes-since`. (The CLI also sends `deleted=False`, which Nova
    // honours for admins only: an admin asks with `--deleted`.)
    let img = s.dir.join("na-img.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    s.json(&[
        "image",
        "create",
        "--public",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        img.to_str().unwrap(),
        "na-img",
    ]);
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", "na.tiny",
    ]);
    let vm = json_as(
        &demo,
        &[
            "server", "create", "--flavor", "na.tiny", "--image", "na-img", "--nic", "none",
            "--wait", "na-vm",
        ],
    );
    let vm_id = vm["id"].as_str().unwrap().to_string();
    // Its last update, by the server's clock: the delete comes after it.
    let since = json_as(&demo, &["server", "show", &vm_id])["updated"]
        .as_str()
        .unwrap()
        .to_string();
    let out = serve_util::run(&demo, &["server", "delete", "--wait", &vm_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_as(&demo, &["server", "list", "--changes-since", &since]);
    assert_eq!(
        serve_util::row(&rows, "ID", &vm_id)["Status"],
        "DELETED",
        "{rows}"
    );
    let rows = json_as(&demo, &["server", "list"]);
    assert!(!rows.to_string().contains(&vm_id), "{rows}");
    let rows = s.json(&["server", "list", "--all-projects", "--deleted"]);
    assert_eq!(
        serve_util::row(&rows, "ID", &vm_id)["Status"],
        "DELETED",
        "{rows}"
    );

    // Delete (no servers on it): gone from the list.
    let id = the_service(&s, "2.79")["ID"].as_str().unwrap().to_string();
    let out = s.openstack(&[
        "--os-compute-api-version",
        "2.79",
        "compute",
        "service",
        "delete",
        &id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = s.json(&["compute", "service", "list", "--host", HOST]);
    assert_eq!(rows.as_array().unwrap().len(), 0, "{rows}");
}
