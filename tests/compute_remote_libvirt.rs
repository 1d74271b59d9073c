//! A remote compute host with real guests: `weft serve` (its own host
//! `rl-ctrl` has no room) and `weft agent --compute-driver libvirt --host
//! rl-remote` with its own switch. `openstack server create --wait` boots
//! the whole-disk test image (scripts/guest-image.sh) twice on the remote
//! host, under QEMU through libvirt: ACTIVE, each guest's domain on the
//! tap named after its port, its DHCP lease (address, router, name)
//! answered by the agent's switch, and a ping of the other guest (its user
//! data) on its serial console.
//!
//! Then the agent is killed (-9) and one server deleted meanwhile: ctrl
//! deletes it alone once the host is down (its ports and claim released
//! by ctrl), while its domain still runs on the host. The restarted agent
//! reconciles before taking work: that orphan domain and its disks go; the
//! other guest's domain is left running, not started again (the same
//! libvirt domain id). Deleting it leaves no domain, disk, tap, port or
//! allocation.
//!
//! Needs root, libvirt and the openstack CLI (scripts/install-deps.sh); the
//! test runs scripts/libvirt.sh and scripts/guest-image.sh (both
//! idempotent) and fails, never skips, when they cannot work.

mod guest_util;
mod remote_agent_util;
mod serve_util;

use guest_util::{ping_peer_user_data, repo, script, virsh};
use remote_agent_util::{agent_log, start_agent, state_of, wait_for};
use serde_json::Value;
use serve_util::Serve;
use std::path::Path;

const HOST: &str = "rl-remote";

/// The running domain's id ("-" or empty when not running).
fn domid(server: &str) -> String {
    virsh(&["domid", &format!("weft-{server}")])
}

fn defined(server: &str) -> bool {
    virsh(&["list", "--all", "--name"])
        .lines()
        .any(|l| l.trim() == format!("weft-{server}"))
}

/// Destroys the test's domains when dropped (a failed run leaks none).
struct Domains(Vec<String>);

impl Drop for Domains {
    fn drop(&mut self) {
        for id in &self.0 {
            let d = format!("weft-{id}");
            virsh(&["destroy", &d]);
            virsh(&["undefine", "--nvram", &d]);
            virsh(&["undefine", &d]);
        }
    }
}

fn console(s: &Serve, id: &str) -> String {
    let path = s
        .dir
        .join(HOST)
        .join("instances")
        .join(id)
        .join("console.log");
    std::fs::read_to_string(path).unwrap_or_default()
}

fn ports_of(s: &Serve, id: &str) -> Value {
    s.json(&["port", "list", "--device-id", id])
}

