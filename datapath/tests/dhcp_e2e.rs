//! The switch's DHCP server end to end: namespaces as VMs on the switch's taps run busybox
//! udhcpc, which gets its address, gateway, MTU, DNS servers and routes from the switch, and
//! gets the new ones after a reload (the port's fixed IP and the subnet's options changed, no
//! restart). A rogue DHCP server in a VM is never heard by another VM: on a DHCP subnet the
//! requests never reach it, and on a subnet without DHCP its offers are dropped (the DHCP
//! guard). Needs root and busybox; namespaces and taps are named `dh…` and removed on drop.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use lab::{sh, wait_until, Netns};
use weft_datapath::daemon::{Switch, SwitchHandle};
use weft_datapath::{DropReason, SwitchConfig};

fn uniq(role: &str) -> String {
    lab::uniq("dh", role)
}

/// A network namespace standing for a VM (deleted on drop), with a scratch directory.
struct Vm {
    ns: Netns,
    dir: PathBuf,
}

impl Vm {
    /// A namespace holding the switch's tap `tap`, up, with `mac`, no address and no IPv6
    /// autoconfiguration noise.
    fn plug(tap: &str, mac: &str) -> Vm {
        let ns = Netns::new("dh");
        let dir = std::env::temp_dir().join(ns.name());
        std::fs::create_dir_all(&dir).unwrap();
        ns.plug(tap, mac, None, true);
        Vm { ns, dir }
    }

    fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args)
    }

    fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        self.ns.exec(cmd, args)
    }

    /// Runs `udhcpc -n -q` on `ifname` (exit at once when no lease), with a script that
    /// configures the lease (address, MTU, option 121 routes) and records its options.
    /// Returns the recorded options of the `bound` event, or None when there was no lease.
    fn udhcpc(&self, ifname: &str, tries: &str) -> Option<String> {
        let (script, record) = self.script();
        let out = self.exec(
            "busybox",
            &[
                "udhcpc",
                "-i",
                ifname,
                "-n",
                "-q",
                "-f",
                "-t",
                tries,
                "-T",
                "1",
                "-O",
                "mtu",
                "-O",
                "staticroutes",
                "-s",
                &script.to_string_lossy(),
            ],
        );
        let rec = std::fs::read_to_string(&record).ok();
        if rec.is_none() {
            eprintln!(
                "udhcpc in {}: {}{}",
                self.ns.name(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        rec
    }

    /// A udhcpc that stays (bound, then renewing when sent SIGUSR1), with the same script;
    /// returns it and the file its script records each bound/renew event's options in.
    fn udhcpc_daemon(&self, ifname: &str) -> (Daemon, PathBuf) {
        let (script, record) = self.script();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns.name(),
                "busybox",
                "udhcpc",
                "-i",
                ifname,
                "-f",
            ])
            .args(["-O", "mtu", "-O", "staticroutes", "-T", "3", "-s"])
            .arg(&script)
            .stdout(std::fs::File::create(self.dir.join("udhcpc.log")).unwrap())
            .stderr(std::fs::File::create(self.dir.join("udhcpc.err")).unwrap())
            .spawn()
            .expect("udhcpc");
        (Daemon(child), record)
    }

    /// The udhcpc script: configures the lease (address, MTU, option 121 routes) and records
    /// its options and the event (bound or renew) in the returned file.
    fn script(&self) -> (PathBuf, PathBuf) {
        let script = self.dir.join("udhcpc.sh");
        let record = self.dir.join("bound.env");
        let _ = std::fs::remove_file(&record);
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
event="$1"
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    for v in ip mask router dns mtu staticroutes hostname lease serverid; do
      eval "echo $v=\$$v"
    done > {rec}.tmp
    echo "event=$event" >> {rec}.tmp
    mv {rec}.tmp {rec}
    ;;
esac
exit 0
"#,
                rec = record.display()
            ),
        )
        .unwrap();
        sh("chmod", &["+x", &script.to_string_lossy()]);
        (script, record)
    }

    /// A rogue `busybox udhcpd` on `ifname` (which has `addr`), offering 10.77.x.150-160.
    fn rogue_server(&self, ifname: &str, addr: &str, prefix: &str) -> Daemon {
        self.ip(&["addr", "add", addr, "dev", ifname]);
        let conf = self.dir.join("udhcpd.conf");
        let leases = self.dir.join("udhcpd.leases");
        std::fs::write(&leases, b"").unwrap();
        std::fs::write(
            &conf,
            format!(
                "start {prefix}.150\nend {prefix}.160\ninterface {ifname}\nlease_file {}\n\
                 option subnet 255.255.255.0\noption router {prefix}.66\n",
                leases.display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "busybox", "udhcpd", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpd");
        Daemon(child)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A process killed (by its own pid) on drop.
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops the switch (and so removes its taps) on drop, also when an assertion fails.
struct Running(SwitchHandle);
impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

fn value<'a>(rec: &'a str, key: &str) -> &'a str {
    rec.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {rec}"))
}

const M_A: &str = "fa:16:3e:77:00:0a";
const M_B: &str = "fa:16:3e:77:00:0b";
const M_R: &str = "fa:16:3e:77:00:0c";
const M_C: &str = "fa:16:3e:77:00:0d";
const M_S: &str = "fa:16:3e:77:00:0e";

struct Taps {
    a: String,
    b: String,
    rogue: String,
    c: String,
    rogue2: String,
}

/// Network n1 has a DHCP subnet (a, b, and a rogue server); n2's subnet has DHCP off (c and
/// a second rogue). `a_ip` and `dns` change between the two configs.
fn config(t: &Taps, a_ip: &str, dns: &str) -> SwitchConfig {
    let text = format!(
        r#"
[switch]
workers = 1

[[network]]
name = "n1"
type = "local"
mtu = 1450

[[network]]
name = "n2"
type = "local"

[[subnet]]
network = "n1"
cidr = "10.77.0.0/24"
gateway_ip = "10.77.0.1"
dns_nameservers = ["{dns}"]
host_routes = [{{ destination = "192.168.77.0/24", nexthop = "10.77.0.254" }}]

[[subnet]]
network = "n2"
cidr = "10.78.0.0/24"
gateway_ip = "10.78.0.1"
enable_dhcp = false

[[port]]
name = "{a}"
kind = "tap"
network = "n1"
mac = "{M_A}"
fixed_ips = ["{a_ip}"]
mtu = 1400
dns_name = "vm-a"

[[port]]
name = "{b}"
kind = "tap"
network = "n1"
mac = "{M_B}"
fixed_ips = ["10.77.0.12"]

[[port]]
name = "{rogue}"
kind = "tap"
network = "n1"
mac = "{M_R}"
fixed_ips = ["10.77.0.13"]

[[port]]
name = "{c}"
kind = "tap"
network = "n2"
mac = "{M_C}"
fixed_ips = ["10.78.0.14"]

[[port]]
name = "{rogue2}"
kind = "tap"
network = "n2"
mac = "{M_S}"
fixed_ips = ["10.78.0.15"]
"#,
        a = t.a,
        b = t.b,
        rogue = t.rogue,
        c = t.c,
        rogue2 = t.rogue2,
    );
    SwitchConfig::from_toml(&text, "dhcp.toml").expect("test config")
}

/// `ip route show dev X` has `169.254.169.254` alone on its line: a route with no gateway.
fn on_link_metadata_route(routes: &str) -> bool {
    routes.lines().any(|l| l.trim() == "169.254.169.254")
}

fn routes(vm: &Vm, ifname: &str) -> String {
    vm.ip(&["-4", "route", "show", "dev", ifname])
}

#[test]
fn guests_get_their_lease_from_the_switch_and_rogue_servers_go_unheard() {
    if !Path::new("/bin/busybox").exists() && !Path::new("/usr/bin/busybox").exists() {
        panic!("busybox is missing: scripts/install-deps.sh installs it");
    }
    let t = Taps {
        a: uniq("a"),
        b: uniq("b"),
        rogue: uniq("r"),
        c: uniq("c"),
        rogue2: uniq("s"),
    };
    let sw = Running(Switch::start(config(&t, "10.77.0.11", "10.77.0.53")).expect("switch"));
    let a = Vm::plug(&t.a, M_A);
    let b = Vm::plug(&t.b, M_B);
    let r = Vm::plug(&t.rogue, M_R);
    let c = Vm::plug(&t.c, M_C);
    let s = Vm::plug(&t.rogue2, M_S);
    let _rogue1 = r.rogue_server(&t.rogue, "10.77.0.13/24", "10.77.0");
    let _rogue2 = s.rogue_server(&t.rogue2, "10.78.0.15/24", "10.78.0");
    std::thread::sleep(Duration::from_millis(300));

    // A: address, mask, gateway, DNS, MTU, host name and routes, all from the switch.
    let lease = a.udhcpc(&t.a, "5").expect("vm a got no lease");
    assert_eq!(value(&lease, "ip"), "10.77.0.11", "{lease}");
    assert_eq!(value(&lease, "mask"), "24");
    assert_eq!(value(&lease, "router"), "10.77.0.1");
    assert_eq!(value(&lease, "dns").trim(), "10.77.0.53");
    assert_eq!(value(&lease, "mtu"), "1400");
    assert_eq!(value(&lease, "hostname"), "vm-a");
    // The server is 169.254.169.254, routed on-link by the lease itself: a renewal at T1
    // reaches the switch even on a network with no router.
    assert_eq!(value(&lease, "serverid"), "169.254.169.254");
    assert_eq!(value(&lease, "lease"), "86400");
    assert_eq!(
        value(&lease, "staticroutes"),
        "0.0.0.0/0 10.77.0.1 192.168.77.0/24 10.77.0.254 169.254.169.254/32 0.0.0.0"
    );
    let addr = a.ip(&["-4", "addr", "show", "dev", &t.a]);
    assert!(addr.contains("inet 10.77.0.11/24"), "{addr}");
    assert!(addr.contains("mtu 1400"), "{addr}");
    let rt = routes(&a, &t.a);
    assert!(rt.contains("default via 10.77.0.1"), "{rt}");
    assert!(rt.contains("192.168.77.0/24 via 10.77.0.254"), "{rt}");
    // On-link: the switch answers ARP for 169.254.169.254 itself.
    assert!(on_link_metadata_route(&rt), "{rt}");

    // B, on the same network as a rogue server: the switch's answer, never the rogue's (its
    // requests are answered by the switch and not flooded, so the rogue never sees them).
    let rogue_tx = |name: &str| {
        let c = sw.0.datapath().counters();
        c.ports
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.tx)
            .unwrap()
    };
    let before = rogue_tx(&t.rogue);
    let lease_b = b.udhcpc(&t.b, "5").expect("vm b got no lease");
    assert_eq!(value(&lease_b, "ip"), "10.77.0.12");
    assert_eq!(value(&lease_b, "serverid"), "169.254.169.254");
    assert_eq!(value(&lease_b, "hostname"), "host-10-77-0-12");
    // b's tap was not sized by the switch: its guest is told the network's MTU (a's own 1400
    // wins over it above).
    assert_eq!(value(&lease_b, "mtu"), "1450", "{lease_b}");
    assert_eq!(
        rogue_tx(&t.rogue),
        before,
        "b's DHCP exchange reached the rogue's port"
    );
    let dp = sw.0.datapath();
    let stats = dp.dhcp_stats();
    assert!(stats.replies >= 4, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");

    // C, on a subnet without DHCP: its DISCOVER is flooded, the rogue on n2 answers, and the
    // DHCP guard drops the offer: no lease at all.
    assert_eq!(c.udhcpc(&t.c, "3"), None, "vm c took a rogue lease");
    let counters = dp.counters();
    let rogue2 = counters.ports.iter().find(|p| p.name == t.rogue2).unwrap();
    assert!(
        rogue2.drop_count(DropReason::DhcpServerSpoof) > 0,
        "the rogue never answered, so the guard was not tried: {rogue2:?}"
    );

    // B keeps a udhcpc running, bound.
    let (b_client, b_record) = b.udhcpc_daemon(&t.b);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        wait_until(10, || read(&b_record).contains("event=bound")),
        "b's udhcpc never bound: {}",
        read(&b.dir.join("udhcpc.err"))
    );
    let _ = std::fs::remove_file(&b_record);

    // A reload changes A's fixed IP and the subnet's DNS server: the next lease has both,
    // with no restart of the switch.
    sw.0.apply(config(&t, "10.77.0.21", "10.77.0.54"))
        .expect("reload");
    // B renews (RENEWING: a unicast REQUEST from its address to the server id,
    // 169.254.169.254, ARP resolved by the switch) and its renewal carries the new DNS. It
    // must be answered as unicast, not by the broadcast fallback (REBINDING) that follows an
    // unanswered one and would hide a server id the guest cannot reach. busybox says its
    // renewal socket sometimes fails to bind (EADDRNOTAVAIL) and falls back at once, so
    // up to three renewals are tried; with an unreachable server id all three broadcast.
    let err_log = b.dir.join("udhcpc.err");
    let mut unicast = false;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&b_record);
        let seen = read(&err_log).len();
        sh("kill", &["-USR1", &b_client.0.id().to_string()]);
        assert!(
            wait_until(10, || {
                let r = read(&b_record);
                r.contains("event=renew") && r.contains("dns=10.77.0.54")
            }),
            "b's renewal did not carry the new DNS server: {:?}",
            read(&b_record)
        );
        if !read(&err_log)[seen..].contains("broadcasting renew") {
            unicast = true;
            break;
        }
    }
    assert!(
        unicast,
        "no unicast renewal answered: {}\n{:?} {:?}\n{}\n{}",
        read(&err_log),
        sw.0.datapath().dhcp_stats(),
        sw.0.datapath().metadata_stats(),
        b.ip(&["neigh"]),
        b.ip(&["route"])
    );
    drop(b_client);
    let lease = a
        .udhcpc(&t.a, "5")
        .expect("vm a got no lease after the reload");
    assert_eq!(value(&lease, "ip"), "10.77.0.21", "{lease}");
    assert_eq!(value(&lease, "dns").trim(), "10.77.0.54");
    let addr = a.ip(&["-4", "addr", "show", "dev", &t.a]);
    assert!(addr.contains("inet 10.77.0.21/24"), "{addr}");
    // And A and B reach each other at the addresses the switch handed out.
    let ping = a.exec("ping", &["-c", "1", "-W", "2", "10.77.0.12"]);
    assert!(ping.status.success(), "a cannot ping b");
}

