//! Deterministic in-process simulation: two hosts, each a Datapath, joined by a "physical wire"
//! between their uplinks, with virtual time. Checks what crosses the wire (global VLAN ids,
//! untagged flat traffic, never local VLAN ids) and that VMs on the same network reach each
//! other across hosts while networks stay isolated.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::Arc;
use weft_datapath::build::FrameBuilder;
use weft_datapath::frame::FrameView;
use weft_datapath::{apply_edit, Datapath, PortRole, Snapshot, SwitchConfig, Worker};

const HOST_A: &str = r#"
[[physnet]]
name = "physnet"
interface = "wire-a"
[[network]]
name = "net100"
type = "vlan"
physnet = "physnet"
segmentation_id = 100
[[network]]
name = "flat"
type = "flat"
physnet = "physnet"
[[port]]
name = "a-vm1"
network = "net100"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]
[[port]]
name = "a-flat"
network = "flat"
mac = "fa:16:3e:00:00:11"
fixed_ips = ["192.168.0.1"]
"#;

// Host B allocates local VLANs in another order, so local ids differ from host A's.
const HOST_B: &str = r#"
[[physnet]]
name = "physnet"
interface = "wire-b"
[[network]]
name = "only-b"
type = "local"
[[network]]
name = "flat"
type = "flat"
physnet = "physnet"
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
[[port]]
name = "b-vm2"
network = "net100"
mac = "fa:16:3e:00:00:02"
fixed_ips = ["10.0.0.2"]
[[port]]
name = "b-other"
network = "net200"
mac = "fa:16:3e:00:00:03"
fixed_ips = ["10.0.0.3"]
[[port]]
name = "b-flat"
network = "flat"
mac = "fa:16:3e:00:00:12"
fixed_ips = ["192.168.0.2"]
"#;

struct SimHost {
    dp: Arc<Datapath>,
    w: Worker,
}

struct Sim {
    hosts: Vec<SimHost>,
    /// Frames captured on the wire (both directions).
    wire: Vec<Vec<u8>>,
    /// Frames delivered to each VM port, by name.
    inbox: HashMap<String, Vec<Vec<u8>>>,
    now: u64,
}

impl Sim {
    fn new() -> Sim {
        let mk = |t: &str| {
            let cfg = SwitchConfig::from_toml(t, "sim.toml").unwrap();
            let dp = Arc::new(Datapath::new(Snapshot::compile(&cfg, None).unwrap()));
            let w = dp.worker();
            SimHost { dp, w }
        };
        Sim {
            hosts: vec![mk(HOST_A), mk(HOST_B)],
            wire: Vec::new(),
            inbox: HashMap::new(),
            now: 0,
        }
    }

    /// A VM (or the wire) sends a frame into host `h` on port `port`; run to quiescence.
    fn inject(&mut self, h: usize, port: &str, frame: Vec<u8>) {
        let mut queue = vec![(h, port.to_string(), frame)];
        let mut hops = 0;
        while let Some((h, port, frame)) = queue.pop() {
            hops += 1;
            assert!(hops < 100, "forwarding loop");
            self.now += 1_000_000;
            let host = &mut self.hosts[h];
            let snap = host.dp.snapshot();
            let no = snap.port_by_name(&port).unwrap().no;
            let mut out = Vec::new();
            host.w.process(no, &frame, self.now, &mut out);
            for o in out {
                let mut buf = Vec::new();
                apply_edit(o.edit, &frame, None, &mut buf).unwrap();
                let p = snap.port(o.port).unwrap();
                match p.role {
                    PortRole::Uplink => {
                        self.wire.push(buf.clone());
                        let other = 1 - h;
                        let up = if other == 0 { "wire-a" } else { "wire-b" };
                        queue.push((other, up.to_string(), buf));
                    }
                    PortRole::Vm => self.inbox.entry(p.name.clone()).or_default().push(buf),
                }
            }
        }
    }

    fn take(&mut self, vm: &str) -> Vec<Vec<u8>> {
        self.inbox.remove(vm).unwrap_or_default()
    }
}

