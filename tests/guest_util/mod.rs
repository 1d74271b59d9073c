//! What the real-guest tests (a TCG guest of the whole-disk test image
//! under libvirt) share: the repo's scripts, virsh, polling, and the user
//! data that makes a guest ping its peer and say so on its console.
#![allow(dead_code)] // each test uses its own part

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs scripts/`name` (idempotent set-up: libvirt.sh, guest-image.sh); a
/// failure fails the test, never skips it.
pub fn script(name: &str) {
    let st = Command::new("bash")
        .arg(repo().join("scripts").join(name))
        .status()
        .unwrap();
    assert!(st.success(), "scripts/{name} failed");
}

/// `virsh -c qemu:///system ARGS`'s stdout, trimmed.
pub fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .output()
        .expect("virsh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every half second until it holds, failing after `secs`.
pub fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// User data (a script the guest's init runs, as cloud-init does) that
/// pings `peer` for up to two minutes and prints `WEFT-PING ok PEER` or
/// `WEFT-PING failed PEER` on the serial console.
pub fn ping_peer_user_data(peer: &str) -> String {
    format!(
        "#!/bin/sh\nfor i in $(seq 120); do\n  if ping -c 1 -W 1 {peer} >/dev/null; then echo WEFT-PING ok {peer}; exit 0; fi\n  sleep 1\ndone\necho WEFT-PING failed {peer}\n"
    )
}