/// Three VMs, two on n1 and one on n2, each with its own instance in `[port.metadata]`.
fn metadata_config(taps: &[String; 3]) -> SwitchConfig {
    let mut text = String::from(
        r#"
[switch]
workers = 1

[[network]]
name = "n1"
type = "local"

[[network]]
name = "n2"
type = "local"

[[subnet]]
network = "n1"
cidr = "10.77.0.0/24"
gateway_ip = "10.77.0.1"

[[subnet]]
network = "n2"
cidr = "10.78.0.0/24"
gateway_ip = "10.78.0.1"
"#,
    );
    let vms = [
        ("n1", M_A, "10.77.0.11", "a"),
        ("n1", M_B, "10.77.0.12", "b"),
        ("n2", M_C, "10.78.0.13", "c"),
    ];
    for (tap, (net, mac, ip, who)) in taps.iter().zip(vms) {
        text.push_str(&format!(
            r#"
[[port]]
name = "{tap}"
kind = "tap"
network = "{net}"
mac = "{mac}"
fixed_ips = ["{ip}"]
[port.metadata]
uuid = "00000000-0000-4000-8000-00000000000{who}"
name = "vm-{who}"
project_id = "proj"
public_keys = {{ key-{who} = "ssh-ed25519 AAAA{who} {who}@test" }}
user_data = "{ud}"
"#,
            ud = match who {
                "a" => "I2Nsb3VkLWNvbmZpZwo=", // "#cloud-config\n"
                _ => "ZWNobyBoaQo=",           // "echo hi\n"
            }
        ));
    }
    SwitchConfig::from_toml(&text, "metadata.toml").expect("metadata test config")
}

