//! Security groups end to end, as root: `weft serve` in a namespace (`ct-h1`), the real
//! `openstack` CLI, and namespace "VMs" on veths named like Nova's taps that the in-process
//! agent attaches. Real TCP from Python sockets:
//! - `security group rule create --protocol tcp --dst-port 22` lets vm2 open TCP 22 on vm1 but
//!   not 23, and the replies flow; `weft ctl conntrack` lists the connection and its rule;
//! - deleting the rule closes the established connection;
//! - a rule with `--remote-group` follows membership: vm2's port added to the group is admitted,
//!   removed from it is cut, connection included;
//! - vm3's port, with port security disabled, is reachable on every port;
//! - IPv6: a rule without an ethertype is IPv4's (Neutron's default), so TCP 22 over IPv6
//!   opens only once an IPv6 rule (with an IPv6 remote_ip_prefix) admits it, and only from that
//!   prefix; ICMPv6 echo passes once an `ipv6-icmp` rule admits it, while neighbour discovery
//!   passes all along (the firewall's implicit rules); deleting the IPv6 rule cuts the
//!   established IPv6 connection.
//!
//! Names start with `ct`; the API listens on 127.0.0.1:18101 inside `ct-h1`.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

mod netlab;
use netlab::{must, openrc, os_in, plug_vm, sh, wait_for, Lab};

const PORT: u16 = 18101;
const H1: &str = "ct-h1";

