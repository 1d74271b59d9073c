//! Compiling configs into snapshots, checked through the datapath that runs them.

use crate::build::FrameBuilder;
use crate::{Datapath, EgressEdit, Output, SwitchConfig, Verdict};
use std::sync::Arc;

const CFG: &str = r#"
[tunnel]
local_ip = "192.0.2.1"
remote_ips = ["192.0.2.2"]

[[network]]
name = "other"
type = "local"

[[network]]
name = "vx"
type = "vxlan"
segmentation_id = 1001

[[port]]
name = "tap1"
network = "vx"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]
"#;

#[test]
fn vxlan_network_is_a_trunk_member_tagged_with_its_local_vlan() {
    let cfg = SwitchConfig::from_toml(CFG, "t.toml").unwrap();
    let snap = super::Snapshot::compile(&cfg, None).unwrap();
    let tn = snap.tunnel().unwrap().clone();
    let tport = snap.port_by_name("vxlan-4789").unwrap().clone();
    assert_eq!(tport.no, tn.port);
    assert_eq!(tport.kind, crate::PortKind::Vxlan);
    assert_eq!(
        tport.tunnel_endpoint,
        Some("192.0.2.1:4789".parse().unwrap())
    );
    let vlan = snap.network("vx").unwrap().local_vlan;
    assert_eq!(tn.vlan_of_vni(1001), Some(vlan));
    assert_eq!(tn.vni_of_vlan(vlan), Some(1001));
    assert_eq!(
        tn.vni_of_vlan(snap.network("other").unwrap().local_vlan),
        None
    );
    let tap1 = snap.port_by_name("tap1").unwrap().no;

    let dp = Arc::new(Datapath::new(snap));
    let mut w = dp.worker();
    let mut out = Vec::new();
    // VM -> broadcast: to the tunnel, tagged with the local VLAN for the shell to map.
    let arp = FrameBuilder::arp(
        "fa:16:3e:00:00:01".parse().unwrap(),
        1,
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
    );
    assert_eq!(w.process(tap1, &arp.build(), 0, &mut out), Verdict::Forward);
    assert_eq!(
        out,
        vec![Output {
            port: tn.port,
            edit: EgressEdit::PushTag(vlan)
        }]
    );
    // From the tunnel, tagged with the local VLAN: to the VM, untagged.
    out.clear();
    let remote = FrameBuilder::arp(
        "fa:16:3e:00:00:02".parse().unwrap(),
        2,
        "10.0.0.2".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
    );
    let mut reply = remote.clone();
    reply.dst = "fa:16:3e:00:00:01".parse().unwrap();
    let v = w.process(tn.port, &reply.clone().dot1q(vlan).build(), 1, &mut out);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        out,
        vec![Output {
            port: tap1,
            edit: EgressEdit::StripTag
        }]
    );
    // Now learned behind the tunnel: unicast back goes there.
    out.clear();
    let mut to_remote = arp.clone();
    to_remote.dst = "fa:16:3e:00:00:02".parse().unwrap();
    w.process(tap1, &to_remote.build(), 2, &mut out);
    assert_eq!(out[0].port, tn.port);
    // Untagged, or tagged with another network's local VLAN: dropped.
    out.clear();
    assert!(matches!(
        w.process(tn.port, &reply.build(), 3, &mut out),
        Verdict::Drop { .. }
    ));
    let other = dp.snapshot().network("other").unwrap().local_vlan;
    assert!(matches!(
        w.process(tn.port, &reply.clone().dot1q(other).build(), 3, &mut out),
        Verdict::Drop { .. }
    ));
    assert!(out.is_empty());
    // The trace names the VNI and the peers.
    let steps = dp.trace(tap1, &arp.build(), 4);
    let last: String = steps
        .iter()
        .map(|s| s.to_string())
        .find(|s| s.contains("tunnel"))
        .unwrap_or_default();
    assert!(last.contains("VXLAN VNI 1001 from 192.0.2.1"), "{last}");
    assert!(last.contains("192.0.2.2"), "{last}");
}

#[test]
fn member_finds_the_uplink_and_vm_ports_of_a_vlan_only() {
    let cfg = SwitchConfig::from_toml(
        r#"
[[physnet]]
name = "physnet"
interface = "eth1"

[[network]]
name = "a"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[network]]
name = "b"
type = "local"

[[port]]
name = "tap1"
network = "a"
port_security = false

[[port]]
name = "tap2"
network = "b"
port_security = false
"#,
        "t.toml",
    )
    .unwrap();
    let snap = super::Snapshot::compile(&cfg, None).unwrap();
    let no = |n: &str| snap.port_by_name(n).unwrap().no;
    let (up, tap1, tap2) = (no("eth1"), no("tap1"), no("tap2"));
    let a = snap.network("a").unwrap().local_vlan;
    let b = snap.network("b").unwrap().local_vlan;
    let m = snap.member(a, up).unwrap();
    assert_eq!(
        (m.port, m.edit_untagged, m.edit_tagged),
        (up, EgressEdit::PushTag(100), EgressEdit::RewriteVid(100))
    );
    assert_eq!(
        snap.member(a, tap1).unwrap().edit_untagged,
        EgressEdit::Keep
    );
    assert!(snap.member(a, tap2).is_none());
    assert!(
        snap.member(b, up).is_none(),
        "a local network has no uplink"
    );
    assert_eq!(snap.member(b, tap2).unwrap().port, tap2);
    assert!(snap.member(b, tap1).is_none());
}

#[test]
fn changing_local_ip_reattaches_the_endpoint() {
    let a = SwitchConfig::from_toml(CFG, "t.toml").unwrap();
    let b = SwitchConfig::from_toml(&CFG.replace("192.0.2.1", "192.0.2.7"), "t.toml").unwrap();
    let sa = super::Snapshot::compile(&a, None).unwrap();
    let sb = super::Snapshot::compile(&b, Some(&sa)).unwrap();
    let d = sb.diff(&sa);
    assert_eq!(d.reattached.len(), 1);
    assert_eq!(d.reattached[0].name, "vxlan-4789");
    assert!(sb
        .diff(&super::Snapshot::compile(&b, Some(&sb)).unwrap())
        .reattached
        .is_empty());
}
