//! End to end: the Compute API of `weft serve` driven by the real
//! `openstack` CLI: the catalog's compute endpoint, flavors (public and
//! private with project access, properties, admin-only create), and key
//! pairs (import, generate, per user) as a user and an admin type them;
//! a server with no compute host going ERROR with Nova's fault, and deleted.
//!
//! Needs python-openstackclient in /opt/weft-venv (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::{fails_as, json_as, row, Serve};

fn names(rows: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[key].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn openstack_cli_flavors_and_keypairs() {
    let s = Serve::start("compute-cli", &["--compute-driver", "none"]);
    let ep = s.json(&["catalog", "show", "compute"]);
    assert_eq!(ep["type"], "compute");
    assert!(
        ep["endpoints"].to_string().contains("/compute/v2.1"),
        "{ep}"
    );

    // A member of another project.
    s.json(&["project", "create", "demo"]);
    s.json(&[
        "user",
        "create",
        "--password",
        "demo-pw",
        "--project",
        "demo",
        "demo",
    ]);
    assert!(s
        .openstack(&[
            "role",
            "add",
            "--user",
            "demo",
            "--project",
            "demo",
            "member"
        ])
        .status
        .success());
    let demo = s.env_of("demo", "demo-pw", "demo");

    // Flavors: admin creates, the member lists and shows.
    let f = s.json(&[
        "flavor",
        "create",
        "--vcpus",
        "1",
        "--ram",
        "256",
        "--disk",
        "1",
        "--property",
        "hw:cpu_policy=shared",
        "m1.tiny",
    ]);
    assert_eq!(f["vcpus"], 1);
    assert_eq!(f["ram"], 256);
    assert_eq!(f["os-flavor-access:is_public"], true);
    let tiny_id = f["id"].as_str().unwrap().to_string();
    s.json(&[
        "flavor",
        "create",
        "--id",
        "42",
        "--vcpus",
        "2",
        "--ram",
        "512",
        "--disk",
        "2",
        "--private",
        "m1.secret",
    ]);
    let err = fails_as(
        &demo,
        &["flavor", "create", "--ram", "64", "--vcpus", "1", "nope"],
    );
    assert!(
        err.contains("403") || err.to_lowercase().contains("policy"),
        "{err}"
    );

    let listed = json_as(&demo, &["flavor", "list"]);
    assert_eq!(names(&listed, "Name"), ["m1.tiny"], "private flavor hidden");
    let shown = json_as(&demo, &["flavor", "show", "m1.tiny"]);
    assert_eq!(shown["id"], tiny_id.as_str());
    assert_eq!(shown["disk"], 1);
    assert!(
        shown["properties"].to_string().contains("hw:cpu_policy"),
        "{shown}"
    );
    fails_as(&demo, &["flavor", "show", "m1.secret"]);

    // Give demo access to the private flavor: now it is listed for demo.
    assert!(s
        .openstack(&["flavor", "set", "--project", "demo", "m1.secret"])
        .status
        .success());
    let listed = json_as(&demo, &["flavor", "list"]);
    assert_eq!(names(&listed, "Name"), ["m1.secret", "m1.tiny"]);
    let all = s.json(&["flavor", "list", "--all", "--long"]);
    assert_eq!(row(&all, "Name", "m1.secret")["Is Public"], false);
    assert_eq!(row(&all, "ID", "42")["VCPUs"], 2);

    // Key pairs: generated (the private key goes to a file), imported.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("demo-key");
    let kp = json_as(
        &demo,
        &[
            "keypair",
            "create",
            "--private-key",
            key_file.to_str().unwrap(),
            "demo-gen",
        ],
    );
    assert_eq!(kp["name"], "demo-gen");
    let private = std::fs::read_to_string(&key_file).unwrap();
    assert!(private.contains("PRIVATE KEY"), "{private}");
    // Import the public half of the generated pair under another name.
    let out = serve_util::run(&demo, &["keypair", "show", "--public-key", "demo-gen"]);
    assert!(out.status.success());
    let pub_key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(pub_key.starts_with("ssh-ed25519 "), "{pub_key}");
    let pub_file = dir.path().join("imported.pub");
    std::fs::write(&pub_file, pub_key.trim()).unwrap();
    let imported = json_as(
        &demo,
        &[
            "keypair",
            "create",
            "--public-key",
            pub_file.to_str().unwrap(),
            "demo-imported",
        ],
    );
    assert_eq!(imported["fingerprint"], kp["fingerprint"]);
    let mine = json_as(&demo, &["keypair", "list"]);
    assert_eq!(names(&mine, "Name"), ["demo-gen", "demo-imported"]);
    let admins = s.json(&["keypair", "list"]);
    assert_eq!(
        names(&admins, "Name"),
        Vec::<String>::new(),
        "key pairs are per user"
    );
    let err = fails_as(
        &demo,
        &[
            "keypair",
            "create",
            "--public-key",
            pub_file.to_str().unwrap(),
            "demo-gen",
        ],
    );
    assert!(
        err.contains("409") || err.contains("already exists"),
        "{err}"
    );

    // Servers: with no compute host registered, a create is accepted and
    // goes ERROR with Nova's fault, never hangs in BUILD.
    let img_file = dir.path().join("disk.raw");
    std::fs::write(&img_file, vec![0u8; 1 << 20]).unwrap();
    s.json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--public",
        "--file",
        img_file.to_str().unwrap(),
        "tiny-img",
    ]);
    let net = json_as(&demo, &["network", "create", "demo-net"]);
    json_as(
        &demo,
        &[
            "subnet",
            "create",
            "--network",
            "demo-net",
            "--subnet-range",
            "10.9.0.0/24",
            "demo-sub",
        ],
    );
    let server = json_as(
        &demo,
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "tiny-img",
            "--network",
            net["id"].as_str().unwrap(),
            "--key-name",
            "demo-gen",
            "vm1",
        ],
    );
    // The build loop may have failed it already (no host at all).
    assert!(
        server["status"] == "BUILD" || server["status"] == "ERROR",
        "{server}"
    );
    let id = server["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let shown = loop {
        let v = json_as(&demo, &["server", "show", &id]);
        if v["status"] != "BUILD" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "still BUILD: {v}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert_eq!(shown["status"], "ERROR", "{shown}");
    assert!(
        shown["fault"]
            .to_string()
            .contains("No valid host was found"),
        "{shown}"
    );
    let listed = json_as(&demo, &["server", "list"]);
    assert_eq!(names(&listed, "Name"), ["vm1"]);
    assert_eq!(
        s.json(&["server", "list"]),
        serde_json::json!([]),
        "the admin's project has none"
    );
    let err = fails_as(
        &demo,
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "no-such-image",
            "--network",
            "demo-net",
            "vm2",
        ],
    );
    assert!(
        err.contains("No Image found") || err.contains("image"),
        "{err}"
    );
    assert!(serve_util::run(&demo, &["server", "delete", "--wait", &id])
        .status
        .success());
    assert_eq!(json_as(&demo, &["server", "list"]), serde_json::json!([]));
    assert_eq!(
        s.json(&["compute", "service", "list"]),
        serde_json::json!([])
    );

    // Deletes.
    assert!(serve_util::run(&demo, &["keypair", "delete", "demo-gen"])
        .status
        .success());
    let mine = json_as(&demo, &["keypair", "list"]);
    assert_eq!(names(&mine, "Name"), ["demo-imported"]);
    assert!(s
        .openstack(&["flavor", "delete", "m1.tiny"])
        .status
        .success());
    fails_as(&demo, &["flavor", "show", "m1.tiny"]);
}
