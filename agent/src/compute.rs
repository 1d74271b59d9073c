//! The compute side of a host agent: a build's host steps over the
//! hypervisor crate's driver. The image comes into the host's cache (once
//! per image), the root disk is a qcow2 overlay on it (ephemeral and swap
//! disks blank), and the domain is defined and started on taps named after
//! the ports, which the host's switch attaches. The control-plane steps
//! (image bytes, ports) are the caller's: in-process in `weft serve`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weft_hypervisor::{disk, Accel, Driver, ExtraDisk, InstanceSpec, InterfaceSpec, PowerState};

/// One NIC of a build: the port's tap, MAC and network MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Tap name (`tap` + 11 characters of the port id).
    pub tap: String,
    /// The port's MAC.
    pub mac: String,
    /// The network's MTU.
    pub mtu: u16,
}

/// What the host needs to know to run one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The server's id (the domain's UUID).
    pub server_id: String,
    /// The image to boot.
    pub image_id: String,
    /// Flavor sizes.
    pub vcpus: u32,
    /// MiB.
    pub memory_mb: u64,
    /// Root disk GiB (0: the image's virtual size).
    pub root_gb: u64,
    /// Ephemeral GiB.
    pub ephemeral_gb: u64,
    /// Swap MiB.
    pub swap_mb: u64,
    /// NICs in guest order.
    pub nics: Vec<Nic>,
    /// Kept in the domain's metadata (project, flavor...).
    pub metadata: BTreeMap<String, String>,
}

/// Where the image bytes come from when the cache lacks them.
pub trait ImageSource {
    /// A reader of image `id`'s data.
    fn open(&self, id: &str) -> Result<Box<dyn Read + Send>, String>;
}

/// A compute host: its driver, image cache and instances directory.
pub struct HostCompute {
    driver: Arc<dyn Driver>,
    cache: disk::ImageCache,
    /// One lock per image being fetched: concurrent builds of one image
    /// wait for the first download rather than each fetching it again.
    fetching: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    instances_dir: PathBuf,
    accel: Accel,
}

fn parse_uuid(id: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(id).map_err(|e| format!("server id {id}: {e}"))
}

impl HostCompute {
    /// A host keeping images in `state_dir/images-cache` and instances in
    /// `instances_dir`, running guests with `accel`.
    pub fn new(
        driver: Arc<dyn Driver>,
        state_dir: &Path,
        instances_dir: &Path,
        accel: Accel,
    ) -> HostCompute {
        HostCompute {
            driver,
            cache: disk::ImageCache::new(state_dir.join("images-cache")),
            fetching: Mutex::new(BTreeMap::new()),
            instances_dir: instances_dir.to_path_buf(),
            accel,
        }
    }

    /// Where instance directories live (scratch space for snapshots too:
    /// the same filesystem as the disks).
    pub fn instances_dir(&self) -> &Path {
        &self.instances_dir
    }

    /// The driver (power actions, console, reconcile).
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Runs `b`: image cached, disks made, domain defined and started.
    /// On a failure the instance's directory and domain are removed again.
    pub fn spawn(&self, b: &Build, images: &dyn ImageSource) -> Result<(), String> {
        let uuid = parse_uuid(&b.server_id)?;
        let t0 = std::time::Instant::now();
        let base = self.cached(&b.image_id, images)?;
        let image_ms = t0.elapsed().as_secs_f64() * 1e3;
        let dir = self.instances_dir.join(uuid.to_string());
        let r = self.make_and_start(b, uuid, &base, &dir);
        match &r {
            // The split the create -> ACTIVE benchmark reads: what weft's
            // own steps took against the hypervisor's define + start.
            Ok(domain_ms) => tracing::info!(
                server = %b.server_id,
                image_ms,
                disk_ms = t0.elapsed().as_secs_f64() * 1e3 - image_ms - domain_ms,
                domain_ms,
                "spawned"
            ),
            Err(_) => {
                let _ = self.driver.destroy(uuid);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        r.map(|_| ())
    }

    /// Disks, then the domain; Ok holds the milliseconds the driver took to
    /// define and start it.
    fn make_and_start(
        &self,
        b: &Build,
        uuid: uuid::Uuid,
        base: &Path,
        dir: &Path,
    ) -> Result<f64, String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // libvirt's QEMU runs as its own user: it must reach the disks.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        let root = dir.join("disk");
        disk::create_overlay(base, &root, b.root_gb).map_err(|e| e.to_string())?;
        let blank = |name: &str, gb: u64| -> Result<Option<ExtraDisk>, String> {
            if gb == 0 {
                return Ok(None);
            }
            let path = dir.join(name);
            disk::create_blank(&path, gb).map_err(|e| e.to_string())?;
            Ok(Some(ExtraDisk { path }))
        };
        let spec = InstanceSpec {
            uuid,
            name: format!("weft-{uuid}"),
            vcpus: b.vcpus,
            memory_mb: b.memory_mb,
            root_disk: root,
            ephemeral: blank("disk.eph0", b.ephemeral_gb)?,
            swap: blank("disk.swap", b.swap_mb.div_ceil(1024))?,
            interfaces: b
                .nics
                .iter()
                .map(|n| InterfaceSpec {
                    tap: n.tap.clone(),
                    mac: n.mac.clone(),
                    mtu: n.mtu,
                })
                .collect(),
            console_log: dir.join("console.log"),
            accel: self.accel,
            metadata: b.metadata.clone(),
        };
        let t = std::time::Instant::now();
        self.driver.spawn(&spec).map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// Domain and disks gone; absent is fine.
    pub fn destroy(&self, server_id: &str) -> Result<(), String> {
        let uuid = parse_uuid(server_id)?;
        self.driver.destroy(uuid).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(self.instances_dir.join(uuid.to_string()));
        Ok(())
    }

    /// The domain's power state.
    pub fn state(&self, server_id: &str) -> Result<PowerState, String> {
        self.driver
            .state(parse_uuid(server_id)?)
            .map_err(|e| e.to_string())
    }

    /// Replaces the root disk with a fresh overlay on image `image_id`
    /// (fetched into the cache if needed) and boots again; the domain's
    /// definition, and so its NICs, stay.
    pub fn rebuild(
        &self,
        server_id: &str,
        image_id: &str,
        root_gb: u64,
        images: &dyn ImageSource,
    ) -> Result<(), String> {
        let uuid = parse_uuid(server_id)?;
        let base = self.cached(image_id, images)?;
        let root = self.instances_dir.join(uuid.to_string()).join("disk");
        self.driver
            .rebuild(uuid, &mut || {
                match std::fs::remove_file(&root) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(weft_hypervisor::Error::io(&root, e))
                    }
                    _ => {}
                }
                disk::create_overlay(&base, &root, root_gb)
            })
            .map_err(|e| e.to_string())
    }

