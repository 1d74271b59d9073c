//! Security groups end to end on a running switch: real taps moved into network namespaces
//! (named `ct…`) as VMs, real TCP from Python sockets. vm1's group opens TCP 22 only: vm2
//! connects to 22 and talks both ways, 23 is refused (the SYN dropped and counted); removing the
//! rule (a reload) cuts the established connection; vm3, with port_security = false, is
//! reachable on every port. Needs root.

mod lab;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use lab::Netns;
use weft_datapath::daemon::Switch;
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    lab::uniq("ct", role)
}

/// `python3 -u -c script args...` inside `ns`, with piped stdin and stdout.
fn python(ns: &Netns, script: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", "-u", "-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3")
}

/// Echoes every line on every port given, one thread per connection.
const SERVER: &str = r#"
import socket, sys, threading
def serve(c):
    with c:
        for line in c.makefile('rb'):
            c.sendall(line)
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port)); s.listen(16)
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
for p in sys.argv[1:]:
    threading.Thread(target=listen, args=(int(p),), daemon=True).start()
print('ready', flush=True)
sys.stdin.read()
"#;

/// Reads commands: `c NAME IP PORT` connects, `s NAME` sends a line and waits for its echo;
/// answers `ok NAME` or `err NAME why`.
const CLIENT: &str = r#"
import socket, sys
conns = {}
for line in sys.stdin:
    w = line.split()
    try:
        if w[0] == 'c':
            conns[w[1]] = socket.create_connection((w[2], int(w[3])), timeout=3)
        else:
            c = conns[w[1]]; c.settimeout(3); c.sendall(b'hello\n')
            if c.recv(100) != b'hello\n': raise Exception('bad echo')
        print('ok', w[1], flush=True)
    except Exception as e:
        print('err', w[1], type(e).__name__, flush=True)
"#;

