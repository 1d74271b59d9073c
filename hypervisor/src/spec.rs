//! What the agent asks the driver to run: plain data, checked once by
//! [`InstanceSpec::validate`] so that every shell (libvirt, fake) refuses the
//! same bad input with the same error, before anything is created.

use std::collections::BTreeMap;
use std::path::PathBuf;

use uuid::Uuid;

use crate::Error;

/// How QEMU runs guest code. The libvirt domain type follows it
/// (`<domain type='kvm'>` or `<domain type='qemu'>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's binary translator: slower, but needs nothing from the host; what
    /// hosts without a usable /dev/kvm (nested sandboxes, CI) get.
    Tcg,
}

/// One virtual NIC: a tap on the host that the switch attaches as a system
/// port, and a virtio NIC in the guest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterfaceSpec {
    /// Host-side tap name, at most 15 bytes (IFNAMSIZ - 1); see [`tap_name`].
    pub tap: String,
    /// The Neutron port's MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The network's MTU: set on the tap and offered to the guest's virtio
    /// NIC (`host_mtu`), so a 1450-byte VXLAN network needs no DHCP option.
    pub mtu: u16,
}

/// An extra blank disk (Nova's ephemeral or swap disk from the flavor).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtraDisk {
    /// The qcow2 file, made by [`crate::disk::create_blank`].
    pub path: PathBuf,
}

/// Everything the driver needs to define and start one instance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceSpec {
    /// The server's id; also the libvirt domain UUID, so a domain is found
    /// by the server id alone after an agent restart.
    pub uuid: Uuid,
    /// The libvirt domain name, unique on the host (the agent uses
    /// `weft-<uuid>`); letters, digits, `-`, `_`, `.` only.
    pub name: String,
    /// Virtual CPUs (the flavor's vcpus).
    pub vcpus: u32,
    /// Guest RAM in MiB (the flavor's ram).
    pub memory_mb: u64,
    /// The root disk: a qcow2 overlay on the cached image
    /// ([`crate::disk::create_overlay`]).
    pub root_disk: PathBuf,
    /// The flavor's ephemeral disk, when it has one.
    pub ephemeral: Option<ExtraDisk>,
    /// The flavor's swap disk, when it has one.
    pub swap: Option<ExtraDisk>,
    /// The NICs, in guest order (eth0 first).
    pub interfaces: Vec<InterfaceSpec>,
    /// Where the serial console is logged (what `console log show` reads).
    pub console_log: PathBuf,
    /// KVM or TCG; see [`crate::probe_accel`].
    pub accel: Accel,
    /// Free-form key/values stored in the domain's `<metadata>` beside the
    /// uuid (project, flavor...), so a restarted agent can tell what a
    /// domain it finds was for without asking ctrl.
    pub metadata: BTreeMap<String, String>,
}

/// Linux's IFNAMSIZ less the NUL.
const MAX_IFNAME: usize = 15;

/// The tap name Nova gives a port: `tap` and the first 11 characters of the
/// port id, so operators (and `weft trace`) see the same names as on an
/// OpenStack host.
pub fn tap_name(port_id: &str) -> String {
    let head: String = port_id.chars().take(11).collect();
    format!("tap{head}")
}

impl InstanceSpec {
    /// Checks the spec as a whole; the error names the first bad field.
    /// Names and paths end up inside XML and in libvirt's own files, so only
    /// plain characters are accepted rather than relying on escaping alone.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, why: String| Err(Error::InvalidSpec(format!("{field}: {why}")));
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(plain_char) {
            return bad(
                "name",
                format!("{:?} is not 1-64 of [A-Za-z0-9._-]", self.name),
            );
        }
        validate_size(self.vcpus, self.memory_mb)?;
        let disks = [
            Some(&self.root_disk),
            self.ephemeral.as_ref().map(|d| &d.path),
        ];
        let disks = disks
            .into_iter()
            .flatten()
            .chain(self.swap.as_ref().map(|d| &d.path));
        for path in disks.chain([&self.console_log]) {
            if !path.is_absolute()
                || path
                    .to_str()
                    .is_none_or(|p| p.contains(['\'', '"', '<', '&']))
            {
                return bad(
                    "path",
                    format!("{} must be absolute, UTF-8, no quotes", path.display()),
                );
            }
        }
        for (i, nic) in self.interfaces.iter().enumerate() {
            validate_nic(nic).map_err(|e| match e {
                Error::InvalidSpec(m) => Error::InvalidSpec(format!("interfaces[{i}].{m}")),
                e => e,
            })?;
        }
        Ok(())
    }
}

