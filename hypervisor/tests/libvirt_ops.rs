//! The server actions' half in the libvirt driver, against the real
//! libvirtd and a real TCG guest (scripts/guest-image.sh): a NIC
//! hot-plugged into the running domain and unplugged again, the domain
//! resized (redefined with new vCPUs and RAM, its disk grown), a snapshot of its disk
//! flattened into a standalone qcow2, and a rebuild onto that snapshot
//! that boots the guest again on the same NICs. Needs root; fails, never
//! skips. Names: domain `weft-cx-*`, taps `cxtap*`, state under /tmp/cx-*.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use uuid::Uuid;
use weft_hypervisor::disk::{self, ImageCache};
use weft_hypervisor::{
    probe_accel, Driver, InstanceSpec, InterfaceSpec, LibvirtConfig, LibvirtDriver, PowerState,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(script: &str) {
    let st = Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .status()
        .unwrap();
    assert!(st.success(), "scripts/{script} failed");
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the domain and files even when the test panics half way.
struct Cleanup {
    dir: PathBuf,
    domain: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.domain]);
        let _ = virsh(&["undefine", "--managed-save", &self.domain]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nic(tap: &str, mac: &str) -> InterfaceSpec {
    InterfaceSpec {
        tap: tap.into(),
        mac: mac.into(),
        mtu: 1500,
    }
}

fn tap_exists(tap: &str) -> bool {
    Path::new("/sys/class/net").join(tap).exists()
}

#[test]
fn attach_resize_snapshot_rebuild_on_a_real_guest() {
    use std::os::unix::fs::PermissionsExt;
    run("libvirt.sh");
    run("guest-image.sh");
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/tmp/cx-ops-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!("weft-cx-{pid}");
    let _cleanup = Cleanup {
        dir: dir.clone(),
        domain: name.clone(),
    };
    let cfg = LibvirtConfig {
        instances_dir: dir.join("instances"),
        shutdown_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let driver = LibvirtDriver::connect(cfg.clone()).expect("libvirtd answers");
    let cache = ImageCache::new(dir.join("images"));
    let image = repo().join("target/guest/weft-guest.qcow2");
    let base = cache
        .install("weft-guest", &mut std::fs::File::open(&image).unwrap())
        .unwrap();
    let uuid = Uuid::new_v4();
    let inst = cfg.instance_dir(uuid);
    let root = inst.join("disk");
    disk::create_overlay(&base, &root, 1).unwrap();
    let first = nic(&format!("cxtap{}a", pid % 10000), "fa:16:3e:0c:00:01");
    let spec = InstanceSpec {
        uuid,
        name: name.clone(),
        vcpus: 1,
        memory_mb: 256,
        root_disk: root.clone(),
        ephemeral: None,
        swap: None,
        interfaces: vec![first.clone()],
        console_log: inst.join("console.log"),
        accel: probe_accel().accel,
        metadata: Default::default(),
    };
    driver.spawn(&spec).unwrap();
    let up = |d: &LibvirtDriver| {
        d.console_output(uuid, None)
            .unwrap_or_default()
            .contains("WEFT-GUEST up")
    };
    wait_for("the first boot", 180, || up(&driver));

    // Hot-plug: in the live domain (libvirt made the tap) and its definition.
    let second = nic(&format!("cxtap{}b", pid % 10000), "fa:16:3e:0c:00:02");
    driver.attach_interface(uuid, &second).unwrap();
    let live = virsh(&["dumpxml", &name]);
    assert!(
        live.contains(&format!("<target dev='{}'/>", second.tap)),
        "{live}"
    );
    assert!(
        live.contains("<mac address='fa:16:3e:0c:00:02'/>"),
        "{live}"
    );
    assert!(tap_exists(&second.tap), "libvirt made the hot-plugged tap");
    assert!(virsh(&["dumpxml", "--inactive", &name]).contains("fa:16:3e:0c:00:02"));
    // Twice is refused by libvirt (same MAC/tap), with libvirt's words.
    assert!(driver.attach_interface(uuid, &second).is_err());
    // Unplug: gone from the definition at once (the live device leaves when
    // the guest acknowledges the PCI unplug).
    driver.detach_interface(uuid, &second).unwrap();
    assert!(!virsh(&["dumpxml", "--inactive", &name]).contains("fa:16:3e:0c:00:02"));
    wait_for("the unplugged NIC to leave the live domain", 60, || {
        !virsh(&["dumpxml", &name]).contains("fa:16:3e:0c:00:02")
    });
    // Plugged again for the rebuild below, which must keep it.
    driver.attach_interface(uuid, &second).unwrap();

    // Resize: redefined with 2 vCPUs and 384 MiB, running again.
    // Its root disk grown to 2 GiB while it is off (QEMU holds the lock
    // while it runs: qemu-img would fail then).
    driver
        .resize(uuid, 2, 384, &mut || disk::grow(&root, 2).map(drop))
        .unwrap();
    assert_eq!(disk::image_info(&root).unwrap().virtual_size, 2 << 30);
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);
    let xml = virsh(&["dumpxml", &name]);
    assert!(xml.contains(">2</vcpu>"), "{xml}");
    assert!(xml.contains("<memory unit='KiB'>393216</memory>"), "{xml}");
    assert!(
        xml.contains("fa:16:3e:0c:00:02"),
        "NICs kept across the resize"
    );
    assert!(
        driver.resize(uuid, 0, 384, &mut || Ok(())).is_err(),
        "0 vCPUs refused"
    );
    wait_for("the boot after the resize", 180, || up(&driver));

    // Snapshot: paused while the overlay is flattened into one qcow2.
    driver.pause(uuid).unwrap();
    let snap = dir.join("snap/snapshot.qcow2");
    disk::flatten_to(&root, &snap).unwrap();
    driver.unpause(uuid).unwrap();
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&snap)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 2u64 << 30, "the grown size: {info}");
    assert!(info.get("backing-filename").is_none(), "standalone: {info}");

    // Rebuild onto the snapshot: the disk replaced, the guest boots from
    // it again, the NICs (the hot-plugged one too) kept.
    let snap_base = cache
        .install("cx-snapshot", &mut std::fs::File::open(&snap).unwrap())
        .unwrap();
    let mut replaced = false;
    driver
        .rebuild(uuid, &mut || {
            replaced = true;
            std::fs::remove_file(&root).unwrap();
            disk::create_overlay(&snap_base, &root, 1)
        })
        .unwrap();
    assert!(replaced);
    let backing = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&root)
        .output()
        .unwrap();
    let backing: serde_json::Value = serde_json::from_slice(&backing.stdout).unwrap();
    assert_eq!(
        backing["backing-filename"].as_str(),
        Some(snap_base.to_str().unwrap()),
        "{backing}"
    );
    wait_for("the rebuilt guest's boot", 180, || up(&driver));
    let xml = virsh(&["dumpxml", &name]);
    assert!(
        xml.contains(&first.tap) && xml.contains(&second.tap),
        "{xml}"
    );

    driver.destroy(uuid).unwrap();
    assert!(!virsh(&["list", "--all", "--name"]).contains(&name));
    assert!(!tap_exists(&first.tap) && !tap_exists(&second.tap));
}
