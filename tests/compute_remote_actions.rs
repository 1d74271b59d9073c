//! Every server action on a REMOTE host: `weft serve` (in-process host
//! `ro-ctrl` with no room, fake driver) and `weft agent --compute-driver
//! fake --host ro-remote`. A server built there goes through stop, start,
//! soft and hard reboot, pause/unpause, suspend/resume, rebuild, resize +
//! confirm, resize + revert, createImage and os-interface attach/detach,
//! each with the real `openstack` CLI; each ends in Nova's vm_state and
//! power_state with its instance action's host event a Success, on the
//! remote host. Console output comes from the remote host's driver (the
//! fake's boot lines count the reboots the agent did). With the agent gone
//! and the host down, actions are Nova's 409, at once.
//!
//! Needs python-openstackclient (scripts/install-deps.sh), curl and qemu-img.

mod remote_agent_util;
mod serve_util;

use remote_agent_util::{ctrl_url, state_of, wait_for, Agent};
use serde_json::Value;
use serve_util::Serve;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fake remote host this test runs (ro-remote, 8 vCPUs, 8 GiB).
fn start_agent(s: &Serve) -> Agent {
    remote_agent_util::start_agent(
        s,
        "ro-remote",
        "fake",
        &["--fake-host-vcpus", "8", "--fake-host-memory-mb", "8192"],
    )
}

fn agent_log(s: &Serve) -> String {
    remote_agent_util::agent_log(s, "ro-remote")
}

/// GET `path` of the compute API as the admin (microversion 2.62: events
/// with their host).
fn compute_get(s: &Serve, token: &str, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "-m", "30"])
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .args(["-H", "OpenStack-API-Version: compute 2.62"])
        .arg(format!("{}/compute/v2.1{path}", ctrl_url(s)))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The server's (status, vm_state, power_state, task_state).
fn states(s: &Serve, id: &str) -> (String, String, String, String) {
    let v = s.json(&["server", "show", id]);
    // -f json gives power_state as Nova's number.
    let f = |k: &str| match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        x => x.to_string(),
    };
    (
        f("status"),
        f("OS-EXT-STS:vm_state"),
        f("OS-EXT-STS:power_state"),
        f("OS-EXT-STS:task_state"),
    )
}

