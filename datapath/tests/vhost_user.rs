//! A real QEMU guest (TCG: no KVM needed) on a `vhostuser` port: QEMU connects to the socket
//! the switch serves, shares the guest's memory, and the switch moves frames through the
//! guest's virtio rings. The guest (scripts/guest-image.sh's kernel and busybox initramfs,
//! booted directly) gets its DHCP lease from the switch, answers ping and TCP from a namespace
//! on a tap port of the same switch, and comes back after its QEMU is restarted.
//! The switch runs in-process; a reload that removes the port closes its socket.
//! Needs root and qemu-system-x86_64 (names `vh…`).

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use lab::{run, sh, wait_until, Netns};
use weft_datapath::daemon::{Switch, SwitchHandle};
use weft_datapath::SwitchConfig;

const GUEST_MAC: &str = "fa:16:3e:92:00:10";
const NS_MAC: &str = "fa:16:3e:92:00:20";
const GUEST_IP: &str = "10.92.0.10";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where scripts/guest-image.sh puts the guest: `guest/` in the target dir this test was
/// built in (target/guest, as the compute tests use it).
fn guest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../guest")
}

fn must(cmd: &str, args: &[&str]) {
    sh(cmd, args);
}

/// `vh` + what + this process's id: names no other test (or helper) uses.
fn name(what: &str) -> String {
    let n = format!("vh{what}{:x}", std::process::id() & 0xfffff);
    assert!(n.len() <= 15, "{n} too long");
    n
}

/// The namespace's web server (busybox httpd), in this test's port range.
const NS_HTTP_PORT: u16 = 19250;
/// Size of the file each side fetches from the other.
const BLOB_MIB: usize = 8;

/// The guest's user data (run by its init after the metadata service answered): serve a
/// random file, fetch the namespace's, and print both checksums on the console.
fn user_data() -> String {
    use base64::Engine;
    let script = format!(
        "#!/bin/sh\n\
         mkdir -p /tmp/www\n\
         dd if=/dev/urandom of=/tmp/www/blob bs=1M count={BLOB_MIB} 2>/dev/null\n\
         httpd -p 80 -h /tmp/www\n\
         echo \"WEFT-GUEST served $(md5sum < /tmp/www/blob | cut -c1-32)\"\n\
         wget -q -O /tmp/got http://10.92.0.20:{NS_HTTP_PORT}/blob && \
         echo \"WEFT-GUEST got $(md5sum < /tmp/got | cut -c1-32)\"\n"
    );
    base64::engine::general_purpose::STANDARD.encode(script)
}

