//! The libvirt driver against the real libvirtd (qemu:///system) and a real
//! guest: the tiny whole-disk image of scripts/guest-image.sh, booted by
//! QEMU (TCG on hosts without a usable KVM) from a qcow2 overlay, with one
//! NIC on a tap named `hvtap0`. Needs root; fails, never skips, when
//! libvirt is missing. Names: domains `weft-hv-*`, taps `hvtap*`, state
//! under /tmp/hv-*.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use uuid::Uuid;
use weft_hypervisor::disk::{self, ImageCache};
use weft_hypervisor::{
    probe_accel, Driver, Error, ExtraDisk, InstanceSpec, InterfaceSpec, LibvirtConfig,
    LibvirtDriver, PowerState, RebootKind,
};

const TAP: &str = "hvtap0";

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

fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .unwrap()
}

fn tap_exists() -> bool {
    Path::new("/sys/class/net").join(TAP).exists()
}

fn tap_stat(name: &str) -> u64 {
    let p = Path::new("/sys/class/net").join(TAP).join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Polls `f` every 200 ms until it holds or `secs` pass.
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

/// Removes what the test made even when it panics half way.
struct Cleanup {
    dir: PathBuf,
    domains: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.domains {
            let _ = virsh(&["destroy", d]);
            let _ = virsh(&["undefine", "--managed-save", d]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A state dir QEMU (an unprivileged user under libvirt) can traverse.
fn state_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(format!("/tmp/hv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// What the test made: the driver as the agent holds it (shared, behind
/// the trait), the spec, and the files to check after destroy.
struct Fixture {
    driver: std::sync::Arc<dyn Driver>,
    cfg: LibvirtConfig,
    spec: InstanceSpec,
    base: PathBuf,
    ephemeral: PathBuf,
    other: String,
    _cleanup: Cleanup,
}

/// Image cache, overlay and ephemeral disk as the agent will make them, a
/// plain non-weft domain beside ours, and the spec.
fn setup() -> Fixture {
    assert!(
        is_root(),
        "this test needs root (libvirt qemu:///system, taps)"
    );
    run("libvirt.sh");
    run("guest-image.sh");
    let image = repo().join("target/guest/weft-guest.qcow2");
    let dir = state_dir();
    let pid = std::process::id();
    let name = format!("weft-hv-{pid}");
    let other = format!("weft-hv-{pid}-other");
    let cleanup = Cleanup {
        dir: dir.clone(),
        domains: vec![name.clone(), other.clone()],
    };
    let cfg = LibvirtConfig {
        instances_dir: dir.join("instances"),
        shutdown_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let driver: std::sync::Arc<dyn Driver> =
        std::sync::Arc::new(LibvirtDriver::connect(cfg.clone()).expect("libvirtd answers"));
    let accel = probe_accel();
    eprintln!("accelerator: {:?} ({})", accel.accel, accel.reason);

    let cache = ImageCache::new(dir.join("images"));
    let base = cache
        .install("weft-guest", &mut std::fs::File::open(&image).unwrap())
        .unwrap();
    let uuid = Uuid::new_v4();
    let inst = cfg.instance_dir(uuid);
    let overlay = inst.join("disk");
    disk::create_overlay(&base, &overlay, 1).unwrap();
    let ephemeral = inst.join("disk.eph0");
    disk::create_blank(&ephemeral, 1).unwrap();
    assert_eq!(disk::image_info(&overlay).unwrap().virtual_size, 1 << 30);

    // A domain that is not weft's: list() must leave it out.
    let xml = format!("<domain type='qemu'><name>{other}</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os></domain>");
    let other_xml = dir.join("other.xml");
    std::fs::write(&other_xml, xml).unwrap();
    assert!(virsh(&["define", other_xml.to_str().unwrap()])
        .status
        .success());

    let spec = InstanceSpec {
        uuid,
        name,
        vcpus: 1,
        memory_mb: 256,
        root_disk: overlay,
        ephemeral: Some(ExtraDisk {
            path: ephemeral.clone(),
        }),
        swap: None,
        interfaces: vec![InterfaceSpec {
            tap: TAP.into(),
            mac: "fa:16:3e:00:0a:01".into(),
            mtu: 1450,
        }],
        console_log: inst.join("console.log"),
        accel: accel.accel,
        metadata: [("project".to_string(), "hv-test".to_string())].into(),
    };
    Fixture {
        driver,
        cfg,
        spec,
        base,
        ephemeral,
        other,
        _cleanup: cleanup,
    }
}

#[test]
fn guest_boots_on_an_overlay_with_a_tap_and_is_torn_down() {
    let f = setup();
    spawn_and_boot(&f);
    power_operations(&f);
    destroy_leaves_nothing(&f);
}

/// Spawn (refusing a missing disk and a second start), the tap, list(), and
/// the guest's first boot on the console.
fn spawn_and_boot(f: &Fixture) {
    let (driver, uuid) = (&f.driver, f.spec.uuid);
    // A build whose disk is missing defines nothing.
    let mut broken = f.spec.clone();
    broken.root_disk = "/tmp/hv-nonexistent/disk".into();
    assert!(matches!(driver.spawn(&broken), Err(Error::InvalidSpec(_))));
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Absent);

    driver.spawn(&f.spec).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);
    assert!(
        matches!(driver.spawn(&f.spec), Err(Error::AlreadyExists(u)) if u == uuid),
        "never started twice"
    );
    assert!(tap_exists(), "libvirt made the tap");
    assert_eq!(tap_stat("mtu"), 1450);
    assert_eq!(
        driver.list().unwrap(),
        vec![(uuid, PowerState::Running)],
        "only weft's domains"
    );
    // An agent restarted with a new connection finds the same instance.
    let again = LibvirtDriver::connect(f.cfg.clone()).unwrap();
    assert_eq!(again.list().unwrap(), vec![(uuid, PowerState::Running)]);
    drop(again);
    // A weft of another state directory on the same libvirtd never lists
    // it (its reconcile destroys the listed domains no server owns).
    let elsewhere = f.cfg.instances_dir.with_file_name("other-instances");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let stranger = LibvirtDriver::connect(LibvirtConfig {
        instances_dir: elsewhere,
        ..f.cfg.clone()
    })
    .unwrap();
    assert_eq!(stranger.list().unwrap(), vec![], "another weft's domain");
    drop(stranger);
    let xml = virsh(&["dumpxml", &f.spec.name]);
    let xml = String::from_utf8_lossy(&xml.stdout);
    assert!(
        xml.contains(&format!("<source file='{}'", f.ephemeral.display())),
        "{xml}"
    );

    // The guest boots from the overlay, asks for DHCP through the tap (no
    // server answers here), gives up and says it is up.
    wait_for("WEFT-GUEST up on the console", 150, || {
        driver
            .console_output(uuid, None)
            .unwrap()
            .contains("WEFT-GUEST up")
    });
    let console = driver.console_output(uuid, None).unwrap();
    assert!(
        console.contains("udhcpc: broadcasting discover"),
        "{console}"
    );
    assert!(console.contains("WEFT-GUEST no-lease"), "{console}");
    assert!(
        tap_stat("statistics/rx_packets") > 0,
        "the guest's DHCP discovers reached the tap"
    );
    assert_eq!(
        driver.console_output(uuid, Some(1)).unwrap().trim_end(),
        "WEFT-GUEST up"
    );
}

/// Pause, stop/start (a fresh console log, the tap gone and back),
/// suspend while paused, hard reboot.
fn power_operations(f: &Fixture) {
    let (driver, uuid) = (&f.driver, f.spec.uuid);
    driver.pause(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Paused);
    assert!(matches!(
        driver.reboot(uuid, RebootKind::Hard),
        Err(Error::InvalidState { .. })
    ));
    driver.unpause(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);

    // The guest ignores ACPI: stop falls back to destroy after the grace period.
    driver.stop(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Shutoff);
    assert!(!tap_exists(), "the tap goes with the QEMU process");
    driver.stop(uuid).unwrap();
    driver.start(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);
    assert!(tap_exists());
    assert!(
        !driver
            .console_output(uuid, None)
            .unwrap()
            .contains("WEFT-GUEST up"),
        "a fresh log each boot"
    );
    wait_for("the second boot on the console", 120, || {
        driver
            .console_output(uuid, None)
            .unwrap()
            .contains("udhcpc: started")
    });

    // Suspended while paused, it still resumes running.
    driver.pause(uuid).unwrap();
    driver.suspend(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Suspended);
    assert_eq!(driver.list().unwrap(), vec![(uuid, PowerState::Suspended)]);
    assert!(!tap_exists(), "no QEMU while suspended");
    driver.resume(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);
    assert!(tap_exists());
    driver.reboot(uuid, RebootKind::Hard).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Running);

    let hr = driver.host_resources().unwrap();
    assert!(
        hr.vcpus >= 1 && hr.memory_mb > 256 && hr.disk_gb >= 1,
        "{hr:?}"
    );
}

/// Destroy: domain, disks, directory and tap gone, the cache kept; twice is
/// fine; the other domain untouched.
fn destroy_leaves_nothing(f: &Fixture) {
    let (driver, uuid) = (&f.driver, f.spec.uuid);
    let inst = f.cfg.instance_dir(uuid);
    driver.destroy(uuid).unwrap();
    assert_eq!(driver.state(uuid).unwrap(), PowerState::Absent);
    assert!(
        !virsh(&["dominfo", &f.spec.name]).status.success(),
        "domain undefined"
    );
    assert!(
        !f.spec.root_disk.exists() && !inst.exists(),
        "instance dir and overlay removed"
    );
    assert!(!f.ephemeral.exists());
    assert!(!tap_exists(), "tap gone");
    assert!(f.base.exists(), "the cached image stays for the next build");
    driver.destroy(uuid).unwrap();
    assert!(driver.list().unwrap().is_empty());
    assert!(matches!(driver.start(uuid), Err(Error::NotFound(_))));
    assert!(
        virsh(&["dominfo", &f.other]).status.success(),
        "the other domain was not touched"
    );
}

fn is_root() -> bool {
    // /proc/self/status "Uid:\t<real>\t<effective>..." (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

#[test]
fn connecting_to_a_missing_libvirt_fails_clearly() {
    let cfg = LibvirtConfig {
        uri: "qemu+unix:///system?socket=/nonexistent/hv-sock".into(),
        ..Default::default()
    };
    let err = LibvirtDriver::connect(cfg).unwrap_err().to_string();
    assert!(
        err.starts_with("libvirt: connect to qemu+unix:///system"),
        "{err}"
    );
}
