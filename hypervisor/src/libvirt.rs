//! The [`Driver`] over libvirt, through the `virt` crate (libvirt's C API,
//! one call each). libvirt owns QEMU's process, taps, console log (virtlogd)
//! and saved-state files; this shell only maps weft's calls onto it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

use crate::driver::PowerOp;
use crate::{
    domain_xml, interface_xml, resized_xml, Driver, Error, HostResources, InstanceSpec,
    InterfaceSpec, PowerState, RebootKind, METADATA_NS,
};

/// The `<weft:meta>` key naming a domain's owner (see `LibvirtDriver::owner`).
const OWNER_KEY: &str = "owner";

/// Whether libvirt's copy of weft's `<metadata>` element names `owner` (libvirt
/// may rewrite the attribute quotes).
fn owned_by(meta: &str, owner: &str) -> bool {
    let v = crate::xml::escape(owner);
    meta.contains(&format!("key='{OWNER_KEY}'>{v}<"))
        || meta.contains(&format!("key=\"{OWNER_KEY}\">{v}<"))
}

/// Where and how the libvirt driver runs instances.
#[derive(Clone, Debug)]
pub struct LibvirtConfig {
    /// libvirt URI; `qemu:///system` (root's libvirtd, QEMU as an
    /// unprivileged user) on a compute host.
    pub uri: String,
    /// Parent of the per-instance directories (`<dir>/<uuid>/disk`,
    /// `console.log`); [`Driver::destroy`] removes `<dir>/<uuid>`.
    pub instances_dir: PathBuf,
    /// How long a stop or soft reboot waits for the guest to power itself
    /// off before pulling the plug (Nova's `shutdown_timeout`, 60 s).
    pub shutdown_timeout: Duration,
}

impl Default for LibvirtConfig {
    fn default() -> Self {
        Self {
            uri: "qemu:///system".into(),
            instances_dir: "/var/lib/weft/instances".into(),
            shutdown_timeout: Duration::from_secs(60),
        }
    }
}

impl LibvirtConfig {
    /// The directory of one instance: where the agent puts its disks and
    /// console log, and what destroy removes.
    pub fn instance_dir(&self, uuid: Uuid) -> PathBuf {
        self.instances_dir.join(uuid.to_string())
    }
}

/// See the module docs. One connection, shared by every caller: libvirt
/// connections are thread-safe.
pub struct LibvirtDriver {
    conn: Connect,
    cfg: LibvirtConfig,
}

impl std::fmt::Debug for LibvirtDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtDriver")
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn lv(op: impl Into<String>) -> impl FnOnce(virt::error::Error) -> Error {
    move |e| Error::Libvirt {
        op: op.into(),
        message: e.message().to_string(),
    }
}

impl LibvirtDriver {
    /// Connects to libvirt; fails (does not fall back to anything) when
    /// libvirtd does not answer, so a misconfigured host is seen at start.
    pub fn connect(cfg: LibvirtConfig) -> Result<Self, Error> {
        // libvirt prints every error to stderr by default; weft returns them.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(&cfg.uri)).map_err(lv(format!("connect to {}", cfg.uri)))?;
        Ok(Self { conn, cfg })
    }

    /// The config it runs with.
    pub fn config(&self) -> &LibvirtConfig {
        &self.cfg
    }

    /// Who owns the domains this driver defines: its instances directory
    /// (one per weft state directory, the same across restarts).
    fn owner(&self) -> String {
        let dir = &self.cfg.instances_dir;
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    }

