//! A real QEMU guest (TCG: no KVM needed) on a `vhostuser` port: QEMU connects to the socket
//! the switch serves, shares the guest's memory, and the switch moves frames through the
//! guest's virtio rings. The guest (scripts/guest-image.sh's kernel and busybox initramfs,
//! booted directly) gets its DHCP lease from the switch, answers ping and TCP from a namespace
//! on a tap port of the same switch, and comes back after its QEMU is restarted.
//! Needs root and qemu-system-x86_64 (names `vh…`).

mod switch_util;
use switch_util::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const GUEST_MAC: &str = "fa:16:3e:92:00:10";
const NS_MAC: &str = "fa:16:3e:92:00:20";
const GUEST_IP: &str = "10.92.0.10";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `vh` + what + this process's id: names no other test (or helper) uses.
fn name(what: &str) -> String {
    let n = format!("vh{what}{:x}", std::process::id() & 0xfffff);
    assert!(n.len() <= 15, "{n} too long");
    n
}

fn config(vm_port: &str, tap: &str, vhost_dir: &Path) -> String {
    format!(
        r#"
vhost_dir = "{dir}"

[[network]]
name = "net"
type = "local"

[[subnet]]
network = "net"
cidr = "10.92.0.0/24"
gateway_ip = "10.92.0.1"

[[port]]
name = "{vm_port}"
kind = "vhostuser"
network = "net"
mac = "{GUEST_MAC}"
fixed_ips = ["{GUEST_IP}"]

[[port]]
name = "{tap}"
kind = "tap"
network = "net"
mac = "{NS_MAC}"
fixed_ips = ["10.92.0.20"]
"#,
        dir = vhost_dir.display()
    )
}

/// A QEMU guest, killed on drop.
struct Guest {
    child: Child,
    console: PathBuf,
}

impl Guest {
    /// Boots the test guest's kernel and initramfs with its NIC on the vhost-user `socket`.
    fn boot(socket: &Path, console: &Path) -> Guest {
        let g = repo().join("target/guest");
        let _ = std::fs::remove_file(console);
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
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={GUEST_MAC}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
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
    fn wait_lease(&mut self, sw: &SwitchProc) {
        let want = format!("WEFT-GUEST lease ip={GUEST_IP}/24");
        let ok = wait_until(240, || {
            self.console().contains(&want) || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !ok || !self.console().contains(&want) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let mut out = String::new();
            if let Some(e) = self.child.stderr.as_mut() {
                let _ = std::io::Read::read_to_string(e, &mut out);
            }
            panic!(
                "guest got no lease from the switch over vhost-user\n--- console:\n{}\n--- qemu:\n{out}\n--- switch:\n{}",
                self.console(),
                sw.log()
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

fn counter(sw: &SwitchProc, port: &str, field: &str) -> u64 {
    let c = sw.ctl_json(&["ports"]);
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("no port {port} in {c}"))[field]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_qemu_guest_on_a_vhost_user_port_gets_a_lease_and_reaches_a_namespace() {
    assert!(
        Command::new("bash")
            .arg(repo().join("scripts/guest-image.sh"))
            .status()
            .expect("bash")
            .success(),
        "scripts/guest-image.sh failed"
    );
    let (vm_port, tap) = (name("vm"), name("tap"));
    let dir = scratch_dir("vhost");
    let vhost_dir = dir.join("vhost");
    let sw = SwitchProc::start(None, "vhost", &config(&vm_port, &tap, &vhost_dir));
    let socket = vhost_dir.join(&vm_port);
    assert!(
        wait_until(10, || socket.exists()),
        "the switch made no socket at {}: {}",
        socket.display(),
        sw.log()
    );

    let ns_name = name("ns");
    let _ = run("ip", &["netns", "del", &ns_name]);
    sh("ip", &["netns", "add", &ns_name]);
    let ns = Netns { name: ns_name };
    plug(None, &tap, &ns, NS_MAC, "10.92.0.20/24");

    let console = dir.join("console.log");
    let mut guest = Guest::boot(&socket, &console);
    // The lease crossed the switch both ways: DISCOVER/REQUEST read from the guest's TX
    // ring, OFFER/ACK written into its RX ring.
    guest.wait_lease(&sw);
    assert!(
        ns.ping_ok(GUEST_IP, 20),
        "namespace cannot ping the guest\n{}\n{}",
        guest.console(),
        sw.log()
    );
    // TCP both ways: the guest's listener answers one line.
    let out = ns.exec("timeout", &["10", "busybox", "nc", GUEST_IP, "22"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "weft-guest 22",
        "no TCP answer from the guest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        counter(&sw, &vm_port, "rx_frames") >= 4,
        "{}",
        sw.ctl(&["ports"])
    );
    assert!(
        counter(&sw, &vm_port, "tx_frames") >= 4,
        "{}",
        sw.ctl(&["ports"])
    );

    // QEMU goes away and comes back (a guest restart): the port serves it again.
    drop(guest);
    let mut guest = Guest::boot(&socket, &console);
    guest.wait_lease(&sw);
    assert!(
        ns.ping_ok(GUEST_IP, 20),
        "namespace cannot ping the restarted guest\n{}",
        sw.log()
    );
    drop(guest);
    let _ = std::fs::remove_dir_all(&dir);
}