fn os(env: &HashMap<String, String>, args: &[&str]) -> Value {
    os_in(H1, env, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Echoes each line back, on every TCP port given, one thread per connection.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
def echo(c):
    with c:
        for line in c.makefile('rb'):
            c.sendall(line)
def accept(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
for p in sys.argv[1:]:
    threading.Thread(target=accept, args=(int(p),), daemon=True).start()
print('listening', flush=True)
sys.stdin.read()
"#;

/// Commands on stdin: `open NAME IP PORT` connects; `echo NAME` sends a line on that connection
/// and waits for it back. Each answers `ok NAME` or `fail NAME reason` (2 s timeouts).
const TCP_CLIENT: &str = r#"
import socket, sys
conns = {}
for line in sys.stdin:
    w = line.split()
    try:
        if w[0] == 'open':
            conns[w[1]] = socket.create_connection((w[2], int(w[3])), timeout=2)
        else:
            c = conns[w[1]]
            c.settimeout(2)
            c.sendall(b'ping\n')
            if c.recv(64) != b'ping\n':
                raise Exception('wrong echo')
        print('ok', w[1], flush=True)
    except Exception as e:
        print('fail', w[1], type(e).__name__, flush=True)
"#;

fn python(ns: &str, script: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-u", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

/// Starts an echo server in `ns` on `ports`; it is killed with the lab.
fn echo_server(lab: &mut Lab, ns: &str, ports: &[&str]) {
    let mut child = python(ns, ECHO_SERVER, ports);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "echo server in {ns}");
    lab.children.push(child);
}

/// A TCP client living in one VM, holding its connections open between commands.
struct Client {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn new(lab: &mut Lab, ns: &str) -> Client {
        let mut child = python(ns, TCP_CLIENT, &[]);
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        lab.children.push(child);
        Client { stdin, stdout }
    }

    fn ask(&mut self, cmd: &str) -> bool {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.starts_with("ok ")
    }

    /// Opens connection `name` to `ip:port` and checks a line goes there and back.
    fn connects(&mut self, name: &str, ip: &str, port: u16) -> bool {
        self.ask(&format!("open {name} {ip} {port}")) && self.echoes(name)
    }

    fn echoes(&mut self, name: &str) -> bool {
        self.ask(&format!("echo {name}"))
    }
}

/// `weft serve` in `ct-h1` with a local-network tenant type; returns the admin's environment.
fn serve(lab: &mut Lab) -> HashMap<String, String> {
    let dir = lab.dir.clone();
    std::fs::write(dir.join("net.toml"), "tenant_network_types = [\"local\"]\n").unwrap();
    std::fs::write(
        dir.join("h1.toml"),
        format!(
            "[switch]\ncontrol_socket = \"{}\"\nconntrack_size = 1024\n",
            dir.join("h1.sock").display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", H1, env!("CARGO_BIN_EXE_weft"), "serve"])
        .arg("--state-dir")
        .arg(&state)
        .args([
            "--listen",
            &format!("127.0.0.1:{PORT}"),
            "--public-url",
            &format!("http://127.0.0.1:{PORT}"),
        ])
        .arg("--network-config")
        .arg(dir.join("net.toml"))
        .arg("--switch-config")
        .arg(dir.join("h1.toml"))
        .args(["--host", "ct-host1"])
        .env("WEFT_ADMIN_PASSWORD", "ct-secret")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.children.push(child);
    wait_for("admin-openrc", 60, || state.join("admin-openrc").exists());
    let env = openrc(&state.join("admin-openrc"));
    wait_for("the API", 60, || {
        os_in(H1, &env, &["token", "issue", "-f", "json"]).is_ok()
    });
    env
}

/// `weft ctl conntrack ARGS` against the switch of `weft serve`, as text.
fn ctl_conntrack(lab: &Lab, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", H1, env!("CARGO_BIN_EXE_weft"), "ctl"])
        .arg("--socket")
        .arg(lab.dir.join("h1.sock"))
        .arg("conntrack")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "weft ctl conntrack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `weft trace` of a TCP SYN from vm2's port to vm1 on `dport`, as text.
fn trace_syn(lab: &Lab, p1: &Value, p2: &Value, dport: u16) -> String {
    let tap2 = format!("tap{}", &p2["id"].as_str().unwrap()[..11]);
    let o = Command::new("ip")
        .args(["netns", "exec", H1, env!("CARGO_BIN_EXE_weft"), "trace"])
        .arg("--socket")
        .arg(lab.dir.join("h1.sock"))
        .arg(format!("in_port={tap2}"))
        .arg(format!("dl_dst={}", p1["mac_address"].as_str().unwrap()))
        .args(["tcp", "nw_src=10.62.0.12", "nw_dst=10.62.0.11"])
        .arg(format!("tp_dst={dport}"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "weft trace: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A port with `ip` on ct-s1 and the IPv6 address whose last group is `ip`'s last octet on
/// ct-s6 (10.62.0.11 -> fd62::11).
fn port(env: &HashMap<String, String>, name: &str, ip: &str, extra: &[&str]) -> Value {
    let fixed = format!("subnet=ct-s1,ip-address={ip}");
    let fixed6 = format!("subnet=ct-s6,ip-address={}", v6(ip));
    let mut args = vec![
        "port",
        "create",
        "--network",
        "ct-n1",
        "--host",
        "ct-host1",
        "--fixed-ip",
        &fixed,
        "--fixed-ip",
        &fixed6,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[name, "-f", "json"]);
    os(env, &args)
}

/// The IPv6 address of the VM with IPv4 address `ip`.
fn v6(ip: &str) -> String {
    format!("fd62::{}", ip.rsplit('.').next().unwrap())
}

/// `ping -6 -c 1` from `ns` to `ip` answered within a second.
fn ping6(ns: &str, ip: &str) -> bool {
    sh(Some(ns), &["ping", "-6", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

#[test]
fn openstack_security_groups_on_namespace_vms() {
    let mut lab = Lab::new("ct", &[H1, "ct-vm1", "ct-vm2", "ct-vm3"]);
    let env = serve(&mut lab);
    os(&env, &["network", "create", "ct-n1", "-f", "json"]);
    os(
        &env,
        &[
            "subnet",
            "create",
            "--network",
            "ct-n1",
            "--subnet-range",
            "10.62.0.0/24",
            "ct-s1",
            "-f",
            "json",
        ],
    );
    os(
        &env,
        &[
            "subnet",
            "create",
            "--network",
            "ct-n1",
            "--ip-version",
            "6",
            "--subnet-range",
            "fd62::/64",
            "ct-s6",
            "-f",
            "json",
        ],
    );
    // vm1's group: new groups come with Neutron's two egress rules; TCP 22 in.
    os(
        &env,
        &["security", "group", "create", "ct-web", "-f", "json"],
    );
    let ssh = os(
        &env,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "ct-web",
            "-f",
            "json",
        ],
    );
    let ssh_id = ssh["id"].as_str().unwrap().to_string();
    // The group whose members vm1 takes anything TCP from (empty for now).
    os(
        &env,
        &["security", "group", "create", "ct-friends", "-f", "json"],
    );
    os(
        &env,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--remote-group",
            "ct-friends",
            "ct-web",
            "-f",
            "json",
        ],
    );
    let p1 = port(&env, "ct-p1", "10.62.0.11", &["--security-group", "ct-web"]);
    let p2 = port(&env, "ct-p2", "10.62.0.12", &[]);
    let p3 = port(
        &env,
        "ct-p3",
        "10.62.0.13",
        &["--disable-port-security", "--no-security-group"],
    );
    assert_eq!(p3["port_security_enabled"], false);
    plug_vm(H1, "ct-vm1", "ct-e1", &p1);
    plug_vm(H1, "ct-vm2", "ct-e2", &p2);
    plug_vm(H1, "ct-vm3", "ct-e3", &p3);
    for (vm, dev, ip) in [
        ("ct-vm1", "ct-e1", "10.62.0.11"),
        ("ct-vm2", "ct-e2", "10.62.0.12"),
        ("ct-vm3", "ct-e3", "10.62.0.13"),
    ] {
        let addr = format!("{}/64", v6(ip));
        must(
            Some(vm),
            &["ip", "-6", "addr", "add", &addr, "dev", dev, "nodad"],
        );
    }
    for p in [&p1, &p2, &p3] {
        let id = p["id"].as_str().unwrap();
        wait_for(&format!("port {id} ACTIVE"), 60, || {
            os_in(
                H1,
                &env,
                &["port", "show", id, "-f", "value", "-c", "status"],
            )
            .map(|v| v == "ACTIVE")
            .unwrap_or(false)
        });
    }
    echo_server(&mut lab, "ct-vm1", &["22", "23"]);
    echo_server(&mut lab, "ct-vm3", &["22", "23", "18150"]);
    let mut vm2 = Client::new(&mut lab, "ct-vm2");

    // TCP 22 opens, 23 does not; the replies of 22 flow.
    wait_for("vm2 -> vm1 TCP 22", 30, || {
        vm2.connects("ssh", "10.62.0.11", 22)
    });
    assert!(vm2.echoes("ssh"), "the open connection stopped echoing");
    assert!(
        !vm2.connects("telnet", "10.62.0.11", 23),
        "TCP 23 is open on vm1 with only a rule for 22"
    );
    let ct = ctl_conntrack(&lab, &[]);
    assert!(
        ct.lines().any(|l| l.contains("10.62.0.11:22")
            && l.contains("ESTABLISHED")
            && l.contains(&ssh_id)),
        "weft ctl conntrack does not show the SSH connection and its rule:\n{ct}"
    );

    // `weft trace` names the rule that admits a new connection to 22, and why 23 is dropped.
    let t = trace_syn(&lab, &p1, &p2, 22);
    assert!(
        t.contains(&format!("allowed by rule {ssh_id} (new connection)")),
        "{t}"
    );
    let t = trace_syn(&lab, &p1, &p2, 23);
    assert!(t.contains("drop (security_group)"), "{t}");

    // Port security off: vm3 takes anything.
    for p in [22, 23, 18150] {
        assert!(
            vm2.connects(&format!("vm3-{p}"), "10.62.0.13", p),
            "vm3 (port security disabled) refused TCP {p}"
        );
    }

    // Removing the rule closes the established connection, and 22 no longer opens.
    os_in(H1, &env, &["security", "group", "rule", "delete", &ssh_id]).unwrap();
    wait_for("the SSH connection to be cut", 30, || !vm2.echoes("ssh"));
    assert!(
        !vm2.connects("ssh2", "10.62.0.11", 22),
        "TCP 22 still opens after its rule was deleted"
    );

    // The remote-group rule follows membership: vm2's port joins ct-friends...
    let id2 = p2["id"].as_str().unwrap();
    os_in(
        H1,
        &env,
        &["port", "set", "--security-group", "ct-friends", id2],
    )
    .unwrap();
    wait_for("vm2, a member of ct-friends, to reach TCP 23", 30, || {
        vm2.connects("friend", "10.62.0.11", 23)
    });
    // ... and leaves it: its connection is cut and new ones refused.
    os_in(
        H1,
        &env,
        &["port", "unset", "--security-group", "ct-friends", id2],
    )
    .unwrap();
    wait_for(
        "vm2's connection to be cut once it left ct-friends",
        30,
        || !vm2.echoes("friend"),
    );
    assert!(
        !vm2.connects("friend2", "10.62.0.11", 23),
        "vm2 reaches vm1 after leaving the remote group"
    );
    // vm3 is still open on every port all along.
    assert!(vm2.connects("vm3-again", "10.62.0.13", 23));
    // Flushing vm2's connections (its default group tracks what it opens) makes the open one's
    // next segment a stranger: dropped as invalid.
    let tap2 = format!("tap{}", &id2[..11]);
    let out = ctl_conntrack(&lab, &["--port", &tap2]);
    assert!(out.contains("10.62.0.13:23"), "{out}");
    let out = ctl_conntrack(&lab, &["--flush", "--port", &tap2]);
    assert!(
        out.starts_with("flushed ") && !out.starts_with("flushed 0 "),
        "{out}"
    );
    assert!(
        !vm2.echoes("vm3-again"),
        "a flushed connection still passes"
    );
    assert!(!ctl_conntrack(&lab, &["--port", &tap2]).contains("10.62.0.13:23"));

    ipv6_rules(&env, &mut lab, &mut vm2);
}

/// The IPv6 half, on the same VMs: vm1's group has no IPv6 rule for TCP yet.
fn ipv6_rules(env: &HashMap<String, String>, lab: &mut Lab, vm2: &mut Client) {
    let vm1 = v6("10.62.0.11");
    let mut vm3 = Client::new(lab, "ct-vm3");
    // Port security off on vm3: it answers over IPv6 too (neighbour discovery works).
    assert!(vm2.connects("v6-vm3", &v6("10.62.0.13"), 23));
    assert!(
        !vm2.connects("v6-ssh0", &vm1, 22),
        "TCP 22 over IPv6 opens with only IPv4 rules"
    );
    assert!(
        !ping6("ct-vm2", &vm1),
        "ICMPv6 echo passes with no rule for it"
    );
    let r = os(
        env,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--ethertype",
            "IPv6",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "--remote-ip",
            &format!("{}/128", v6("10.62.0.12")),
            "ct-web",
            "-f",
            "json",
        ],
    );
    assert_eq!(r["ether_type"], "IPv6", "{r}");
    let ssh6 = r["id"].as_str().unwrap().to_string();
    wait_for("vm2 -> vm1 TCP 22 over IPv6", 30, || {
        vm2.connects("v6-ssh", &vm1, 22)
    });
    assert!(
        !vm3.connects("v6-ssh3", &vm1, 22),
        "vm3 is outside the rule's IPv6 prefix but opened TCP 22"
    );
    assert!(
        !vm2.connects("v4-ssh", "10.62.0.11", 22),
        "an IPv6 rule admitted IPv4"
    );
    os(
        env,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--ethertype",
            "IPv6",
            "--protocol",
            "ipv6-icmp",
            "ct-web",
            "-f",
            "json",
        ],
    );
    wait_for("vm2 -> vm1 ICMPv6 echo", 30, || ping6("ct-vm2", &vm1));
    // Deleting the IPv6 rule cuts the IPv6 connection it admitted.
    os_in(H1, env, &["security", "group", "rule", "delete", &ssh6]).unwrap();
    wait_for("the IPv6 SSH connection to be cut", 30, || {
        !vm2.echoes("v6-ssh")
    });
}
