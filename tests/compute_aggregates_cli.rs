//! End to end with the real `openstack` CLI and `weft serve --compute-driver
//! fake` (one host): host aggregates as an operator uses them. `aggregate
//! create --zone --property`, `aggregate add host`, `aggregate show`; the
//! zone in `availability zone list` (and `--long` with the host's
//! service); a flavor whose `aggregate_instance_extra_specs:ssd=true` lands
//! in the zone, and no longer once the aggregate says `ssd=false` ("No
//! valid host was found"); a member cannot touch aggregates; `aggregate
//! remove host` and `aggregate delete`; `hypervisor show HOST` and
//! `hypervisor stats show`; `server set --name --description`; `server
//! set/unset --tag` and `server list --tags`.
//!
//! Needs python-openstackclient in /opt/weft-venv (scripts/install-deps.sh).

mod serve_util;

use serde_json::Value;
use serve_util::{fails_as, json_as, Serve};
use std::time::{Duration, Instant};

fn settled(s: &Serve, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = s.json(&["server", "show", id]);
        if v["status"] != "BUILD" {
            return v;
        }
        assert!(Instant::now() < deadline, "still BUILD: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn openstack_cli_aggregates_zones_and_the_scheduler() {
    let s = Serve::start("cg-aggr-cli", &["--compute-driver", "fake"]);
    let services = s.json(&["compute", "service", "list"]);
    let host = services[0]["Host"].as_str().unwrap().to_string();

    let a = s.json(&[
        "aggregate",
        "create",
        "--zone",
        "cg-az1",
        "--property",
        "ssd=true",
        "cg-fast",
    ]);
    assert_eq!(a["name"], "cg-fast", "{a}");
    assert_eq!(a["availability_zone"], "cg-az1", "{a}");
    let a = s.json(&["aggregate", "add", "host", "cg-fast", &host]);
    assert!(a["hosts"].to_string().contains(&host), "{a}");
    let a = s.json(&["aggregate", "show", "cg-fast"]);
    assert!(a["properties"].to_string().contains("ssd"), "{a}");
    let listed = s.json(&["aggregate", "list", "--long"]);
    assert!(listed.to_string().contains("cg-fast"), "{listed}");
    let zones = s.json(&["availability", "zone", "list", "--compute"]);
    assert!(zones.to_string().contains("cg-az1"), "{zones}");
    let long = s.json(&["availability", "zone", "list", "--compute", "--long"]);
    assert!(
        long.to_string().contains(&host) && long.to_string().contains("nova-compute"),
        "{long}"
    );

    // The host's hypervisor, by name, and the sums over all hosts.
    let hv = s.json(&["hypervisor", "show", &host]);
    assert_eq!(hv["hypervisor_hostname"], host.as_str(), "{hv}");
    let stats = s.json(&["hypervisor", "stats", "show"]);
    assert_eq!(stats["count"], 1, "{stats}");

    // A member sees the zone but cannot touch aggregates.
    s.json(&["project", "create", "cg-demo"]);
    s.json(&[
        "user",
        "create",
        "--password",
        "pw",
        "--project",
        "cg-demo",
        "cg-demo",
    ]);
    assert!(s
        .openstack(&[
            "role",
            "add",
            "--user",
            "cg-demo",
            "--project",
            "cg-demo",
            "member"
        ])
        .status
        .success());
    let demo = s.env_of("cg-demo", "pw", "cg-demo");
    let err = fails_as(&demo, &["aggregate", "create", "cg-mine"]);
    assert!(err.contains("403") || err.contains("Policy"), "{err}");
    let zones = json_as(&demo, &["availability", "zone", "list", "--compute"]);
    assert!(zones.to_string().contains("cg-az1"), "{zones}");

    // The scheduler: the flavor's aggregate spec, the zone asked for.
    s.json(&[
        "flavor",
        "create",
        "--vcpus",
        "1",
        "--ram",
        "64",
        "--disk",
        "1",
        "--property",
        "aggregate_instance_extra_specs:ssd=true",
        "cg.ssd",
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
        "cg-img",
    ]);
    let create = |name: &str| {
        s.json(&[
            "server",
            "create",
            "--flavor",
            "cg.ssd",
            "--image",
            "cg-img",
            "--nic",
            "none",
            "--availability-zone",
            "cg-az1",
            name,
        ])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let on = create("cg-vm1");
    let shown = settled(&s, &on);
    assert_eq!(shown["status"], "ACTIVE", "{shown}");
    assert_eq!(shown["OS-EXT-AZ:availability_zone"], "cg-az1", "{shown}");
    assert_eq!(shown["OS-EXT-SRV-ATTR:host"], host.as_str(), "{shown}");
    // Renamed with a description (PUT /servers/{id}).
    let set = s.openstack(&[
        "server",
        "set",
        "--name",
        "cg-vm1b",
        "--description",
        "web",
        &on,
    ]);
    assert!(set.status.success(), "{set:?}");
    let shown = s.json(&["server", "show", &on]);
    assert_eq!(shown["name"], "cg-vm1b", "{shown}");

    // Tags on it (2.26): set, list by tag, unset.
    let set = s.openstack(&["server", "set", "--tag", "cg-blue", &on]);
    assert!(set.status.success(), "{set:?}");
    let tagged = s.json(&["server", "list", "--tags", "cg-blue"]);
    assert!(tagged.to_string().contains(&on), "{tagged}");
    let unset = s.openstack(&["server", "unset", "--tag", "cg-blue", &on]);
    assert!(unset.status.success(), "{unset:?}");
    let tagged = s.json(&["server", "list", "--tags", "cg-blue"]);
    assert!(!tagged.to_string().contains(&on), "{tagged}");

    let err = s.fails(&[
        "server",
        "create",
        "--flavor",
        "cg.ssd",
        "--image",
        "cg-img",
        "--nic",
        "none",
        "--availability-zone",
        "cg-nowhere",
        "cg-vm0",
    ]);
    assert!(err.contains("availability zone"), "{err}");

    let set = s.openstack(&["aggregate", "set", "--property", "ssd=false", "cg-fast"]);
    assert!(set.status.success(), "{set:?}");
    let off = create("cg-vm2");
    let shown = settled(&s, &off);
    assert_eq!(shown["status"], "ERROR", "{shown}");
    assert!(
        shown["fault"]
            .to_string()
            .contains("No valid host was found"),
        "{shown}"
    );

    for id in [&on, &off] {
        assert!(s
            .openstack(&["server", "delete", "--wait", id])
            .status
            .success());
    }
    let err = s.fails(&["aggregate", "delete", "cg-fast"]);
    assert!(err.contains("not empty"), "{err}");
    let a = s.json(&["aggregate", "remove", "host", "cg-fast", &host]);
    assert!(!a["hosts"].to_string().contains(&host), "{a}");
    assert!(s
        .openstack(&["aggregate", "delete", "cg-fast"])
        .status
        .success());
    let listed = s.json(&["aggregate", "list"]);
    assert!(!listed.to_string().contains("cg-fast"), "{listed}");
}