    /// The domain, or `None` when libvirt has none with this uuid.
    fn lookup(&self, uuid: Uuid) -> Result<Option<Domain>, Error> {
        match Domain::lookup_by_uuid(&self.conn, uuid) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.code() == ErrorNumber::NoDomain => Ok(None),
            Err(e) => Err(lv(format!("look up {uuid}"))(e)),
        }
    }

    fn domain(&self, uuid: Uuid) -> Result<Domain, Error> {
        self.lookup(uuid)?.ok_or(Error::NotFound(uuid))
    }

    fn state_of(dom: &Domain, uuid: Uuid) -> Result<PowerState, Error> {
        let (state, _reason) = dom.get_state().map_err(lv(format!("state of {uuid}")))?;
        Ok(match state {
            sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED | sys::VIR_DOMAIN_SHUTDOWN => {
                PowerState::Running
            }
            sys::VIR_DOMAIN_PAUSED => PowerState::Paused,
            sys::VIR_DOMAIN_PMSUSPENDED => PowerState::Suspended,
            sys::VIR_DOMAIN_CRASHED => PowerState::Crashed,
            _ if dom.has_managed_save(0).unwrap_or(false) => PowerState::Suspended,
            _ => PowerState::Shutoff,
        })
    }

    /// Asks the guest to power off (ACPI) and waits up to `timeout`;
    /// `Ok(false)` if it is still running then.
    fn shutdown_and_wait(
        &self,
        dom: &Domain,
        uuid: Uuid,
        timeout: Duration,
    ) -> Result<bool, Error> {
        if timeout.is_zero() || dom.shutdown().is_err() {
            return Ok(false);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !dom.is_active().map_err(lv(format!("state of {uuid}")))? {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(false)
    }

    /// Pulls the plug; a domain that is already off is fine.
    fn power_off(dom: &Domain, uuid: Uuid) -> Result<(), Error> {
        match dom.destroy() {
            Ok(()) => Ok(()),
            Err(e) if e.code() == ErrorNumber::OperationInvalid => Ok(()),
            Err(e) => Err(lv(format!("destroy {uuid}"))(e)),
        }
    }

    /// Where a device change applies: the persistent definition always, the
    /// running guest too when there is one.
    fn affect(&self, dom: &Domain, uuid: Uuid) -> Result<u32, Error> {
        let live = dom.is_active().map_err(lv(format!("state of {uuid}")))?;
        Ok(if live {
            sys::VIR_DOMAIN_AFFECT_LIVE | sys::VIR_DOMAIN_AFFECT_CONFIG
        } else {
            sys::VIR_DOMAIN_AFFECT_CONFIG
        })
    }

    fn power(&self, uuid: Uuid, op: PowerOp, kind: RebootKind) -> Result<(), Error> {
        let dom = self.domain(uuid)?;
        let from = Self::state_of(&dom, uuid)?;
        if op.plan(uuid, from)?.is_none() {
            return Ok(());
        }
        let what = format!("{} {uuid}", op.name());
        match op {
            // A managed-save image, if any, is restored by create (resume).
            PowerOp::Start | PowerOp::Resume => dom.create().map(drop).map_err(lv(what)),
            PowerOp::Stop => {
                if from == PowerState::Suspended {
                    // Stopping a suspended guest forgets its saved memory.
                    return dom.managed_save_remove(0).map(drop).map_err(lv(what));
                }
                let clean = from == PowerState::Running
                    && self.shutdown_and_wait(&dom, uuid, self.cfg.shutdown_timeout)?;
                if !clean {
                    Self::power_off(&dom, uuid)?;
                }
                Ok(())
            }
            PowerOp::Reboot => {
                let clean = kind == RebootKind::Soft
                    && self.shutdown_and_wait(&dom, uuid, self.cfg.shutdown_timeout)?;
                if !clean {
                    Self::power_off(&dom, uuid)?;
                }
                dom.create().map(drop).map_err(lv(what))
            }
            PowerOp::Pause => dom.suspend().map(drop).map_err(lv(what)),
            PowerOp::Unpause => dom.resume().map(drop).map_err(lv(what)),
            // SAVE_RUNNING: a guest suspended while paused resumes running,
            // as resume promises (libvirt would otherwise restore it paused).
            PowerOp::Suspend => dom
                .managed_save(sys::VIR_DOMAIN_SAVE_RUNNING)
                .map(drop)
                .map_err(lv(what)),
        }
    }
}

impl Drop for LibvirtDriver {
    fn drop(&mut self) {
        let _ = self.conn.close();
    }
}

/// Everything libvirt keeps beside a persistent domain, removed with it.
const UNDEFINE_ALL: sys::virDomainUndefineFlagsValues = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | sys::VIR_DOMAIN_UNDEFINE_NVRAM
    | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;

impl Driver for LibvirtDriver {
    fn spawn(&self, spec: &InstanceSpec) -> Result<(), Error> {
        spec.validate()?;
        if self.lookup(spec.uuid)?.is_some() {
            return Err(Error::AlreadyExists(spec.uuid));
        }
        if !spec.root_disk.is_file() {
            return Err(Error::InvalidSpec(format!(
                "root disk {} does not exist",
                spec.root_disk.display()
            )));
        }
        if let Some(dir) = spec.console_log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // Stamp the domain with its owner, so that `list` (and so the
        // agent's reconcile, which destroys what no server owns) never
        // reaches for another deployment's guests on the same libvirtd.
        let mut owned = spec.clone();
        owned.metadata.insert(OWNER_KEY.into(), self.owner());
        let dom = Domain::define_xml(&self.conn, &domain_xml(&owned))
            .map_err(lv(format!("define {}", spec.name)))?;
        if let Err(e) = dom.create() {
            // Leave nothing defined for a build that did not start.
            let _ = dom.undefine_flags(UNDEFINE_ALL);
            return Err(lv(format!("start {}", spec.name))(e));
        }
        Ok(())
    }

    fn destroy(&self, uuid: Uuid) -> Result<(), Error> {
        if let Some(dom) = self.lookup(uuid)? {
            Self::power_off(&dom, uuid)?;
            match dom.undefine_flags(UNDEFINE_ALL) {
                Ok(()) => {}
                // Gone meanwhile (another destroy): that is the goal.
                Err(e) if e.code() == ErrorNumber::NoDomain => {}
                Err(e) => return Err(lv(format!("undefine {uuid}"))(e)),
            }
        }
        let dir = self.cfg.instance_dir(uuid);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&dir, e)),
            _ => Ok(()),
        }
    }

    fn start(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Start, RebootKind::Hard)
    }

    fn stop(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Stop, RebootKind::Soft)
    }

    fn reboot(&self, uuid: Uuid, kind: RebootKind) -> Result<(), Error> {
        self.power(uuid, PowerOp::Reboot, kind)
    }

    fn pause(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Pause, RebootKind::Hard)
    }

    fn unpause(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Unpause, RebootKind::Hard)
    }

    fn suspend(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Suspend, RebootKind::Hard)
    }

    fn resume(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Resume, RebootKind::Hard)
    }

    fn state(&self, uuid: Uuid) -> Result<PowerState, Error> {
        match self.lookup(uuid)? {
            Some(dom) => Self::state_of(&dom, uuid),
            None => Ok(PowerState::Absent),
        }
    }

    /// Domains carrying weft's `<metadata>` element; any other domain on the
    /// host (an operator's, another tool's) is not weft's to reconcile.
    fn list(&self) -> Result<Vec<(Uuid, PowerState)>, Error> {
        let doms = self.conn.list_all_domains(0).map_err(lv("list domains"))?;
        let mut out = Vec::new();
        let mine = self.owner();
        for dom in doms {
            // weft's domains of this driver's instances directory only: a
            // domain of another weft (another state directory on the same
            // libvirtd) or of no weft at all is never listed.
            match dom.get_metadata(
                sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(METADATA_NS),
                0,
            ) {
                Ok(meta) if owned_by(&meta, &mine) => {}
                _ => continue,
            }
            let uuid = dom.get_uuid().map_err(lv("domain uuid"))?;
            match Self::state_of(&dom, uuid) {
                Ok(state) => out.push((uuid, state)),
                // Undefined between the listing and now.
                Err(_) if self.lookup(uuid)?.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(u, _)| *u);
        Ok(out)
    }

    fn console_output(&self, uuid: Uuid, max_lines: Option<usize>) -> Result<String, Error> {
        let xml = self
            .domain(uuid)?
            .get_xml_desc(0)
            .map_err(lv(format!("XML of {uuid}")))?;
        match log_path(&xml) {
            Some(path) => crate::console_tail(Path::new(&path), max_lines),
            None => Ok(String::new()),
        }
    }

    fn host_resources(&self) -> Result<HostResources, Error> {
        let dir = &self.cfg.instances_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::host_resources(dir)
    }

    fn attach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error> {
        crate::spec::validate_nic(nic)?;
        let dom = self.domain(uuid)?;
        dom.attach_device_flags(&interface_xml(nic), self.affect(&dom, uuid)?)
            .map(drop)
            .map_err(lv(format!("attach interface {} to {uuid}", nic.mac)))
    }

    fn detach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error> {
        let dom = self.domain(uuid)?;
        // libvirt finds the device by its MAC; the rest must agree with it.
        dom.detach_device_flags(&interface_xml(nic), self.affect(&dom, uuid)?)
            .map(drop)
            .map_err(lv(format!("detach interface {} from {uuid}", nic.mac)))
    }

    fn resize(
        &self,
        uuid: Uuid,
        vcpus: u32,
        memory_mb: u64,
        disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        crate::spec::validate_size(vcpus, memory_mb)?;
        let dom = self.domain(uuid)?;
        let was = Self::state_of(&dom, uuid)?;
        let xml = dom
            .get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(lv(format!("XML of {uuid}")))?;
        let next = resized_xml(&xml, vcpus, memory_mb).ok_or_else(|| {
            Error::InvalidSpec(format!("domain {uuid} has no <vcpu>/<memory> to resize"))
        })?;
        if was != PowerState::Shutoff {
            // As Nova's resize: the guest is off while its size changes (a
            // managed save would not fit the new size, so it goes too).
            Self::power_off(&dom, uuid)?;
            if dom.has_managed_save(0).unwrap_or(false) {
                dom.managed_save_remove(0)
                    .map_err(lv(format!("drop saved state of {uuid}")))?;
            }
        }
        disks()?;
        Domain::define_xml(&self.conn, &next).map_err(lv(format!("redefine {uuid}")))?;
        if was != PowerState::Shutoff {
            dom.create()
                .map(drop)
                .map_err(lv(format!("start {uuid}")))?;
        }
        Ok(())
    }

    fn rebuild(
        &self,
        uuid: Uuid,
        replace_disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let dom = self.domain(uuid)?;
        Self::power_off(&dom, uuid)?;
        if dom.has_managed_save(0).unwrap_or(false) {
            dom.managed_save_remove(0)
                .map_err(lv(format!("drop saved state of {uuid}")))?;
        }
        replace_disks()?;
        dom.create().map(drop).map_err(lv(format!("start {uuid}")))
    }
}

