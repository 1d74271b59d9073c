//! A small host for the stage tests: a VLAN, a flat, a local and a one-port network on one
//! physnet, and helpers to build a snapshot and flow keys.

use super::{FlowKey, Recorder};
use crate::mac::MacAddr;
use crate::snapshot::Snapshot;
use crate::verdict::{PortNo, Stage};
use crate::SwitchConfig;

pub(crate) const HOST: &str = r#"
[switch]
mac_aging_secs = 300

[[physnet]]
name = "physnet"
interface = "eth1"

[[network]]
name = "net100"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[network]]
name = "flat"
type = "flat"
physnet = "physnet"

[[network]]
name = "local"
type = "local"

[[port]]
name = "vm1"
network = "net100"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1", "2001:db8::1"]
allowed_address_pairs = [{ mac = "fa:16:3e:00:00:a1", ip_address = "10.0.0.101" }]

[[port]]
name = "vm2"
network = "net100"
mac = "fa:16:3e:00:00:02"
fixed_ips = ["10.0.0.2"]

[[port]]
name = "vm4"
network = "flat"
mac = "fa:16:3e:00:00:04"
fixed_ips = ["10.0.0.4"]

[[port]]
name = "solo"
network = "local"
mac = "fa:16:3e:00:00:05"
fixed_ips = ["10.0.0.5"]

[[port]]
name = "open1"
network = "net100"
mac = "fa:16:3e:00:00:07"
port_security = false
"#;

pub(crate) fn snap() -> Snapshot {
    let cfg = SwitchConfig::from_toml(HOST, "host.toml").expect("fixture config");
    Snapshot::compile(&cfg, None).expect("fixture snapshot")
}

/// `fa:16:3e:00:00:<i>`
pub(crate) fn vm_mac(i: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])
}

/// A MAC behind the uplink.
pub(crate) const REMOTE: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

pub(crate) fn port(s: &Snapshot, name: &str) -> PortNo {
    s.port_by_name(name).expect("fixture port").no
}

pub(crate) fn key(s: &Snapshot, name: &str, frame: &[u8]) -> FlowKey {
    FlowKey::extract(port(s, name), frame).expect("fixture frame parses")
}

/// The stages a recorder saw, in order.
pub(crate) fn stages(r: &Recorder) -> Vec<Stage> {
    r.0.iter().map(|s| s.stage).collect()
}
