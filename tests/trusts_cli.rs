//! End to end: builds act through trusts, with the real `openstack` CLI
//! against `weft serve` (fake compute driver, 5-minute tokens). alice
//! creates a server with a token she then revokes; the build still reaches
//! ACTIVE, because it acts through the trust server create recorded
//! (`openstack trust list` shows it while the server exists, and not after
//! delete). Names carry the `tr` prefix.
//!
//! Needs python-openstackclient in /opt/weft-venv (scripts/install-deps.sh)
//! and qemu-img (the fake driver still makes the disk overlay).

mod serve_util;

use serde_json::Value;
use serve_util::{json_as, run, Env, Serve};
use std::time::{Duration, Instant};

/// `env` authenticating with token `t` (the keystoneauth `v3token` plugin).
fn with_token(env: &Env, t: &str) -> Env {
    let mut e = env.clone();
    e.remove("OS_USERNAME");
    e.remove("OS_PASSWORD");
    e.remove("OS_USER_DOMAIN_NAME");
    e.insert("OS_AUTH_TYPE".into(), "v3token".into());
    e.insert("OS_TOKEN".into(), t.into());
    e
}

fn server_status(s: &Serve, id: &str) -> Option<Value> {
    let out = s.openstack(&["server", "show", id, "-f", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn trusts_of(s: &Serve, trustor: &str) -> Vec<Value> {
    s.json(&["trust", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Trustor User ID"] == trustor)
        .cloned()
        .collect()
}

#[test]
fn a_build_outlives_the_users_revoked_token_and_its_trust_goes_with_the_server() {
    let s = Serve::start(
        "tr-trusts",
        &["--compute-driver", "fake", "--token-ttl-minutes", "5"],
    );
    let project = s.json(&["project", "create", "trdemo"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice_id = s.json(&["user", "create", "--password", "trpw", "tralice"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = s.openstack(&[
        "role",
        "add",
        "--user",
        "tralice",
        "--project",
        "trdemo",
        "member",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.json(&[
        "flavor", "create", "--ram", "64", "--disk", "0", "--vcpus", "1", "trtiny",
    ]);
    let alice = s.env_of("tralice", "trpw", "trdemo");
    json_as(&alice, &["network", "create", "trnet"]);
    json_as(
        &alice,
        &[
            "subnet",
            "create",
            "--network",
            "trnet",
            "--subnet-range",
            "10.77.0.0/24",
            "trsub",
        ],
    );
    let file = s.dir.join("trimg.raw");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    json_as(
        &alice,
        &[
            "image",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "trimg",
        ],
    );

    // alice's token: create with it, then revoke it at once.
    let token = json_as(&alice, &["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_token = with_token(&alice, &token);
    let id = json_as(
        &by_token,
        &[
            "server",
            "create",
            "--flavor",
            "trtiny",
            "--image",
            "trimg",
            "--network",
            "trnet",
            "trvm",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run(&alice, &["token", "revoke", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&by_token, &["server", "list"]);
    assert!(
        !out.status.success(),
        "the revoked token (and tokens made from it) are refused"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let server = loop {
        let v = server_status(&s, &id).expect("server shown");
        if v["status"] != "BUILD" {
            break v;
        }
        assert!(Instant::now() < deadline, "still building: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(server["status"], "ACTIVE", "{server}");

    // The trust: alice -> the compute service, on her project.
    let trusts = trusts_of(&s, &alice_id);
    assert_eq!(trusts.len(), 1, "{trusts:?}");
    assert_eq!(trusts[0]["Project ID"], project);
    let nova = s.json(&["user", "show", "nova"]);
    assert_eq!(trusts[0]["Trustee User ID"], nova["id"]);

    let out = run(&alice, &["server", "delete", "--wait", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !trusts_of(&s, &alice_id).is_empty() {
        assert!(Instant::now() < deadline, "the trust outlived its server");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(server_status(&s, &id).is_none());
}