/// Runs `openstack ARGS`, then waits for the server to settle in `status`
/// with `vm_state`/`power_state` and no task; then checks the latest
/// instance action `action` has the host event `event`, a Success on
/// ro-remote.
#[allow(clippy::too_many_arguments)]
fn act(
    s: &Serve,
    token: &str,
    id: &str,
    args: &[&str],
    want: (&str, &str, &str),
    action: &str,
    event: &str,
) {
    let out = s.openstack(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = states(s, id);
        if last.0 == want.0 && last.1 == want.1 && last.2 == want.2 && last.3.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?}: server stays {last:?}, want {want:?}\n{}",
            agent_log(s)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let list = compute_get(s, token, &format!("/servers/{id}/os-instance-actions"));
    let req = list["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action)
        .max_by_key(|a| a["start_time"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no {action} action: {list}"))["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = compute_get(
        s,
        token,
        &format!("/servers/{id}/os-instance-actions/{req}"),
    );
    let events = a["instanceAction"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ev = events
        .iter()
        .find(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("{action}: no event {event}: {a}"));
    assert_eq!(ev["result"], "Success", "{action}: {a}");
    assert_eq!(ev["host"], "ro-remote", "{action}: {a}");
    assert!(ev["finish_time"].is_string(), "{action}: {a}");
}

#[test]
fn every_action_on_a_remote_server() {
    let s = Serve::start(
        "ro-actions",
        &[
            "--compute-driver",
            "fake",
            "--host",
            "ro-ctrl",
            "--fake-host-memory-mb",
            "128",
        ],
    );
    let token = s.json(&["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = start_agent(&s);
    wait_for("the remote host to come up", 60, || {
        state_of(&s, "ro-remote").as_deref() == Some("up")
    });
    for name in ["ro-img", "ro-img2"] {
        let img = s.dir.join(format!("{name}.raw"));
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
            name,
        ]);
    }
    for (f, ram) in [("ro.one", "256"), ("ro.two", "512")] {
        s.json(&[
            "flavor", "create", "--id", f, "--vcpus", "1", "--ram", ram, "--disk", "1", f,
        ]);
    }
    for (net, cidr) in [("ro-net", "10.94.0.0/24"), ("ro-net2", "10.95.0.0/24")] {
        s.json(&["network", "create", net]);
        s.json(&[
            "subnet",
            "create",
            "--network",
            net,
            "--subnet-range",
            cidr,
            &format!("{net}-sub"),
        ]);
    }
    let srv = s.json(&[
        "server",
        "create",
        "--image",
        "ro-img",
        "--flavor",
        "ro.one",
        "--network",
        "ro-net",
        "--wait",
        "ro-s1",
    ]);
    let id = srv["id"].as_str().unwrap().to_string();
    assert_eq!(srv["status"], "ACTIVE", "{srv}\n{}", agent_log(&s));
    assert_eq!(srv["OS-EXT-SRV-ATTR:host"], "ro-remote", "{srv}");
    let id = id.as_str();

    let run = ("ACTIVE", "active", "1");
    act(
        &s,
        &token,
        id,
        &["server", "stop", id],
        ("SHUTOFF", "stopped", "4"),
        "stop",
        "compute_stop_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "start", id],
        run,
        "start",
        "compute_start_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "reboot", "--soft", id],
        run,
        "reboot",
        "compute_reboot_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "reboot", "--hard", id],
        run,
        "reboot",
        "compute_reboot_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "pause", id],
        ("PAUSED", "paused", "3"),
        "pause",
        "compute_pause_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "unpause", id],
        run,
        "unpause",
        "compute_unpause_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "suspend", id],
        ("SUSPENDED", "suspended", "7"),
        "suspend",
        "compute_suspend_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "resume", id],
        run,
        "resume",
        "compute_resume_instance",
    );

    // Console output is the remote host's: the fake driver's boot lines,
    // one per boot it did (spawn, start, two reboots).
    let out = s.openstack(&["console", "log", "show", id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("fake weft-{id} boot 4")), "{text}");
    let out = s.openstack(&["console", "log", "show", "--lines", "1", id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.trim(), format!("fake weft-{id} boot 4"), "{text}");

    act(
        &s,
        &token,
        id,
        &["server", "rebuild", "--image", "ro-img2", id],
        run,
        "rebuild",
        "compute_rebuild_instance",
    );
    let img2 = s.json(&["image", "show", "ro-img2"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s.json(&["server", "show", id])["image"]
        .to_string()
        .contains(&img2));

    let verify = ("VERIFY_RESIZE", "resized", "1");
    act(
        &s,
        &token,
        id,
        &["server", "resize", "--flavor", "ro.two", id],
        verify,
        "resize",
        "compute_resize_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "resize", "confirm", id],
        run,
        "confirmResize",
        "compute_confirm_resize",
    );
    let flavor = s.json(&["server", "show", id])["flavor"].to_string();
    assert!(flavor.contains("ro.two"), "{flavor}");
    act(
        &s,
        &token,
        id,
        &["server", "resize", "--flavor", "ro.one", id],
        verify,
        "resize",
        "compute_resize_instance",
    );
    act(
        &s,
        &token,
        id,
        &["server", "resize", "revert", id],
        run,
        "revertResize",
        "compute_revert_resize",
    );
    let flavor = s.json(&["server", "show", id])["flavor"].to_string();
    assert!(
        flavor.contains("ro.two"),
        "reverted to the old flavor: {flavor}"
    );

    // createImage: the agent uploads the flattened root disk as the user.
    let snap = s.json(&[
        "server", "image", "create", "--wait", "--name", "ro-snap", id,
    ]);
    assert_eq!(snap["status"], "active", "{snap}\n{}", agent_log(&s));
    wait_for("createImage to end", 60, || states(&s, id).3.is_empty());
    act(
        &s,
        &token,
        id,
        &["server", "show", id],
        run,
        "createImage",
        "compute_snapshot_instance",
    );

    // os-interface: an unknown port is Nova's 404 before the host is asked;
    // a port on ro-net2 is made and plugged by the agent.
    let out = Command::new("curl")
        .args(["-sS", "-m", "30", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            r#"{"interfaceAttachment": {"port_id": "00000000-0000-4000-8000-00000000dead"}}"#,
        ])
        .arg(format!(
            "{}/compute/v2.1/servers/{id}/os-interface",
            ctrl_url(&s)
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("404") && text.contains("could not be found"),
        "{text}"
    );
    let out = s.openstack(&["server", "add", "network", id, "ro-net2"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent_log(&s)
    );
    let ports = s.json(&["port", "list", "--device-id", id, "--network", "ro-net2"]);
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    let port = ports[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        s.json(&["port", "show", &port])["binding_host_id"],
        "ro-remote"
    );
    let addrs = s.json(&["server", "show", id])["addresses"].to_string();
    assert!(addrs.contains("10.95.0."), "{addrs}");
    let out = s.openstack(&["server", "remove", "port", id, &port]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent_log(&s)
    );
    let addrs = s.json(&["server", "show", id])["addresses"].to_string();
    assert!(!addrs.contains("10.95.0."), "{addrs}");
    let ports = s.json(&["port", "list", "--device-id", id, "--network", "ro-net2"]);
    assert_eq!(
        ports.as_array().unwrap().len(),
        0,
        "made for the attach, deleted: {ports}"
    );

    // The host down: actions are refused at once with Nova's 409.
    drop(agent);
    wait_for("the remote host to go down", 90, || {
        state_of(&s, "ro-remote").as_deref() == Some("down")
    });
    let t = Instant::now();
    let err = s.fails(&["server", "stop", id]);
    assert!(
        err.contains("Service is unavailable at this time") && err.contains("409"),
        "{err}"
    );
    let err = s.fails(&["console", "log", "show", id]);
    assert!(err.contains("Service is unavailable at this time"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "refused at once");
    assert_eq!(states(&s, id).0, "ACTIVE");
}