/// A guest size libvirt accepts (spawn's and resize's rule).
pub(crate) fn validate_size(vcpus: u32, memory_mb: u64) -> Result<(), Error> {
    if vcpus == 0 || vcpus > 512 {
        return Err(Error::InvalidSpec(format!(
            "vcpus: {vcpus} is not in 1..=512"
        )));
    }
    if memory_mb < 16 {
        return Err(Error::InvalidSpec(format!(
            "memory_mb: {memory_mb} is below 16 MiB"
        )));
    }
    Ok(())
}

/// One NIC as it goes into the domain XML (spawn's and attach's rule); the
/// error names the field (`tap`, `mac`, `mtu`).
pub(crate) fn validate_nic(nic: &InterfaceSpec) -> Result<(), Error> {
    let bad = |field: &str, why: String| Err(Error::InvalidSpec(format!("{field}: {why}")));
    if nic.tap.is_empty() || nic.tap.len() > MAX_IFNAME || !nic.tap.chars().all(plain_char) {
        return bad(
            "tap",
            format!("{:?} is not a valid interface name", nic.tap),
        );
    }
    if !valid_mac(&nic.mac) {
        return bad("mac", format!("{:?} is not a MAC address", nic.mac));
    }
    if !(68..=9000).contains(&nic.mtu) {
        return bad("mtu", format!("{} is not in 68..=9000", nic.mtu));
    }
    Ok(())
}

fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Six colon-separated hex octets, unicast (a multicast source MAC would be
/// dropped by every switch, weft's included).
fn valid_mac(mac: &str) -> bool {
    let octets: Vec<&str> = mac.split(':').collect();
    let hex = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
    hex && u8::from_str_radix(octets[0], 16).is_ok_and(|b| b & 1 == 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid spec the other tests bend one field at a time.
    pub(crate) fn sample() -> InstanceSpec {
        InstanceSpec {
            uuid: Uuid::parse_str("0f4e1c5a-9b1d-4c4e-8a55-3b0d6c1e2f70").unwrap(),
            name: "weft-hv-sample".into(),
            vcpus: 2,
            memory_mb: 256,
            root_disk: "/var/lib/weft/instances/x/disk".into(),
            ephemeral: None,
            swap: None,
            interfaces: vec![InterfaceSpec {
                tap: tap_name("5d2c8f0e-1111-2222-3333-444455556666"),
                mac: "fa:16:3e:12:34:56".into(),
                mtu: 1450,
            }],
            console_log: "/var/lib/weft/instances/x/console.log".into(),
            accel: Accel::Tcg,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn tap_name_is_novas() {
        assert_eq!(
            tap_name("5d2c8f0e-1111-2222-3333-444455556666"),
            "tap5d2c8f0e-11"
        );
        assert_eq!(tap_name("abc"), "tapabc");
        assert!(tap_name("5d2c8f0e-1111-2222-3333-444455556666").len() <= MAX_IFNAME);
    }

    #[test]
    fn sample_is_valid() {
        sample().validate().unwrap();
    }

    /// One field bent out of shape.
    type Bend = Box<dyn Fn(&mut InstanceSpec)>;

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(&str, Bend)> = vec![
            ("name", Box::new(|s| s.name = "a'b".into())),
            ("name", Box::new(|s| s.name.clear())),
            ("vcpus", Box::new(|s| s.vcpus = 0)),
            ("memory_mb", Box::new(|s| s.memory_mb = 1)),
            ("path", Box::new(|s| s.root_disk = "relative/disk".into())),
            ("path", Box::new(|s| s.console_log = "/tmp/a'b".into())),
            (
                "interfaces[0].tap",
                Box::new(|s| s.interfaces[0].tap = "tap0123456789abcdef".into()),
            ),
            (
                "interfaces[0].mac",
                Box::new(|s| s.interfaces[0].mac = "fa:16:3e:12:34".into()),
            ),
            (
                "interfaces[0].mac",
                Box::new(|s| s.interfaces[0].mac = "01:16:3e:12:34:56".into()),
            ),
            ("interfaces[0].mtu", Box::new(|s| s.interfaces[0].mtu = 20)),
        ];
        for (field, bend) in cases {
            let mut spec = sample();
            bend(&mut spec);
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