impl Vm {
    /// `curl -s` of a metadata path from inside the VM; (HTTP status, body).
    fn curl(&self, path: &str) -> (String, String) {
        let out = self.exec(
            "curl",
            &[
                "-s",
                "-m",
                "5",
                "-w",
                "\n%{http_code}",
                &format!("http://169.254.169.254{path}"),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.to_string())
    }
}

#[test]
fn guests_read_their_own_metadata_from_the_switch() {
    if !Path::new("/bin/busybox").exists() && !Path::new("/usr/bin/busybox").exists() {
        panic!("busybox is missing: scripts/install-deps.sh installs it");
    }
    let taps = [uniq("ma"), uniq("mb"), uniq("mc")];
    let sw = Running(Switch::start(metadata_config(&taps)).expect("switch"));
    let macs = [M_A, M_B, M_C];
    let vms: Vec<Vm> = taps.iter().zip(macs).map(|(t, m)| Vm::plug(t, m)).collect();
    for (vm, tap) in vms.iter().zip(&taps) {
        // The lease brings the on-link route to 169.254.169.254 (option 121).
        vm.udhcpc(tap, "5").expect("no lease");
        let rt = routes(vm, tap);
        assert!(on_link_metadata_route(&rt), "{rt}");
    }
    let (a, b, c) = (&vms[0], &vms[1], &vms[2]);

    let (code, body) = a.curl("/openstack/latest/meta_data.json");
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("meta_data.json is JSON");
    assert_eq!(v["uuid"], "00000000-0000-4000-8000-00000000000a");
    assert_eq!(v["name"], "vm-a");
    assert_eq!(v["public_keys"]["key-a"], "ssh-ed25519 AAAAa a@test");
    assert_eq!(
        a.curl("/latest/meta-data/local-ipv4"),
        ("200".into(), "10.77.0.11".into())
    );
    assert_eq!(a.curl("/openstack/latest/user_data").1, "#cloud-config\n");
    assert_eq!(
        a.curl("/latest/meta-data/public-keys/0/openssh-key").1,
        "ssh-ed25519 AAAAa a@test"
    );
    let nd: serde_json::Value =
        serde_json::from_str(&a.curl("/openstack/latest/network_data.json").1).unwrap();
    assert_eq!(nd["networks"][0]["ip_address"], "10.77.0.11");
    assert_eq!(a.curl("/nope").0, "404");

    // B on the same network and C on another read their own data, never A's.
    assert_eq!(b.curl("/latest/meta-data/local-ipv4").1, "10.77.0.12");
    assert_eq!(
        b.curl("/latest/meta-data/instance-id").1,
        "00000000-0000-4000-8000-00000000000b"
    );
    assert_eq!(c.curl("/latest/meta-data/local-ipv4").1, "10.78.0.13");
    let (code, body) = c.curl("/openstack/latest/meta_data.json");
    assert_eq!(code, "200");
    assert!(body.contains("00000000-0000-4000-8000-00000000000c") && !body.contains("vm-a"));
    // A guest that claims another's address gets nothing: port security drops it first.
    b.ip(&["addr", "add", "10.77.0.11/32", "dev", &taps[1]]);
    let out = b.exec(
        "curl",
        &[
            "-s",
            "-m",
            "2",
            "--interface",
            "10.77.0.11",
            "http://169.254.169.254/latest/meta-data/instance-id",
        ],
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (stats, stacks) = sw.0.datapath().metadata_stats();
    assert!(stats.requests >= 10, "{stats:?}");
    assert_eq!(stacks, 3);
}
