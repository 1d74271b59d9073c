//! End to end with the real `openstack` CLI and `weft serve
//! --compute-driver fake` (one host): what an operator sees of a host in
//! placement and of the servers' history.
//!
//! - `aggregate add host`: `resource provider aggregate list` shows the
//!   aggregate's uuid on the host's provider, `allocation candidate list
//!   --member-of` finds the host; `aggregate remove host` takes it out.
//! - `server resize --wait` and `server resize confirm`: `server migration
//!   list` (2.80) shows the resize, confirmed.
//! - `usage list` / `usage show`: the server's hours, after its delete too.
//! - `compute service delete`: the host's provider is gone from placement
//!   and the host from its aggregate.
//!
//! Needs python-openstackclient with osc-placement in /opt/weft-venv
//! (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::Serve;

const HOST: &str = "cop-cli-host";

fn ok(s: &Serve, args: &[&str]) {
    let out = s.openstack(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host's provider uuid (`None` once gone).
fn provider(s: &Serve) -> Option<String> {
    let rows = s.json(&["resource", "provider", "list", "--name", HOST]);
    rows.as_array()?
        .first()
        .map(|r| r["uuid"].as_str().unwrap().to_string())
}

fn rp_aggregates(s: &Serve, rp: &str) -> Value {
    s.json(&[
        "--os-placement-api-version",
        "1.19",
        "resource",
        "provider",
        "aggregate",
        "list",
        rp,
    ])
}

fn member_of(s: &Serve, agg: &str) -> Value {
    s.json(&[
        "--os-placement-api-version",
        "1.21",
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--member-of",
        agg,
    ])
}

#[test]
fn openstack_cli_placement_aggregates_migrations_usage_and_service_delete() {
    let s = Serve::start("cop-ops-cli", &["--compute-driver", "fake", "--host", HOST]);
    let rp = provider(&s).expect("the host's provider");

    // Aggregates mirrored into placement.
    s.json(&["aggregate", "create", "cop-agg"]);
    ok(&s, &["aggregate", "add", "host", "cop-agg", HOST]);
    let agg = s.json(&[
        "--os-compute-api-version",
        "2.41",
        "aggregate",
        "show",
        "cop-agg",
    ]);
    let agg_uuid = agg["uuid"].as_str().expect("uuid at 2.41").to_string();
    let aggs = rp_aggregates(&s, &rp);
    assert!(aggs.to_string().contains(&agg_uuid), "{aggs}");
    let cands = member_of(&s, &agg_uuid);
    assert!(cands.to_string().contains(&rp), "{cands}");
    ok(&s, &["aggregate", "remove", "host", "cop-agg", HOST]);
    let aggs = rp_aggregates(&s, &rp);
    assert!(!aggs.to_string().contains(&agg_uuid), "{aggs}");
    let cands = member_of(&s, &agg_uuid);
    assert!(!cands.to_string().contains(&rp), "{cands}");
    ok(&s, &["aggregate", "add", "host", "cop-agg", HOST]);

    // A server, resized and confirmed: the migration list shows it.
    let img = s.dir.join("cop-img.raw");
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
        "cop-img",
    ]);
    for (name, vcpus) in [("cop.f1", "1"), ("cop.f2", "2")] {
        s.json(&[
            "flavor", "create", "--vcpus", vcpus, "--ram", "64", "--disk", "1", name,
        ]);
    }
    let vm = s.json(&[
        "server", "create", "--flavor", "cop.f1", "--image", "cop-img", "--nic", "none", "--wait",
        "cop-vm",
    ]);
    let id = vm["id"].as_str().unwrap().to_string();
    ok(
        &s,
        &["server", "resize", "--flavor", "cop.f2", "--wait", &id],
    );
    let shown = s.json(&["server", "show", &id]);
    assert_eq!(shown["status"], "VERIFY_RESIZE", "{shown}");
    ok(&s, &["server", "resize", "confirm", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let rows = loop {
        let rows = s.json(&[
            "--os-compute-api-version",
            "2.80",
            "server",
            "migration",
            "list",
        ]);
        if rows.to_string().contains("confirmed") {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "{rows}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let row = serve_util::row(&rows, "Server UUID", &id);
    assert_eq!(row["Status"], "confirmed", "{rows}");
    assert_eq!(row["Type"], "resize", "{rows}");
    assert_eq!(row["Source Compute"], HOST, "{rows}");
    let by_server = s.json(&[
        "--os-compute-api-version",
        "2.80",
        "server",
        "migration",
        "list",
        "--server",
        &id,
    ]);
    assert_eq!(by_server.as_array().unwrap().len(), 1, "{by_server}");

    // Usage: the server's hours, also once deleted.
    ok(&s, &["server", "delete", "--wait", &id]);
    let usage = s.json(&["usage", "list"]);
    let admin_project = s.env["OS_PROJECT_NAME"].clone();
    // `-f json` shows `Servers` as the list of server usages.
    let servers = |u: &Value| u["Servers"].as_array().map_or(0, Vec::len);
    let line = usage
        .as_array()
        .unwrap()
        .iter()
        .find(|u| servers(u) == 1)
        .unwrap_or_else(|| panic!("{usage}"));
    assert!(line["CPU Hours"].as_f64().unwrap() > 0.0, "{usage}");
    assert_eq!(line["Servers"][0]["instance_id"], id.as_str(), "{usage}");
    assert_eq!(line["Servers"][0]["state"], "terminated", "{usage}");
    let one = s.json(&["usage", "show", "--project", &admin_project]);
    assert!(one.to_string().contains(&id), "{one}");

    // Service delete: the provider and the aggregate membership go.
    let svc = s.json(&[
        "--os-compute-api-version",
        "2.79",
        "compute",
        "service",
        "list",
        "--host",
        HOST,
    ]);
    let svc_id = svc[0]["ID"].as_str().unwrap().to_string();
    ok(
        &s,
        &[
            "--os-compute-api-version",
            "2.79",
            "compute",
            "service",
            "delete",
            &svc_id,
        ],
    );
    assert_eq!(provider(&s), None);
    let agg = s.json(&["aggregate", "show", "cop-agg"]);
    assert!(!agg["hosts"].to_string().contains(HOST), "{agg}");
}