struct Client {
    _child: KillOnDrop,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Client {
    fn new(ns: &Netns) -> Client {
        let mut child = python(ns, CLIENT, &[]);
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client {
            _child: KillOnDrop(child),
            stdin,
            stdout,
        }
    }

    /// Runs one command; true on `ok`.
    fn ask(&mut self, cmd: &str) -> bool {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.starts_with("ok")
    }
}

fn server(ns: &Netns, ports: &[&str]) -> KillOnDrop {
    let mut child = python(ns, SERVER, ports);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    KillOnDrop(child)
}

const M1: &str = "fa:16:3e:c7:00:01";
const M2: &str = "fa:16:3e:c7:00:02";
const M3: &str = "fa:16:3e:c7:00:03";

fn config(t: &[String; 3], ssh: bool) -> SwitchConfig {
    let ssh = if ssh {
        "[[security_group.rule]]\nid = \"ssh\"\ndirection = \"ingress\"\nethertype = \"IPv4\"\n\
         protocol = \"tcp\"\nport_range_min = 22\nport_range_max = 22\n"
    } else {
        ""
    };
    let text = format!(
        r#"
[switch]
workers = 1

[[network]]
name = "n1"
type = "local"

[[port]]
name = "{}"
network = "n1"
mac = "{M1}"
fixed_ips = ["10.77.0.1"]
security_groups = ["server"]

[[port]]
name = "{}"
network = "n1"
mac = "{M2}"
fixed_ips = ["10.77.0.2"]
security_groups = ["client"]

[[port]]
name = "{}"
network = "n1"
mac = "{M3}"
port_security = false

[[security_group]]
id = "server"
{ssh}
[[security_group.rule]]
id = "out"
direction = "egress"
ethertype = "IPv4"

[[security_group]]
id = "client"
[[security_group.rule]]
id = "out"
direction = "egress"
ethertype = "IPv4"
"#,
        t[0], t[1], t[2]
    );
    SwitchConfig::from_toml(&text, "firewall_e2e.toml").expect("config")
}

#[test]
fn tcp_22_connects_23_does_not_and_removing_the_rule_cuts_the_connection() {
    let taps = [uniq("a"), uniq("b"), uniq("c")];
    let h = Switch::start(config(&taps, true)).expect("switch starts");
    let (vm1, vm2, vm3) = (Netns::new("ct"), Netns::new("ct"), Netns::new("ct"));
    vm1.plug(&taps[0], M1, Some("10.77.0.1/24"), false);
    vm2.plug(&taps[1], M2, Some("10.77.0.2/24"), false);
    vm3.plug(&taps[2], M3, Some("10.77.0.3/24"), false);
    let _s1 = server(&vm1, &["22", "23"]);
    let _s3 = server(&vm3, &["22", "23", "8080"]);
    let mut c = Client::new(&vm2);

    // ARP and the first SYN may race the taps coming up: a few tries.
    assert!(
        (0..5).any(|_| c.ask("c ssh 10.77.0.1 22")),
        "TCP 22 to vm1 refused"
    );
    assert!(c.ask("s ssh"), "no echo over TCP 22");
    let dp = h.datapath();
    let drops = |port: &str, reason: weft_datapath::DropReason| {
        dp.counters()
            .ports
            .iter()
            .find(|p| p.name == port)
            .map_or(0, |p| p.drops[reason as usize])
    };
    assert!(!c.ask("c telnet 10.77.0.1 23"), "TCP 23 to vm1 got through");
    assert!(drops(&taps[0], weft_datapath::DropReason::SecurityGroup) >= 1);

    // Port security off: every port of vm3 answers.
    for port in ["22", "23", "8080"] {
        assert!(
            c.ask(&format!("c p{port} 10.77.0.3 {port}")),
            "vm3 port {port}"
        );
        assert!(c.ask(&format!("s p{port}")), "vm3 port {port} echo");
    }

    // Removing the rule cuts the established connection; vm3's are untouched.
    let rep = h.apply(config(&taps, false)).expect("reload");
    let _ = rep;
    assert!(
        !c.ask("s ssh"),
        "the connection survived the rule's removal"
    );
    assert!(
        drops(&taps[0], weft_datapath::DropReason::ConntrackInvalid) >= 1,
        "{:?}",
        dp.counters()
    );
    assert!(c.ask("s p22"), "vm3's connection disturbed by vm1's reload");
    assert!(!c.ask("c ssh2 10.77.0.1 22"), "new TCP 22 after removal");
    // And back: a new connection works again.
    h.apply(config(&taps, true)).expect("reload");
    assert!(
        c.ask("c ssh3 10.77.0.1 22"),
        "TCP 22 after the rule came back"
    );
    assert!(c.ask("s ssh3"));

    // What operators see: the connection listed on vm1 with its rule, per-rule hits in the
    // metrics, and a flush by port that cuts it.
    let ct = h.handle_request(
        &serde_json::json!({"cmd": "conntrack", "port": taps[0]}),
        None,
    );
    let entries = ct["entries"].as_array().expect("entries");
    let ssh: Vec<_> = entries
        .iter()
        .filter(|e| e["state"] == "ESTABLISHED" && e["rule"] == "ssh")
        .collect();
    assert_eq!(ssh.len(), 1, "{ct}");
    assert_eq!(ssh[0]["responder"], "10.77.0.1:22");
    assert_eq!(ssh[0]["direction"], "ingress");
    assert!(
        entries.iter().all(|e| e["port"] == taps[0].as_str()),
        "{ct}"
    );
    let bad = h.handle_request(&serde_json::json!({"cmd": "conntrack", "zone": 5000}), None);
    assert_eq!(bad["ok"], false, "{bad}");
    let metrics = weft_datapath::metrics::render(&h.metrics());
    let hits = format!(
        "switch_secgroup_rule_hits_total{{port=\"{}\",rule=\"ssh\"}}",
        taps[0]
    );
    assert!(metrics.contains(&hits), "{metrics}");
    let flushed = h.handle_request(
        &serde_json::json!({"cmd": "conntrack", "port": taps[0], "flush": true}),
        None,
    );
    assert!(flushed["flushed"].as_u64().unwrap() >= 1, "{flushed}");
    assert!(
        !c.ask("s ssh3"),
        "a flushed connection still passes mid-stream"
    );
    h.shutdown();
}
