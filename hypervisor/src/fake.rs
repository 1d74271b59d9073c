//! An in-memory driver for tests that need many hosts (the scheduler's
//! 100- and 1,000-host runs) and no guests. It keeps the same contract as
//! the libvirt driver: the same spec validation, duplicate refusal, power
//! state rules and idempotent destroy. It is never a default: a host runs
//! it only when its config names it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::driver::PowerOp;
use crate::{Driver, Error, HostResources, InstanceSpec, InterfaceSpec, PowerState, RebootKind};

/// See the module docs.
#[derive(Debug)]
pub struct FakeDriver {
    resources: HostResources,
    instances: Mutex<BTreeMap<Uuid, Fake>>,
}

#[derive(Debug)]
struct Fake {
    name: String,
    state: PowerState,
    boots: u32,
    nics: Vec<InterfaceSpec>,
    vcpus: u32,
    memory_mb: u64,
}

impl FakeDriver {
    /// A fake host of the given size (what `host_resources` reports).
    pub fn new(resources: HostResources) -> Self {
        Self {
            resources,
            instances: Mutex::new(BTreeMap::new()),
        }
    }

    /// The NICs an instance has now (what libvirt's XML would list).
    pub fn interfaces(&self, uuid: Uuid) -> Option<Vec<InterfaceSpec>> {
        self.with(|map| map.get(&uuid).map(|f| f.nics.clone()))
    }

    /// (vCPUs, MiB) an instance is defined with now.
    pub fn size(&self, uuid: Uuid) -> Option<(u32, u64)> {
        self.with(|map| map.get(&uuid).map(|f| (f.vcpus, f.memory_mb)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Uuid, Fake>) -> T) -> T {
        // A panic elsewhere must not make every later call panic too.
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    fn power(&self, uuid: Uuid, op: PowerOp) -> Result<(), Error> {
        self.with(|map| {
            let state = map.get(&uuid).map_or(PowerState::Absent, |f| f.state);
            if let Some(to) = op.plan(uuid, state)? {
                let f = map.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
                if to == PowerState::Running && matches!(op, PowerOp::Start | PowerOp::Reboot) {
                    f.boots += 1;
                }
                f.state = to;
            }
            Ok(())
        })
    }
}

impl Driver for FakeDriver {
    fn spawn(&self, spec: &InstanceSpec) -> Result<(), Error> {
        spec.validate()?;
        self.with(|map| {
            if map.contains_key(&spec.uuid) {
                return Err(Error::AlreadyExists(spec.uuid));
            }
            map.insert(
                spec.uuid,
                Fake {
                    name: spec.name.clone(),
                    state: PowerState::Running,
                    boots: 1,
                    nics: spec.interfaces.clone(),
                    vcpus: spec.vcpus,
                    memory_mb: spec.memory_mb,
                },
            );
            Ok(())
        })
    }

    fn destroy(&self, uuid: Uuid) -> Result<(), Error> {
        self.with(|map| map.remove(&uuid));
        Ok(())
    }

    fn start(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Start)
    }

    fn stop(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Stop)
    }

    fn reboot(&self, uuid: Uuid, _kind: RebootKind) -> Result<(), Error> {
        self.power(uuid, PowerOp::Reboot)
    }