    /// Nova's resize on this host: the guest off, its root disk resized
    /// ([`resize_root`]: grown to `root_gb` with the pre-resize disk kept
    /// beside it, or that copy put back by a revert to a smaller flavor),
    /// the domain redefined with the new size and put back in its power
    /// state.
    pub fn resize(
        &self,
        server_id: &str,
        vcpus: u32,
        memory_mb: u64,
        root_gb: u64,
    ) -> Result<(), String> {
        let uuid = parse_uuid(server_id)?;
        let root = self.instances_dir.join(uuid.to_string()).join("disk");
        self.driver
            .resize(uuid, vcpus, memory_mb, &mut || resize_root(&root, root_gb))
            .map_err(|e| e.to_string())
    }

    /// The server's root disk as a standalone qcow2 at `dest`. A running
    /// guest is paused meanwhile, so the copy is one point in time (what
    /// Nova's cold snapshot gets, without stopping the guest).
    pub fn snapshot(&self, server_id: &str, dest: &Path) -> Result<(), String> {
        let uuid = parse_uuid(server_id)?;
        let root = self.instances_dir.join(uuid.to_string()).join("disk");
        let paused = self.driver.state(uuid).map_err(|e| e.to_string())? == PowerState::Running;
        if paused {
            self.driver.pause(uuid).map_err(|e| e.to_string())?;
        }
        let r = disk::flatten_to(&root, dest).map_err(|e| e.to_string());
        if paused {
            if let Err(e) = self.driver.unpause(uuid) {
                return Err(format!("snapshot taken, but the guest stays paused: {e}"));
            }
        }
        r
    }

    /// The image's cached base file, fetched once: builds that find it
    /// missing queue on the image's lock, and all but the first then find
    /// it in the cache.
    fn cached(&self, image_id: &str, images: &dyn ImageSource) -> Result<PathBuf, String> {
        if let Some(p) = self.cache.get(image_id).map_err(|e| e.to_string())? {
            return Ok(p);
        }
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(image_id.to_string())
            .or_default()
            .clone();
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let r = match self.cache.get(image_id).map_err(|e| e.to_string())? {
            Some(p) => Ok(p),
            None => images.open(image_id).and_then(|mut r| {
                self.cache
                    .install(image_id, &mut r)
                    .map_err(|e| format!("image {image_id}: {e}"))
            }),
        };
        // The last one out forgets the lock (the map holds one reference).
        let mut map = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) == 2 {
            map.remove(image_id);
        }
        r
    }

    /// Drops what downloads cut off by the host's last stop left in the
    /// image cache (for a host starting up, before it builds anything).
    pub fn sweep_image_cache(&self) -> Result<usize, String> {
        self.cache.remove_partials().map_err(|e| e.to_string())
    }

    /// The serial console's last lines.
    pub fn console(&self, server_id: &str, lines: Option<usize>) -> Result<String, String> {
        self.driver
            .console_output(parse_uuid(server_id)?, lines)
            .map_err(|e| e.to_string())
    }
}

/// Where a resize keeps the root disk as it was before (in the instance's
/// directory, so a delete removes it too).
fn pre_resize(root: &Path) -> PathBuf {
    root.with_file_name("disk.pre-resize")
}

