//! End to end, as root: two `weft serve` replicas on one PostgreSQL database
//! serve one cloud, driven by the real `openstack` CLI (issue 11):
//! - a project, user, network and port created through replica A are listed
//!   through replica B, and a token issued by A validates on B;
//! - `weft agent --ctrl A,B` wires two VMs (namespaces) and keeps them
//!   wired when A is killed (-9): B takes over, a port created through B
//!   is wired too, and the VMs still ping each other;
//! - kill -9 of A in the middle of 200 port creates loses no port A
//!   acknowledged, and B keeps serving.
//!
//! Replicas of one cloud share one public URL (the catalog names one
//! address per service): here a small TCP load balancer in front of both,
//! pinned to one replica at a time and failing over when it refuses, as
//! haproxy would. Names start with `wrep`.

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod netlab;
use netlab::{must, openrc, openstack_bin, ping, plug_vm, run, wait_for, Lab};

const PORT_A: u16 = 18941;
const PORT_B: u16 = 18942;
const PORT_LB: u16 = 18940;
const PW: &str = "wrep-secret";

/// The load balancer: connections go to the pinned backend, or to the other
/// one when the pinned one refuses.
struct Lb {
    pinned: Arc<std::sync::atomic::AtomicUsize>,
}

impl Lb {
    fn start(backends: [u16; 2]) -> Lb {
        let pinned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let l = std::net::TcpListener::bind(("127.0.0.1", PORT_LB)).unwrap();
        let p = pinned.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let first = p.load(Ordering::Relaxed);
                let server = [first, 1 - first]
                    .iter()
                    .find_map(|i| std::net::TcpStream::connect(("127.0.0.1", backends[*i])).ok());
                let Some(server) = server else { continue };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Lb { pinned }
    }

    /// Sends new connections to replica `i` (0 = A, 1 = B).
    fn pin(&self, i: usize) {
        self.pinned.store(i, Ordering::Relaxed);
    }
}

