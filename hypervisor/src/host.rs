//! What the host offers (placement's VCPU, MEMORY_MB and DISK_GB inventory)
//! and which accelerator QEMU can use on it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{sys, Accel, Error};

/// The host's capacity, read from the host itself (never configured), for
/// the resource provider's inventory; allocation ratios are applied by the
/// caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostResources {
    /// Online CPUs this process may run on (what `nproc` prints).
    pub vcpus: u32,
    /// MemTotal from /proc/meminfo, in MiB.
    pub memory_mb: u64,
    /// Size of the filesystem holding the instances directory, in GiB.
    pub disk_gb: u64,
}

/// Reads [`HostResources`] for a host keeping its instances in `instances_dir`.
pub fn host_resources(instances_dir: &Path) -> Result<HostResources, Error> {
    let vcpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| Error::io("/proc/meminfo", e))?;
    let memory_mb =
        mem_total_mb(&meminfo).ok_or_else(|| Error::Host("no MemTotal in /proc/meminfo".into()))?;
    let (total, _) = sys::statvfs(instances_dir).map_err(|e| Error::io(instances_dir, e))?;
    Ok(HostResources {
        vcpus,
        memory_mb,
        disk_gb: total >> 30,
    })
}

/// `MemTotal:  24684288 kB` -> MiB.
fn mem_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Which accelerator this host's QEMU can use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelProbe {
    /// KVM when every check passed, TCG otherwise.
    pub accel: Accel,
    /// What decided it, for the agent's startup log.
    pub reason: String,
}

/// Probes /dev/kvm the way it matters for libvirt's QEMU:
/// 1. it opens read-write and answers KVM_GET_API_VERSION with 12;
/// 2. libvirt's QEMU user can open it too: libvirt runs QEMU as an
///    unprivileged user in group `kvm`, so the device must be group- or
///    world-read-writable (Debian's udev rule makes it 0660 root:kvm);
/// 3. KVM offers guests SSE3 in CPUID leaf 1, as any real KVM on an x86-64
///    host does. Some sandboxes expose a /dev/kvm that passes 1 and 2 but
///    cannot run a firmware: QEMU's guests stop at once ("paused"). Such a
///    KVM lacks SSE3, so this check sends those hosts to TCG.
pub fn probe_accel() -> AccelProbe {
    probe_accel_at(Path::new("/dev/kvm"))
}

fn probe_accel_at(dev: &Path) -> AccelProbe {
    let tcg = |reason: String| AccelProbe {
        accel: Accel::Tcg,
        reason,
    };
    let kvm = match File::options().read(true).write(true).open(dev) {
        Ok(f) => f,
        Err(e) => return tcg(format!("{} does not open read-write: {e}", dev.display())),
    };
    match sys::kvm_api_version(&kvm) {
        Ok(v) if v == sys::kvm_expected_api() => {}
        Ok(v) => {
            return tcg(format!(
                "KVM API version {v}, not {}",
                sys::kvm_expected_api()
            ))
        }
        Err(e) => return tcg(format!("KVM_GET_API_VERSION failed: {e}")),
    }
    let mode = kvm.metadata().map_or(0, |m| m.mode());
    if mode & 0o060 != 0o060 && mode & 0o006 != 0o006 {
        return tcg(format!(
            "{} is mode {:o}: QEMU's user (group kvm) cannot open it",
            dev.display(),
            mode & 0o777
        ));
    }
    match sys::kvm_cpuid1_ecx(&kvm) {
        Ok(ecx) if ecx & 1 == 1 => AccelProbe {
            accel: Accel::Kvm,
            reason: "/dev/kvm is usable".into(),
        },
        Ok(_) => tcg("KVM does not offer SSE3 to guests: not a working KVM".into()),
        Err(e) => tcg(format!("KVM_GET_SUPPORTED_CPUID failed: {e}")),
    }
}

/// The last `max_lines` lines of a console log (all of it for `None`), as
/// Nova's `os-getConsoleOutput` returns them. A log not written yet is empty.
pub fn console_tail(log: &Path, max_lines: Option<usize>) -> Result<String, Error> {
    let bytes = match std::fs::read(log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::io(log, e)),
    };
    Ok(tail_lines(&String::from_utf8_lossy(&bytes), max_lines))
}

fn tail_lines(text: &str, max_lines: Option<usize>) -> String {
    let Some(max) = max_lines else {
        return text.to_string();
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines[lines.len().saturating_sub(max)..].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_in_mib() {
        let text = "MemTotal:       24684288 kB\nMemFree:        14527360 kB\n";
        assert_eq!(mem_total_mb(text), Some(24105));
        assert_eq!(mem_total_mb("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let log = "a\nb\nc\n";
        assert_eq!(tail_lines(log, Some(2)), "b\nc\n");
        assert_eq!(tail_lines(log, Some(10)), log);
        assert_eq!(tail_lines(log, None), log);
        assert_eq!(tail_lines("a\nb", Some(1)), "b");
        assert_eq!(tail_lines(log, Some(0)), "");
    }

    #[test]
    fn host_resources_are_real_numbers() {
        let r = host_resources(Path::new("/")).unwrap();
        assert!(r.vcpus >= 1 && r.memory_mb >= 64 && r.disk_gb >= 1, "{r:?}");
    }

    #[test]
    fn no_device_means_tcg() {
        let p = probe_accel_at(Path::new("/nonexistent/kvm"));
        assert_eq!(p.accel, Accel::Tcg);
        assert!(p.reason.contains("does not open"), "{}", p.reason);
        // Not a KVM device at all: the ioctl fails.
        assert_eq!(probe_accel_at(Path::new("/dev/null")).accel, Accel::Tcg);
    }

    #[test]
    fn missing_console_log_is_empty() {
        assert_eq!(
            console_tail(Path::new("/nonexistent/console.log"), Some(5)).unwrap(),
            ""
        );
    }
}