/// The root disk's part of a resize, run while the guest is off. Growing
/// (a resize: a flavor's disk never shrinks) first copies the disk aside,
/// as Nova keeps the original until the resize is confirmed; shrinking
/// can only be a revert, which puts that copy back (the guest's writes
/// since the resize are dropped, as in Nova) or, with no copy, keeps the
/// grown disk. A same-size resize drops a copy an earlier, confirmed
/// resize left (confirm has no host step that could).
fn resize_root(root: &Path, root_gb: u64) -> Result<(), weft_hypervisor::Error> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| weft_hypervisor::Error::io(&p, e)
    };
    let saved = pre_resize(root);
    let now = disk::image_info(root)?.virtual_size;
    let want = root_gb << 30;
    if want < now {
        return match std::fs::rename(&saved, root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io(&saved)),
        };
    }
    match std::fs::remove_file(&saved) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&saved)(e)),
        _ => {}
    }
    if want > now {
        std::fs::copy(root, &saved).map_err(io(root))?;
        disk::grow(root, root_gb)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use weft_hypervisor::{FakeDriver, HostResources};

    /// An image source that counts its downloads and is slow, so that
    /// builds started together overlap in the fetch.
    struct Counting(AtomicUsize, Vec<u8>);
    impl ImageSource for Counting {
        fn open(&self, _id: &str) -> Result<Box<dyn Read + Send>, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(Box::new(std::io::Cursor::new(self.1.clone())))
        }
    }

    fn build(id: &str) -> Build {
        Build {
            server_id: id.into(),
            image_id: "img-shared".into(),
            vcpus: 1,
            memory_mb: 64,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            nics: vec![],
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn concurrent_builds_of_one_image_fetch_it_once() {
        let dir = std::env::temp_dir().join(format!("ra-agent-cache-{}", std::process::id()));
        let driver = Arc::new(FakeDriver::new(HostResources {
            vcpus: 8,
            memory_mb: 4096,
            disk_gb: 10,
        }));
        let host = HostCompute::new(driver, &dir, &dir.join("instances"), Accel::Tcg);
        let src = Counting(AtomicUsize::new(0), vec![0u8; 1 << 16]);
        let ids: Vec<String> = (0..6)
            .map(|i| format!("00000000-0000-4000-8000-00000000000{i}"))
            .collect();
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = ids
                .iter()
                .map(|id| {
                    let (host, src) = (&host, &src);
                    s.spawn(move || host.spawn(&build(id), src))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let _ = std::fs::remove_dir_all(&dir);
        for r in results {
            r.expect("every build of the shared image spawns");
        }
        assert_eq!(src.0.load(Ordering::SeqCst), 1, "the image is fetched once");
        assert!(host.fetching.lock().unwrap().is_empty(), "no lock kept");
    }

    fn virtual_size(path: &Path) -> u64 {
        disk::image_info(path).unwrap().virtual_size
    }

    /// Resize grows the root overlay (real qemu-img) to the new flavor's
    /// disk while the guest is off, keeping the disk as it was; a revert to
    /// the smaller flavor puts that disk back, byte for byte.
    #[test]
    fn resize_grows_the_root_disk_and_a_revert_restores_it() {
        let dir = std::env::temp_dir().join(format!("cop-agent-resize-{}", std::process::id()));
        let driver = Arc::new(FakeDriver::new(HostResources {
            vcpus: 8,
            memory_mb: 4096,
            disk_gb: 10,
        }));
        let host = HostCompute::new(driver.clone(), &dir, &dir.join("instances"), Accel::Tcg);
        let src = Counting(AtomicUsize::new(0), vec![0u8; 1 << 16]);
        let id = "00000000-0000-4000-8000-0000000000aa";
        host.spawn(&build(id), &src).unwrap();
        let root = dir.join("instances").join(id).join("disk");
        assert_eq!(virtual_size(&root), 1 << 30);
        let before = std::fs::read(&root).unwrap();

        host.resize(id, 2, 128, 3).unwrap();
        let u = parse_uuid(id).unwrap();
        let (grown, size) = (virtual_size(&root), driver.size(u));
        let kept = pre_resize(&root).exists();
        // Reverted to the smaller flavor: the pre-resize disk is back.
        host.resize(id, 1, 64, 1).unwrap();
        let (restored, after) = (virtual_size(&root), std::fs::read(&root).unwrap());
        let copy_left = pre_resize(&root).exists();
        // Grown again and confirmed (no host step), then a same-size
        // resize: the copy the confirmed one left goes.
        host.resize(id, 2, 128, 2).unwrap();
        host.resize(id, 3, 128, 2).unwrap();
        let stale = pre_resize(&root).exists();
        let missing = host.resize("00000000-0000-4000-8000-0000000000ab", 2, 128, 3);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(grown, 3 << 30, "grown to the new flavor's disk");
        assert_eq!(size, Some((2, 128)));
        assert!(kept, "the pre-resize disk kept while the resize is open");
        assert_eq!(restored, 1 << 30, "the revert restores the old size");
        assert!(after == before, "and the old disk itself");
        assert!(!copy_left && !stale, "no copy left behind");
        assert_eq!(driver.size(u), Some((3, 128)));
        assert!(missing.is_err(), "no such domain");
    }
}