/// The serial console's log file in a domain's XML as libvirt returns it
/// (the one place that knows it, whatever path the spec chose).
fn log_path(xml: &str) -> Option<String> {
    let serial = &xml[xml.find("<serial")?..];
    let at = serial.find("<log file=")? + "<log file=".len();
    let quote = serial[at..].chars().next()?;
    let rest = &serial[at + 1..];
    Some(rest[..rest.find(quote)?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_console_log_in_libvirts_xml() {
        let xml = "<domain><devices><serial type='pty'>\n<source path='/dev/pts/3'/>\n<log file='/i/u/console.log' append='off'/></serial></devices></domain>";
        assert_eq!(log_path(xml).as_deref(), Some("/i/u/console.log"));
        assert_eq!(
            log_path("<serial type=\"pty\"><log file=\"/a b\"/>").as_deref(),
            Some("/a b")
        );
        assert_eq!(log_path("<domain><serial type='pty'/></domain>"), None);
    }

    #[test]
    fn instance_dirs_are_per_uuid() {
        let cfg = LibvirtConfig {
            instances_dir: "/x".into(),
            ..Default::default()
        };
        assert_eq!(
            cfg.instance_dir(Uuid::nil()),
            PathBuf::from("/x/00000000-0000-0000-0000-000000000000")
        );
    }
}