#[test]
fn a_remote_libvirt_host_runs_guests_and_reconciles_after_a_crash() {
    script("libvirt.sh");
    script("guest-image.sh");
    let image = repo().join("target/guest/weft-guest.qcow2");
    assert!(image.exists(), "{} missing", image.display());
    let s = Serve::start(
        "rl-libvirt",
        &[
            "--compute-driver",
            "fake",
            "--host",
            "rl-ctrl",
            "--fake-host-memory-mb",
            "128",
        ],
    );
    let agent = start_agent(&s, HOST, "libvirt", &[]);
    wait_for("the remote host to come up", 90, || {
        state_of(&s, HOST).as_deref() == Some("up")
    });
    s.json(&[
        "image",
        "create",
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--file",
        image.to_str().unwrap(),
        "rl-guest",
    ]);
    s.json(&[
        "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "rl.tiny",
    ]);
    s.json(&["network", "create", "rl-net"]);
    s.json(&[
        "subnet",
        "create",
        "--network",
        "rl-net",
        "--subnet-range",
        "10.147.0.0/24",
        "rl-sub",
    ]);

    // Two guests, each with user data that pings the other.
    let ips = ["10.147.0.21", "10.147.0.22"];
    let names = ["rl-vm1", "rl-vm2"];
    let mut made = Domains(Vec::new());
    for (i, name) in names.iter().enumerate() {
        let ud = s.dir.join(format!("{name}.sh"));
        std::fs::write(&ud, ping_peer_user_data(ips[1 - i])).unwrap();
        let nic = format!("net-id=rl-net,v4-fixed-ip={}", ips[i]);
        let srv = s.json(&[
            "server",
            "create",
            "--flavor",
            "rl.tiny",
            "--image",
            "rl-guest",
            "--nic",
            &nic,
            "--user-data",
            ud.to_str().unwrap(),
            "--wait",
            name,
        ]);
        let id = srv["id"].as_str().unwrap().to_string();
        made.0.push(id.clone());
        assert_eq!(srv["status"], "ACTIVE", "{srv}\n{}", agent_log(&s, HOST));
        assert_eq!(srv["OS-EXT-SRV-ATTR:host"], HOST, "{srv}");
        assert!(srv["addresses"].to_string().contains(ips[i]), "{srv}");
    }
    let ids = made.0.clone();

    // Each domain runs on its port's tap, the port bound to the remote host.
    let mut taps = Vec::new();
    for id in &ids {
        assert!(
            defined(id),
            "no domain weft-{id}: {}",
            virsh(&["list", "--all"])
        );
        let ports = ports_of(&s, id);
        let port_id = ports[0]["ID"].as_str().unwrap().to_string();
        let port = s.json(&["port", "show", &port_id]);
        assert_eq!(port["binding_host_id"], HOST, "{port}");
        let tap = format!("tap{}", &port_id[..11]);
        assert!(Path::new("/sys/class/net").join(&tap).exists(), "no {tap}");
        taps.push(tap);
    }

    // The lease from the agent's switch and a ping of the other guest, on
    // each guest's serial console.
    for (i, id) in ids.iter().enumerate() {
        let lease = format!("WEFT-GUEST lease ip={}/24 router=10.147.0.1", ips[i]);
        let hostname = format!("hostname={}", names[i]);
        let ping = format!("WEFT-PING ok {}", ips[1 - i]);
        let mut text = String::new();
        wait_for(
            &format!("{}: lease and ping on its console", names[i]),
            300,
            || {
                text = console(&s, id);
                assert!(!text.contains("WEFT-PING failed"), "{text}");
                text.contains(&lease) && text.contains(&hostname) && text.contains(&ping)
            },
        );
    }
    // Through the API too, when ctrl reaches a remote host's console.
    let out = s.openstack(&["console", "log", "show", &ids[0]]);
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("WEFT-GUEST lease"), "{text}");
    } else {
        eprintln!(
            "console log show on a remote host: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    // kill -9; the second server is deleted while its host is down.
    let (keep, gone) = (ids[0].clone(), ids[1].clone());
    let keep_domid = domid(&keep);
    assert!(
        keep_domid.parse::<u32>().is_ok(),
        "{keep} not running: {keep_domid:?}"
    );
    agent.kill9();
    assert!(s.openstack(&["server", "delete", &gone]).status.success());
    wait_for("ctrl to delete the server of the down host", 180, || {
        let out = s.openstack(&["server", "show", &gone]);
        !out.status.success()
    });
    assert_eq!(state_of(&s, HOST).as_deref(), Some("down"));
    assert_eq!(
        ports_of(&s, &gone),
        serde_json::json!([]),
        "ports released by ctrl"
    );
    assert!(defined(&gone), "the orphan runs on until the host is back");

    // The agent is back: the orphan goes, the other guest stays as it was.
    let earlier = agent_log(&s, HOST).len();
    let agent = start_agent(&s, HOST, "libvirt", &[]);
    wait_for("the agent to reconcile", 90, || {
        agent_log(&s, HOST)[earlier..].contains("compute host reconciled")
    });
    assert!(
        !defined(&gone),
        "orphan domain left: {}",
        agent_log(&s, HOST)
    );
    assert!(!s.dir.join(HOST).join("instances").join(&gone).exists());
    wait_for("the orphan's tap gone", 30, || {
        !Path::new("/sys/class/net").join(&taps[1]).exists()
    });
    assert_eq!(domid(&keep), keep_domid, "the kept guest was started again");
    assert_eq!(s.json(&["server", "show", &keep])["status"], "ACTIVE");
    wait_for("the host up again", 60, || {
        state_of(&s, HOST).as_deref() == Some("up")
    });

    // Delete through the agent: nothing left.
    let out = s.openstack(&["server", "delete", "--wait", &keep]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent_log(&s, HOST)
    );
    assert!(!defined(&keep), "{}", virsh(&["list", "--all"]));
    assert!(!s.dir.join(HOST).join("instances").join(&keep).exists());
    assert_eq!(ports_of(&s, &keep), serde_json::json!([]));
    wait_for("the tap gone", 30, || {
        !Path::new("/sys/class/net").join(&taps[0]).exists()
    });
    let rp = s.json(&["resource", "provider", "list", "--name", HOST]);
    let rp_id = rp[0]["uuid"].as_str().unwrap().to_string();
    let usage = s.json(&["resource", "provider", "usage", "show", &rp_id]);
    assert!(
        usage.as_array().unwrap().iter().all(|u| u["usage"] == 0),
        "allocation kept: {usage}"
    );
    drop(agent);
}
