#![allow(dead_code)]
//! Shared fixtures: a host with a VLAN, a flat and a local network on one physnet.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weft_datapath::build::{FrameBuilder, SpecL4};
use weft_datapath::{Datapath, MacAddr, Output, PortNo, Snapshot, SwitchConfig, Verdict, Worker};

pub const HOST: &str = r#"
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
name = "net200"
type = "vlan"
physnet = "physnet"
segmentation_id = 200

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
allowed_address_pairs = [{ ip_address = "10.9.0.0/24" }, { mac = "fa:16:3e:00:00:a1", ip_address = "10.0.0.101" }]

[[port]]
name = "vm2"
network = "net100"
mac = "fa:16:3e:00:00:02"
fixed_ips = ["10.0.0.2"]

[[port]]
name = "vm3"
network = "net200"
mac = "fa:16:3e:00:00:03"
fixed_ips = ["10.0.0.3"]

[[port]]
name = "vm4"
kind = "system"
network = "flat"
mac = "fa:16:3e:00:00:04"
fixed_ips = ["10.0.0.4"]

[[port]]
name = "vm5"
network = "local"
mac = "fa:16:3e:00:00:05"
fixed_ips = ["10.0.0.5"]

[[port]]
name = "vm6"
network = "local"
mac = "fa:16:3e:00:00:06"
fixed_ips = ["10.0.0.6"]

[[port]]
name = "open1"
network = "net100"
mac = "fa:16:3e:00:00:07"
port_security = false
"#;

pub const SEC: u64 = 1_000_000_000;

pub fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

pub fn vm_mac(i: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub struct Host {
    pub dp: Arc<Datapath>,
    pub w: Worker,
}

impl Host {
    pub fn new() -> Host {
        Host::from_toml(HOST)
    }

    pub fn from_toml(text: &str) -> Host {
        let cfg = SwitchConfig::from_toml(text, "host.toml").unwrap();
        let dp = Arc::new(Datapath::new(Snapshot::compile(&cfg, None).unwrap()));
        let w = dp.worker();
        Host { dp, w }
    }

    pub fn port(&self, name: &str) -> PortNo {
        self.dp.snapshot().port_by_name(name).unwrap().no
    }

    pub fn name(&self, p: PortNo) -> String {
        self.dp.snapshot().port(p).unwrap().name.clone()
    }

    /// Sends a frame; returns the verdict and (port name, edit) per output, sorted.
    pub fn send(&mut self, port: &str, frame: &[u8], now: u64) -> (Verdict, Vec<(String, String)>) {
        let p = self.port(port);
        let mut out: Vec<Output> = Vec::new();
        let v = self.w.process(p, frame, now, &mut out);
        let mut named: Vec<(String, String)> = out
            .iter()
            .map(|o| (self.name(o.port), o.edit.to_string()))
            .collect();
        named.sort();
        (v, named)
    }
}

pub fn udp(src_mac: MacAddr, dst_mac: MacAddr, sip: &str, dip: &str) -> FrameBuilder {
    FrameBuilder::ip(
        src_mac,
        dst_mac,
        ip(sip),
        ip(dip),
        SpecL4::Udp {
            sport: 5000,
            dport: 6000,
        },
    )
}

pub fn outs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}