#[test]
fn vlan_network_spans_hosts_with_global_vid_on_the_wire() {
    let mut sim = Sim::new();
    let a_local = sim.hosts[0]
        .dp
        .snapshot()
        .network("net100")
        .unwrap()
        .local_vlan;
    let b_local = sim.hosts[1]
        .dp
        .snapshot()
        .network("net100")
        .unwrap()
        .local_vlan;
    assert_ne!(a_local, b_local, "the test needs different local VLANs");
    assert_ne!(a_local, 100);
    assert_ne!(b_local, 100);

    // a-vm1 ARPs for 10.0.0.2.
    let arp = FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build();
    sim.inject(0, "a-vm1", arp.clone());
    assert_eq!(sim.wire.len(), 1);
    let on_wire = FrameView::parse(&sim.wire[0]).unwrap();
    assert_eq!(on_wire.tag_count, 1);
    assert_eq!(on_wire.tags[0].vid(), 100, "global VLAN on the wire");
    // b-vm2 receives it untagged and byte-identical; b-other (net200) and b-flat do not.
    assert_eq!(sim.take("b-vm2"), vec![arp]);
    assert!(sim.take("b-other").is_empty());
    assert!(sim.take("b-flat").is_empty());

    // b-vm2 replies unicast: B learned a-vm1 behind its uplink, so it goes straight to the wire.
    let mut reply = FrameBuilder::arp(vm_mac(2), 2, v4("10.0.0.2"), v4("10.0.0.1"));
    reply.dst = vm_mac(1);
    let reply = reply.build();
    sim.wire.clear();
    sim.inject(1, "b-vm2", reply.clone());
    assert_eq!(sim.wire.len(), 1);
    assert_eq!(FrameView::parse(&sim.wire[0]).unwrap().tags[0].vid(), 100);
    assert_eq!(sim.take("a-vm1"), vec![reply]);

    // Both hosts learned the remote MAC on their uplink, in their own local VLAN.
    let a_macs = sim.hosts[0].dp.mac_table(sim.now);
    assert!(a_macs
        .iter()
        .any(|e| e.mac == vm_mac(2) && e.vlan == a_local && !e.is_static));
    let b_macs = sim.hosts[1].dp.mac_table(sim.now);
    assert!(b_macs
        .iter()
        .any(|e| e.mac == vm_mac(1) && e.vlan == b_local && !e.is_static));

    // No frame on the wire ever carried a local VLAN id.
    for f in &sim.wire {
        let v = FrameView::parse(f).unwrap();
        if v.tag_count > 0 {
            assert!(v.tags[0].vid() != a_local && v.tags[0].vid() != b_local);
        }
    }
}

#[test]
fn flat_network_is_untagged_on_the_wire() {
    let mut sim = Sim::new();
    let f = udp(vm_mac(0x11), vm_mac(0x12), "192.168.0.1", "192.168.0.2").build();
    sim.inject(0, "a-flat", f.clone());
    assert_eq!(sim.wire.len(), 1);
    assert_eq!(FrameView::parse(&sim.wire[0]).unwrap().tag_count, 0);
    assert_eq!(sim.take("b-flat"), vec![f]);
    assert!(sim.take("b-vm2").is_empty());
}

#[test]
fn other_networks_are_isolated_across_hosts() {
    let mut sim = Sim::new();
    // b-other (net200, VLAN 200) broadcasts: A has no net200, so A drops it at classify.
    let f = FrameBuilder::arp(vm_mac(3), 1, v4("10.0.0.3"), v4("10.0.0.1")).build();
    sim.inject(1, "b-other", f);
    assert_eq!(sim.wire.len(), 1);
    assert_eq!(FrameView::parse(&sim.wire[0]).unwrap().tags[0].vid(), 200);
    assert!(sim.take("a-vm1").is_empty());
    assert!(sim.take("a-flat").is_empty());
    let c = sim.hosts[0].dp.counters();
    assert_eq!(
        c.port_by_name("wire-a")
            .unwrap()
            .drop_count(weft_datapath::DropReason::UnknownSegment),
        1
    );
}

#[test]
fn spoofed_frames_never_reach_the_wire() {
    let mut sim = Sim::new();
    let spoofed = udp(vm_mac(9), vm_mac(2), "10.0.0.1", "10.0.0.2").build();
    sim.inject(0, "a-vm1", spoofed);
    let ip_spoof = udp(vm_mac(1), vm_mac(2), "10.0.0.99", "10.0.0.2").build();
    sim.inject(0, "a-vm1", ip_spoof);
    let tagged = udp(vm_mac(1), vm_mac(2), "10.0.0.1", "10.0.0.2")
        .dot1q(200)
        .build();
    sim.inject(0, "a-vm1", tagged);
    assert!(sim.wire.is_empty());
    assert!(sim.take("b-vm2").is_empty());
    assert!(sim.take("b-other").is_empty());
}
