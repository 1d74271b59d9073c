//! End to end with the real `openstack` CLI and `weft serve --compute-driver
//! fake` (one host): server groups (`server group create --policy
//! anti-affinity`, `server create --hint group=`: the first member ACTIVE,
//! the second "No valid host was found" on the only host), server events
//! (`server event list/show`), compute quotas (`quota show --compute`,
//! `quota set --instances N <project>` then a create refused with Nova's
//! quota message), and `limits show --absolute`.
//!
//! Needs python-openstackclient in /opt/weft-venv (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::{fails_as, json_as, row, Serve};
use std::time::{Duration, Instant};

/// Waits for `server` to leave BUILD; its `server show`.
fn settled(env: &serve_util::Env, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = json_as(env, &["server", "show", id]);
        if v["status"] != "BUILD" {
            return v;
        }
        assert!(Instant::now() < deadline, "still BUILD: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn openstack_cli_server_groups_events_quotas_and_limits() {
    let s = Serve::start("ca-groups-cli", &["--compute-driver", "fake"]);
    s.json(&["project", "create", "ca-demo"]);
    s.json(&[
        "user",
        "create",
        "--password",
        "pw",
        "--project",
        "ca-demo",
        "ca-demo",
    ]);
    assert!(s
        .openstack(&[
            "role",
            "add",
            "--user",
            "ca-demo",
            "--project",
            "ca-demo",
            "member"
        ])
        .status
        .success());
    let demo = s.env_of("ca-demo", "pw", "ca-demo");
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "1", "ca.tiny",
    ]);
    let dir = tempfile::tempdir().unwrap();
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
        "ca-img",
    ]);

    // A group, and two servers in it on a cloud of one host.
    let g = json_as(
        &demo,
        &[
            "server",
            "group",
            "create",
            "--policy",
            "anti-affinity",
            "ca-g1",
        ],
    );
    assert_eq!(g["name"], "ca-g1");
    let gid = g["id"].as_str().unwrap().to_string();
    let listed = json_as(&demo, &["server", "group", "list"]);
    row(&listed, "ID", &gid);
    let create = |name: &str| {
        json_as(
            &demo,
            &[
                "server",
                "create",
                "--flavor",
                "ca.tiny",
                "--image",
                "ca-img",
                "--nic",
                "none",
                "--hint",
                &format!("group={gid}"),
                name,
            ],
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = create("ca-vm1");
    assert_eq!(settled(&demo, &first)["status"], "ACTIVE");
    let second = create("ca-vm2");
    let shown = settled(&demo, &second);
    assert_eq!(shown["status"], "ERROR", "{shown}");
    assert!(
        shown["fault"]
            .to_string()
            .contains("No valid host was found"),
        "{shown}"
    );
    let g = json_as(&demo, &["server", "group", "show", &gid]);
    let members = g["members"].to_string();
    assert!(members.contains(&first) && members.contains(&second), "{g}");

    // Server events: the create with its steps.
    let events = json_as(&demo, &["server", "event", "list", &first]);
    let create_ev = row(&events, "Action", "create");
    let rid = create_ev["Request ID"].as_str().unwrap().to_string();
    let ev = json_as(
        &demo,
        &[
            "--os-compute-api-version",
            "2.62",
            "server",
            "event",
            "show",
            &first,
            &rid,
        ],
    );
    assert_eq!(ev["action"], "create", "{ev}");
    let steps = ev["events"].to_string();
    assert!(
        steps.contains("compute__do_build_and_run_instance") && steps.contains("Success"),
        "{ev}"
    );

    // Quotas: shown, set by the admin, enforced at create.
    let q = json_as(&demo, &["quota", "show", "--compute"]);
    assert_eq!(row(&q, "Resource", "instances")["Limit"], 10, "{q}");
    assert!(s
        .openstack(&["quota", "set", "--instances", "2", "ca-demo"])
        .status
        .success());
    let q = s.json(&["quota", "show", "--compute", "ca-demo"]);
    assert_eq!(row(&q, "Resource", "instances")["Limit"], 2, "{q}");
    // Without --compute the CLI reads networking's quotas too.
    let q = s.json(&["quota", "show", "ca-demo"]);
    assert_eq!(row(&q, "Resource", "instances")["Limit"], 2, "{q}");
    assert_eq!(row(&q, "Resource", "networks")["Limit"], -1, "{q}");
    let q = s.json(&["quota", "show", "--usage", "ca-demo"]);
    let inst = row(&q, "Resource", "instances");
    assert_eq!(
        (inst["Limit"].as_i64(), inst["In Use"].as_i64()),
        (Some(2), Some(2)),
        "{q}"
    );
    let q = s.json(&["quota", "show", "--default", "ca-demo"]);
    assert_eq!(row(&q, "Resource", "instances")["Limit"], 10, "{q}");
    let err = fails_as(
        &demo,
        &[
            "server", "create", "--flavor", "ca.tiny", "--image", "ca-img", "--nic", "none",
            "ca-vm3",
        ],
    );
    assert!(
        err.contains(
            "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
        ),
        "{err}"
    );
    let limits = json_as(&demo, &["limits", "show", "--absolute"]);
    assert_eq!(
        row(&limits, "Name", "max_total_instances")["Value"],
        2,
        "{limits}"
    );
    assert_eq!(
        row(&limits, "Name", "total_instances_used")["Value"],
        2,
        "{limits}"
    );

    // Deleting a member takes it out of the group.
    assert!(
        serve_util::run(&demo, &["server", "delete", "--wait", &second])
            .status
            .success()
    );
    let g = json_as(&demo, &["server", "group", "show", &gid]);
    assert!(!g["members"].to_string().contains(&second), "{g}");
    assert!(serve_util::run(&demo, &["server", "group", "delete", &gid])
        .status
        .success());
    fails_as(&demo, &["server", "group", "show", &gid]);
}
