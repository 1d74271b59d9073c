//! A remote compute host: `weft serve` (its own in-process host `ra-ctrl`,
//! fake driver) and a second host, `weft agent --compute-driver fake --host
//! ra-remote`, joining it over HTTP. The remote host registers its provider
//! and heartbeats (`openstack compute service list` shows it up); the
//! in-process host has no room, so `openstack server create --wait` lands on it
//! and goes ACTIVE: the remote agent made the port with the user's network
//! token and bound it to its own host with the service's, and placement
//! holds the claim on its provider. Delete removes the server, its port and
//! its allocation. Without the agent (stopped) its host goes down. A project
//! member may not speak the agent protocol (403).
//!
//! Needs python-openstackclient (scripts/install-deps.sh), curl and qemu-img.

mod remote_agent_util;
mod serve_util;

use remote_agent_util::{state_of, wait_for, Agent};
use serde_json::Value;
use serve_util::Serve;
use std::process::{Command, Stdio};

/// The fake remote host this test runs (ra-remote, 8 vCPUs, 8 GiB).
fn start_agent(s: &Serve) -> Agent {
    remote_agent_util::start_agent(
        s,
        "ra-remote",
        "fake",
        &["--fake-host-vcpus", "8", "--fake-host-memory-mb", "8192"],
    )
}

fn agent_log(s: &Serve) -> String {
    remote_agent_util::agent_log(s, "ra-remote")
}

/// curl METHOD URL with `token`: (status, JSON body).
fn curl(token: &str, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-m", "30", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .args(["-H", "OpenStack-API-Version: placement 1.36"]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c.arg(url).stdout(Stdio::piped()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (b, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(b).unwrap_or(Value::Null),
    )
}

#[test]
fn a_remote_agent_builds_and_tears_down_a_server() {
    let s = Serve::start(
        "ra-remote",
        // The in-process host has no room (128 MiB, 512 reserved): the
        // server must land on the remote one.
        &[
            "--compute-driver",
            "fake",
            "--host",
            "ra-ctrl",
            "--fake-host-memory-mb",
            "128",
        ],
    );
    let base = s.env["OS_AUTH_URL"]
        .trim_end_matches('/')
        .trim_end_matches("/v3")
        .trim_end_matches("/identity")
        .to_string();
    let token = s.json(&["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();

    let agent = start_agent(&s);
    wait_for("the remote host to come up", 60, || {
        state_of(&s, "ra-remote").as_deref() == Some("up")
    });
    let img = s.dir.join("img.raw");
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
        "ra-img",
    ]);
    s.json(&[
        "flavor", "create", "--id", "ra.one", "--vcpus", "1", "--ram", "256", "--disk", "1",
        "ra.one",
    ]);
    s.json(&["network", "create", "ra-net"]);
    s.json(&[
        "subnet",
        "create",
        "--network",
        "ra-net",
        "--subnet-range",
        "10.93.0.0/24",
        "ra-sub",
    ]);
    let srv = s.json(&[
        "server",
        "create",
        "--image",
        "ra-img",
        "--flavor",
        "ra.one",
        "--network",
        "ra-net",
        "--wait",
        "ra-s1",
    ]);
    let id = srv["id"].as_str().unwrap().to_string();
    assert_eq!(srv["status"], "ACTIVE", "{srv}\n{}", agent_log(&s));
    assert_eq!(srv["OS-EXT-SRV-ATTR:host"], "ra-remote", "{srv}");
    let addrs = srv["addresses"].to_string();
    assert!(
        addrs.contains("10.93.0."),
        "addresses from the port: {addrs}"
    );

    // The port: made for the server, bound to the remote host.
    let ports = s.json(&["port", "list", "--device-id", &id, "--long"]);
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let port_id = ports[0]["ID"].as_str().unwrap().to_string();
    let port = s.json(&["port", "show", &port_id]);
    assert_eq!(port["binding_host_id"], "ra-remote", "{port}");
    assert_eq!(port["device_owner"], "compute:nova", "{port}");

    // Placement holds the claim on the remote host's provider.
    let (st, rps) = curl(
        &token,
        "GET",
        &format!("{base}/placement/resource_providers?name=ra-remote"),
        None,
    );
    assert_eq!(st, 200, "{rps}");
    let rp = rps["resource_providers"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, alloc) = curl(
        &token,
        "GET",
        &format!("{base}/placement/allocations/{id}"),
        None,
    );
    assert_eq!(alloc["allocations"][&rp]["resources"]["VCPU"], 1, "{alloc}");

    // A project member may not speak the agent protocol.
    s.json(&["user", "create", "--password", "ra-pw", "ra-member"]);
    let out = s.openstack(&[
        "role",
        "add",
        "--user",
        "ra-member",
        "--project",
        "admin",
        "member",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let member = serve_util::json_as(
        &s.env_of("ra-member", "ra-pw", "admin"),
        &["token", "issue"],
    );
    let (st, body) = curl(
        member["id"].as_str().unwrap(),
        "POST",
        &format!("{base}/compute/agent/v1/hosts/ra-remote/servers/{id}/token"),
        Some(r#"{"audience": "image", "for_user": true}"#),
    );
    assert_eq!(st, 403, "{body}");
    // Nor may the admin mint a token for a server that is not building.
    let (st, body) = curl(
        &token,
        "POST",
        &format!("{base}/compute/agent/v1/hosts/ra-remote/servers/{id}/token"),
        Some(r#"{"audience": "image", "for_user": true}"#),
    );
    assert_eq!(st, 409, "{body}");

    // Delete: the agent tears it down, ctrl releases the rest.
    let out = s.openstack(&["server", "delete", "--wait", &id]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent_log(&s)
    );
    let ports = s.json(&["port", "list", "--device-id", &id]);
    assert_eq!(ports.as_array().unwrap().len(), 0, "{ports}");
    let (_, alloc) = curl(
        &token,
        "GET",
        &format!("{base}/placement/allocations/{id}"),
        None,
    );
    assert_eq!(alloc["allocations"], serde_json::json!({}), "{alloc}");
    assert!(agent_log(&s).contains("compute host registered"));

    // No agent, no heartbeats: the host goes down (after Nova's 60 s).
    drop(agent);
    wait_for("the remote host to go down", 90, || {
        state_of(&s, "ra-remote").as_deref() == Some("down")
    });
}