fn serve(lab: &Lab, name: &str, port: u16, db: &str) -> Child {
    let state = lab.dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(lab.dir.join(format!("{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("serve")
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--database", db])
        .args(["--public-url", &format!("http://127.0.0.1:{PORT_LB}")])
        .env("WEFT_ADMIN_PASSWORD", PW)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The real CLI against one replica (its openrc).
fn os(env: &HashMap<String, String>, args: &[&str]) -> Result<Value, String> {
    let o = run(Command::new(openstack_bin()).args(args).envs(env));
    if !o.status.success() {
        return Err(format!(
            "openstack {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let s = String::from_utf8_lossy(&o.stdout);
    Ok(serde_json::from_str(&s).unwrap_or(Value::String(s.trim().to_string())))
}

fn os_ok(env: &HashMap<String, String>, args: &[&str]) -> Value {
    os(env, args).unwrap_or_else(|e| panic!("{e}"))
}

/// curl, returning (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let o = run(Command::new("curl")
        .args(["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn port_status(env: &HashMap<String, String>, id: &str) -> String {
    os(env, &["port", "show", id, "-f", "value", "-c", "status"])
        .map(|v| v.as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn two_replicas_on_postgresql_serve_one_cloud() {
    let mut lab = Lab::new("wrep", &["wrep-vm1", "wrep-vm2", "wrep-vm3"]);
    let db = weft_store_db();
    let lb = Lb::start([PORT_A, PORT_B]);
    let a = serve(&lab, "a", PORT_A, &db.url);
    let b = serve(&lab, "b", PORT_B, &db.url);
    lab.children.push(b);
    let mut a = Some(a);
    let (ra, rb) = (
        lab.dir.join("a/admin-openrc"),
        lab.dir.join("b/admin-openrc"),
    );
    wait_for("both replicas' admin-openrc", 60, || {
        ra.exists() && rb.exists()
    });
    // One cloud, one public URL: the CLI goes through the load balancer,
    // pinned to A for writes and to B for reads.
    let env = openrc(&ra);
    assert_eq!(env, openrc(&rb));
    let (env_a, env_b) = (env.clone(), env);
    let via = |i: usize| lb.pin(i);
    via(1);
    wait_for("replica B", 60, || {
        os(&env_b, &["token", "issue", "-f", "json"]).is_ok()
    });
    via(0);
    wait_for("replica A", 60, || {
        os(&env_a, &["token", "issue", "-f", "json"]).is_ok()
    });

    // Identity and networking written through A, read through B.
    os_ok(&env_a, &["project", "create", "wrep-proj", "-f", "json"]);
    os_ok(
        &env_a,
        &[
            "user",
            "create",
            "wrep-user",
            "--password",
            "pw-wrep",
            "--project",
            "wrep-proj",
            "-f",
            "json",
        ],
    );
    os_ok(
        &env_a,
        &[
            "role",
            "add",
            "--user",
            "wrep-user",
            "--project",
            "wrep-proj",
            "member",
        ],
    );
    let net = os_ok(&env_a, &["network", "create", "wrep-net", "-f", "json"]);
    let net_id = net["id"].as_str().unwrap().to_string();
    os_ok(
        &env_a,
        &[
            "subnet",
            "create",
            "--network",
            "wrep-net",
            "--subnet-range",
            "10.77.0.0/24",
            "wrep-sub",
            "-f",
            "json",
        ],
    );
    let p1 = os_ok(
        &env_a,
        &[
            "port",
            "create",
            "--network",
            "wrep-net",
            "--host",
            "wrep-host",
            "wrep-p1",
            "-f",
            "json",
        ],
    );
    via(1);
    assert!(names(&os_ok(&env_b, &["project", "list", "-f", "json"])).contains(&"wrep-proj".into()));
    assert!(names(&os_ok(&env_b, &["user", "list", "-f", "json"])).contains(&"wrep-user".into()));
    assert!(names(&os_ok(&env_b, &["network", "list", "-f", "json"])).contains(&"wrep-net".into()));
    assert!(names(&os_ok(&env_b, &["port", "list", "-f", "json"])).contains(&"wrep-p1".into()));
    // The member logs in through B with the password set through A.
    let mut member_b = env_b.clone();
    member_b.insert("OS_USERNAME".into(), "wrep-user".into());
    member_b.insert("OS_PASSWORD".into(), "pw-wrep".into());
    member_b.insert("OS_PROJECT_NAME".into(), "wrep-proj".into());
    os_ok(&member_b, &["token", "issue", "-f", "json"]);

    // A token issued by A validates on B (shared keys, no database round trip).
    via(0);
    let tok = os_ok(&env_a, &["token", "issue", "-f", "json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = curl(&[
        "-H",
        &format!("X-Auth-Token: {tok}"),
        "-H",
        &format!("X-Subject-Token: {tok}"),
        &format!("http://127.0.0.1:{PORT_B}/identity/v3/auth/tokens"),
    ]);
    assert_eq!(code, 200, "B validating A's token: {body}");

    // An agent following both replicas wires two VMs on its host.
    std::fs::write(
        lab.dir.join("h.toml"),
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n",
            lab.dir.join("h.sock").display()
        ),
    )
    .unwrap();
    let alog = std::fs::File::create(lab.dir.join("agent.log")).unwrap();
    let agent = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "agent",
            "--ctrl",
            &format!("http://127.0.0.1:{PORT_A},http://127.0.0.1:{PORT_B}"),
        ])
        .args(["--host", "wrep-host", "--config"])
        .arg(lab.dir.join("h.toml"))
        .envs(&env_a)
        .stdout(Stdio::null())
        .stderr(alog)
        .spawn()
        .unwrap();
    lab.children.push(agent);
    let p2 = os_ok(
        &env_a,
        &[
            "port",
            "create",
            "--network",
            "wrep-net",
            "--host",
            "wrep-host",
            "wrep-p2",
            "-f",
            "json",
        ],
    );
    via(1);
    // Nova-style plugs in the root namespace: the agent attaches tap<id> netdevs.
    plug_root(&p1, "wrep-vm1");
    plug_root(&p2, "wrep-vm2");
    let (id1, id2) = (p1["id"].as_str().unwrap(), p2["id"].as_str().unwrap());
    wait_for("both ports ACTIVE", 60, || {
        port_status(&env_b, id1) == "ACTIVE" && port_status(&env_b, id2) == "ACTIVE"
    });
    // The agent shows in `openstack network agent list`, alive, on either replica.
    let agents = os_ok(&env_b, &["network", "agent", "list", "-f", "json"]);
    let row = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Host"] == "wrep-host")
        .unwrap_or_else(|| panic!("no agent for wrep-host: {agents}"))
        .clone();
    assert_eq!(row["Alive"], true, "{row}");
    assert_eq!(row["State"], true, "{row}");
    let ip2 = p2["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("vm1 -> vm2 through the switch", 30, || {
        ping("wrep-vm1", &ip2)
    });

    // 200 port creates through A; A dies (kill -9) in the middle.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tok_a = tok.clone();
    let creator = {
        let acked = acked.clone();
        let stop = stop.clone();
        let net_id = net_id.clone();
        std::thread::spawn(move || {
            let mut refused = 0;
            for i in 0..200 {
                if stop.load(Ordering::Relaxed) && refused > 3 {
                    break;
                }
                let body =
                    format!(r#"{{"port": {{"network_id": "{net_id}", "name": "wrep-bulk-{i}"}}}}"#);
                let (code, text) = curl(&[
                    "-X",
                    "POST",
                    "-H",
                    &format!("X-Auth-Token: {tok_a}"),
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    &body,
                    &format!("http://127.0.0.1:{PORT_A}/networking/v2.0/ports"),
                ]);
                if code == 201 {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .push(v["port"]["id"].as_str().unwrap().to_string());
                } else {
                    refused += 1;
                }
            }
        })
    };
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 80 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "creates through A stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut a_child = a.take().unwrap();
    a_child.kill().unwrap(); // SIGKILL
    a_child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    creator.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    // Whatever the pin, A is gone: every CLI call from here on lands on B.
    via(0);
    assert!(
        acked.len() >= 80 && acked.len() < 200,
        "A died mid-run: {} acknowledged",
        acked.len()
    );
    let listed = os_ok(
        &env_b,
        &["port", "list", "--network", &net_id, "-f", "json"],
    );
    let listed: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ID"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !listed.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "ports acknowledged by A but missing on B: {lost:?}"
    );

    // B keeps serving; the agent fails over to it and wires a new port.
    let p3 = os_ok(
        &env_b,
        &[
            "port",
            "create",
            "--network",
            "wrep-net",
            "--host",
            "wrep-host",
            "wrep-p3",
            "-f",
            "json",
        ],
    );
    plug_root(&p3, "wrep-vm3");
    let id3 = p3["id"].as_str().unwrap();
    wait_for("the port created through B ACTIVE", 60, || {
        port_status(&env_b, id3) == "ACTIVE"
    });
    let ip3 = p3["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("vm1 -> vm3 after the failover", 30, || {
        ping("wrep-vm1", &ip3)
    });
    assert!(
        ping("wrep-vm1", &ip2),
        "vm1 -> vm2 lost its wiring when A died"
    );
    assert_eq!(port_status(&env_b, id1), "ACTIVE");
    let agent_log = std::fs::read_to_string(lab.dir.join("agent.log")).unwrap_or_default();
    assert!(agent_log.contains("failed over"), "agent log: {agent_log}");
}

/// `plug_vm` with the tap end in the root namespace, where the agent runs.
fn plug_root(port: &Value, vm: &str) {
    let id = port["id"].as_str().unwrap();
    let tap = format!("tap{}", &id[..11]);
    let _ = Command::new("ip").args(["link", "del", &tap]).output();
    let mac = port["mac_address"].as_str().unwrap();
    let ip = port["fixed_ips"][0]["ip_address"].as_str().unwrap();
    must(
        None,
        &[
            "ip", "link", "add", &tap, "type", "veth", "peer", "name", "eth0", "netns", vm,
        ],
    );
    must(None, &["ip", "link", "set", &tap, "up"]);
    must(Some(vm), &["ip", "link", "set", "eth0", "address", mac]);
    must(
        Some(vm),
        &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
    );
    must(Some(vm), &["ip", "link", "set", "eth0", "up"]);
    let _ = plug_vm; // the namespaced variant, shared with the other e2e tests
}

/// A fresh database on the local PostgreSQL (scripts/postgres.sh), dropped at the end.
fn weft_store_db() -> weft_store::testing::TestDatabase {
    weft_store::testing::TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)")
}