    fn pause(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Pause)
    }

    fn unpause(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Unpause)
    }

    fn suspend(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Suspend)
    }

    fn resume(&self, uuid: Uuid) -> Result<(), Error> {
        self.power(uuid, PowerOp::Resume)
    }

    fn state(&self, uuid: Uuid) -> Result<PowerState, Error> {
        Ok(self.with(|map| map.get(&uuid).map_or(PowerState::Absent, |f| f.state)))
    }

    fn list(&self) -> Result<Vec<(Uuid, PowerState)>, Error> {
        Ok(self.with(|map| map.iter().map(|(u, f)| (*u, f.state)).collect()))
    }

    /// One line per boot, so tests can see a reboot happened.
    fn console_output(&self, uuid: Uuid, max_lines: Option<usize>) -> Result<String, Error> {
        let (name, boots) = self
            .with(|map| map.get(&uuid).map(|f| (f.name.clone(), f.boots)))
            .ok_or(Error::NotFound(uuid))?;
        let lines: Vec<String> = (1..=boots)
            .map(|b| format!("fake {name} boot {b}\n"))
            .collect();
        let skip = max_lines.map_or(0, |m| lines.len().saturating_sub(m));
        Ok(lines[skip..].concat())
    }

    fn host_resources(&self) -> Result<HostResources, Error> {
        Ok(self.resources)
    }

    fn attach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error> {
        crate::spec::validate_nic(nic)?;
        self.with(|map| {
            let f = map.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
            if f.nics.iter().any(|n| n.mac == nic.mac || n.tap == nic.tap) {
                return Err(Error::InvalidSpec(format!(
                    "interface {} is already attached",
                    nic.mac
                )));
            }
            f.nics.push(nic.clone());
            Ok(())
        })
    }

    fn detach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error> {
        self.with(|map| {
            let f = map.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
            let before = f.nics.len();
            f.nics.retain(|n| n.mac != nic.mac);
            if f.nics.len() == before {
                return Err(Error::InvalidSpec(format!(
                    "no interface with MAC {} to detach",
                    nic.mac
                )));
            }
            Ok(())
        })
    }

    fn resize(
        &self,
        uuid: Uuid,
        vcpus: u32,
        memory_mb: u64,
        disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        crate::spec::validate_size(vcpus, memory_mb)?;
        if self.state(uuid)? == PowerState::Absent {
            return Err(Error::NotFound(uuid));
        }
        disks()?;
        self.with(|map| {
            let f = map.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
            (f.vcpus, f.memory_mb) = (vcpus, memory_mb);
            if f.state == PowerState::Running {
                f.boots += 1;
            }
            Ok(())
        })
    }

    fn rebuild(
        &self,
        uuid: Uuid,
        replace_disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.state(uuid)? == PowerState::Absent {
            return Err(Error::NotFound(uuid));
        }
        self.with(|map| map.get_mut(&uuid).map(|f| f.state = PowerState::Shutoff));
        replace_disks()?;
        self.with(|map| {
            let f = map.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
            f.state = PowerState::Running;
            f.boots += 1;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::sample;

    fn host() -> FakeDriver {
        FakeDriver::new(HostResources {
            vcpus: 8,
            memory_mb: 16384,
            disk_gb: 100,
        })
    }

    #[test]
    fn lifecycle() {
        let d = host();
        let spec = sample();
        let u = spec.uuid;
        d.spawn(&spec).unwrap();
        assert!(matches!(d.spawn(&spec), Err(Error::AlreadyExists(x)) if x == u));
        assert_eq!(d.state(u).unwrap(), PowerState::Running);
        d.pause(u).unwrap();
        assert_eq!(d.state(u).unwrap(), PowerState::Paused);
        assert!(matches!(
            d.reboot(u, RebootKind::Hard),
            Err(Error::InvalidState { .. })
        ));
        d.unpause(u).unwrap();
        d.reboot(u, RebootKind::Soft).unwrap();
        assert_eq!(
            d.console_output(u, Some(1)).unwrap(),
            "fake weft-hv-sample boot 2\n"
        );
        d.suspend(u).unwrap();
        assert_eq!(d.state(u).unwrap(), PowerState::Suspended);
        d.resume(u).unwrap();
        d.stop(u).unwrap();
        d.stop(u).unwrap();
        assert_eq!(d.list().unwrap(), vec![(u, PowerState::Shutoff)]);
        d.start(u).unwrap();
        assert_eq!(d.console_output(u, None).unwrap().lines().count(), 3);
        d.destroy(u).unwrap();
        d.destroy(u).unwrap();
        assert_eq!(d.state(u).unwrap(), PowerState::Absent);
        assert!(d.list().unwrap().is_empty());
        assert!(matches!(d.start(u), Err(Error::NotFound(_))));
        assert_eq!(d.host_resources().unwrap().vcpus, 8);
    }

    #[test]
    fn actions_keep_the_libvirt_contract() {
        let d = host();
        let spec = sample();
        let u = spec.uuid;
        d.spawn(&spec).unwrap();
        let mut nic = spec.interfaces[0].clone();
        assert!(d.attach_interface(u, &nic).is_err(), "same MAC twice");
        nic.mac = "fa:16:3e:00:00:02".into();
        nic.tap = "tapsecond".into();
        d.attach_interface(u, &nic).unwrap();
        assert_eq!(d.interfaces(u).unwrap().len(), 2);
        let mut bad = nic.clone();
        bad.mac = "01:00:5e:00:00:01".into();
        assert!(matches!(
            d.attach_interface(u, &bad),
            Err(Error::InvalidSpec(_))
        ));
        d.detach_interface(u, &nic).unwrap();
        assert!(d.detach_interface(u, &nic).is_err(), "already gone");
        assert_eq!(d.interfaces(u).unwrap(), spec.interfaces);

        let mut grown = 0;
        d.resize(u, 4, 1024, &mut || {
            grown += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((d.size(u), grown), (Some((4, 1024)), 1));
        assert!(matches!(
            d.resize(u, 0, 1024, &mut || Ok(())),
            Err(Error::InvalidSpec(_))
        ));
        assert_eq!(d.console_output(u, None).unwrap().lines().count(), 2);

        let mut seen = None;
        d.rebuild(u, &mut || {
            seen = Some(d.state(u).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            Some(PowerState::Shutoff),
            "off while the disk is replaced"
        );
        assert_eq!(d.state(u).unwrap(), PowerState::Running);
        assert_eq!(d.console_output(u, None).unwrap().lines().count(), 3);
        assert!(d.rebuild(Uuid::nil(), &mut || Ok(())).is_err());
    }

    #[test]
    fn refuses_bad_specs_like_libvirt_would() {
        let d = host();
        let mut spec = sample();
        spec.interfaces[0].mac = "nope".into();
        assert!(matches!(d.spawn(&spec), Err(Error::InvalidSpec(_))));
        assert!(d.list().unwrap().is_empty());
    }

    #[test]
    fn is_shared_across_threads() {
        let d = std::sync::Arc::new(host());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let mut spec = sample();
                    spec.uuid = Uuid::from_u128(i);
                    d.spawn(&spec).unwrap();
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(d.list().unwrap().len(), 8);
    }
}
