//! The crate's only `unsafe`: two syscalls the standard library lacks
//! (statvfs, and the KVM ioctls of the accelerator probe).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `(total, available)` bytes of the filesystem holding `path`.
pub(crate) fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL"))?;
    // SAFETY: statvfs is plain old data, all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string and `st` a valid out-pointer,
    // both alive for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize;
    Ok((st.f_blocks * frsize, st.f_bavail * frsize))
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
/// `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)`.
const KVM_GET_SUPPORTED_CPUID: libc::c_ulong = 0xC008_AE05;
const KVM_API_VERSION: libc::c_int = 12;

/// `struct kvm_cpuid_entry2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CpuidEntry {
    function: u32,
    index: u32,
    flags: u32,
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
    padding: [u32; 3],
}

/// `struct kvm_cpuid2` with room for the entries.
#[repr(C)]
struct Cpuid2 {
    nent: u32,
    padding: u32,
    entries: [CpuidEntry; 256],
}

/// KVM's API version on an open /dev/kvm.
pub(crate) fn kvm_api_version(kvm: &File) -> std::io::Result<i32> {
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int.
    let v = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if v < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// CPUID leaf 1's ECX as KVM can offer it to guests.
pub(crate) fn kvm_cpuid1_ecx(kvm: &File) -> std::io::Result<u32> {
    let mut buf = Box::new(Cpuid2 {
        nent: 256,
        padding: 0,
        entries: [CpuidEntry::default(); 256],
    });
    // SAFETY: `buf` is a kvm_cpuid2 whose `nent` says how many entries follow
    // it in memory (256, all allocated); the kernel writes at most that many.
    let r = unsafe {
        libc::ioctl(
            kvm.as_raw_fd(),
            KVM_GET_SUPPORTED_CPUID,
            &mut *buf as *mut Cpuid2,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = (buf.nent as usize).min(buf.entries.len());
    Ok(buf.entries[..n]
        .iter()
        .find(|e| e.function == 1)
        .map_or(0, |e| e.ecx))
}

/// The API version weft's probe requires (KVM's stable one since 2.6.22).
pub(crate) fn kvm_expected_api() -> i32 {
    KVM_API_VERSION
}