fn config(vm_port: &str, tap: &str, vhost_dir: &Path, with_vm: bool) -> SwitchConfig {
    let vm = if with_vm {
        format!(
            r#"
[[port]]
name = "{vm_port}"
kind = "vhostuser"
network = "net"
mac = "{GUEST_MAC}"
fixed_ips = ["{GUEST_IP}"]
[port.metadata]
uuid = "00000000-0000-0000-0000-000000009210"
user_data = "{}"
"#,
            user_data()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
[switch]
workers = 2
vhost_dir = "{dir}"

[[network]]
name = "net"
type = "local"

[[subnet]]
network = "net"
cidr = "10.92.0.0/24"
gateway_ip = "10.92.0.1"
{vm}
[[port]]
name = "{tap}"
kind = "tap"
network = "net"
mac = "{NS_MAC}"
fixed_ips = ["10.92.0.20"]
"#,
        dir = vhost_dir.display()
    );
    SwitchConfig::from_toml(&text, "vhost.toml").expect("test config parses")
}

/// A QEMU guest, killed on drop.
struct Guest {
    child: Child,
    console: PathBuf,
}

impl Guest {
    /// Boots the test guest's kernel and initramfs with its NIC on the vhost-user `socket`.
    fn boot(socket: &Path, console: &Path) -> Guest {
        let g = guest_dir();
        let _ = std::fs::remove_file(console);
        let log = std::fs::File::create(console.with_extension("qemu")).expect("qemu log");
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(g.join("vmlinuz"))
            .arg("-initrd")
            .arg(g.join("initrd.img"))
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            // vhost-user needs the guest's RAM in shared memory the switch can map.
            .args([
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-numa",
                "node,memdev=mem",
            ])
            .arg("-chardev")
            .arg(format!("socket,id=c0,path={}", socket.display()))
            .args(["-netdev", "vhost-user,id=n0,chardev=c0"])
            // No MSI-X: QEMU 7.2 under TCG crashes routing MSI-X vectors to the call
            // eventfds (a KVM-only path); with INTx it reads them itself.
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={GUEST_MAC},vectors=0"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn qemu-system-x86_64");
        Guest {
            child,
            console: console.to_path_buf(),
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Waits for the guest's lease line; panics with the console and QEMU's stderr if it
    /// never comes.
    fn wait_lease(&mut self, sw: &SwitchHandle) {
        let want = format!("WEFT-GUEST lease ip={GUEST_IP}/24");
        // The guest's init gives up on DHCP after ~40 s and says so ("no-lease").
        let ok = wait_until(240, || {
            let c = self.console();
            c.contains(&want)
                || c.contains("WEFT-GUEST no-lease")
                || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !ok || !self.console().contains(&want) {
            let _ = self.child.kill();
            let status = self.child.wait();
            let out = format!("{status:?} ")
                + &std::fs::read_to_string(self.console.with_extension("qemu")).unwrap_or_default();
            panic!(
                "guest got no lease from the switch over vhost-user\n--- console:\n{}\n--- qemu:\n{out}\n--- ports:\n{:?}",
                self.console(),
                sw.port_states()
            );
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process killed on drop (the namespace's web server).
struct Httpd(Child);

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn md5(path: &Path) -> String {
    let o = run("md5sum", &[path.to_str().unwrap()]);
    String::from_utf8_lossy(&o.stdout)[..32].to_string()
}

/// (bytes the switch read from the port, bytes it sent to it).
fn counters(sw: &SwitchHandle, port: &str) -> (u64, u64) {
    let st = sw.port_states();
    let p = st
        .iter()
        .find(|p| p.name == port)
        .unwrap_or_else(|| panic!("no port {port} in {st:?}"));
    (p.rx_bytes, p.tx_bytes)
}

#[test]
fn a_qemu_guest_on_a_vhost_user_port_gets_a_lease_and_reaches_a_namespace() {
    assert!(
        Command::new("bash")
            .arg(repo().join("scripts/guest-image.sh"))
            .arg(guest_dir())
            .status()
            .expect("bash")
            .success(),
        "scripts/guest-image.sh failed"
    );
    let (vm_port, tap) = (name("vm"), name("tap"));
    let dir = std::env::temp_dir().join(format!("vh-{}", std::process::id()));
    let vhost_dir = dir.join("vhost");
    let sw = Switch::start(config(&vm_port, &tap, &vhost_dir, true)).expect("switch starts");
    let socket = vhost_dir.join(&vm_port);
    assert!(
        socket.exists(),
        "the switch made no socket at {}",
        socket.display()
    );

    let ns = Netns(name("ns"));
    let _ = run("ip", &["netns", "del", &ns.0]);
    must("ip", &["netns", "add", &ns.0]);
    must("ip", &["link", "set", &tap, "netns", &ns.0]);
    for args in [
        &["link", "set", &tap, "address", NS_MAC][..],
        &["addr", "add", "10.92.0.20/24", "dev", &tap],
        &["link", "set", &tap, "up"],
    ] {
        let mut a = vec!["-n", ns.0.as_str()];
        a.extend_from_slice(args);
        must("ip", &a);
    }

    // The namespace's file, served for the guest to fetch.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    must(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", www.join("blob").display()),
            "bs=1M",
            &format!("count={BLOB_MIB}"),
        ],
    );
    let ns_md5 = md5(&www.join("blob"));
    let _httpd = Httpd(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "busybox", "httpd", "-f", "-p"])
            .arg(NS_HTTP_PORT.to_string())
            .arg("-h")
            .arg(&www)
            .spawn()
            .expect("busybox httpd"),
    );

    let console = dir.join("console.log");
    let mut guest = Guest::boot(&socket, &console);
    // The lease crossed the switch both ways: DISCOVER/REQUEST read from the guest's TX
    // ring, OFFER/ACK written into its RX ring.
    guest.wait_lease(&sw);
    assert!(
        ns.ping_ok(GUEST_IP, 20),
        "namespace cannot ping the guest\n{}\n{:?}",
        guest.console(),
        sw.port_states()
    );
    // TCP both ways: the guest's listener answers one line. It is a shell loop around
    // `nc -l` that the guest's init starts after its lease (and restarts after each
    // connection), so a refusal right after the first ping is a race, not a fault: retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = ns.exec("timeout", &["10", "busybox", "nc", GUEST_IP, "22"]);
        let answered = String::from_utf8_lossy(&out.stdout).trim() == "weft-guest 22";
        if answered || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "weft-guest 22",
        "no TCP answer from the guest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Megabytes both ways, intact: the guest fetches the namespace's file (frames from a
    // tap, TSO-sized, into the guest's mergeable RX buffers) and the namespace the guest's
    // (the guest's TX ring out to the tap).
    assert!(
        wait_until(120, || guest.console().contains("WEFT-GUEST got ")),
        "the guest fetched nothing from the namespace\n{}",
        guest.console()
    );
    let c = guest.console();
    let said = |what: &str| {
        c.lines()
            .find_map(|l| l.split(&format!("WEFT-GUEST {what} ")).nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(said("got"), ns_md5, "the guest's copy differs\n{c}");
    let fetched = dir.join("from-guest");
    let out = ns.exec(
        "curl",
        &[
            "-s",
            "-f",
            "-m",
            "60",
            "-o",
            fetched.to_str().unwrap(),
            &format!("http://{GUEST_IP}/blob"),
        ],
    );
    assert!(out.status.success(), "curl from the guest failed");
    assert_eq!(
        md5(&fetched),
        said("served"),
        "the namespace's copy differs"
    );
    let (rx, tx) = counters(&sw, &vm_port);
    let mib = (BLOB_MIB << 20) as u64;
    assert!(rx >= mib && tx >= mib, "rx {rx} tx {tx} bytes");

    // QEMU goes away and comes back (a guest restart): the port serves it again.
    drop(guest);
    let mut guest = Guest::boot(&socket, &console);
    guest.wait_lease(&sw);
    assert!(
        ns.ping_ok(GUEST_IP, 20),
        "namespace cannot ping the restarted guest\n{}",
        guest.console()
    );

    // A reload without the port closes it: the guest's connection ends and the socket goes.
    sw.apply(config(&vm_port, &tap, &vhost_dir, false))
        .expect("reload");
    // The workers let go of the port at their next wake-up; the last one closes it.
    assert!(wait_until(10, || !socket.exists()), "socket left behind");
    assert!(
        wait_until(20, || matches!(guest.child.try_wait(), Ok(Some(_)))
            || !ns.ping_ok(GUEST_IP, 1)),
        "the guest still answers after its port was removed"
    );
    drop(guest);
    sw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
