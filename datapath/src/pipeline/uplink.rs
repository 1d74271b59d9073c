//! Stage `uplink` (br-phys tables 0/2, br-tun): local VLAN -> wire. The translation is compiled
//! into each flood-set member's egress edits (flat: untagged, vlan: push / rewrite the
//! segmentation_id; vxlan: the local VLAN is pushed for the tunnel shell, which maps it to a
//! VNI); here a forwarding decision becomes its outputs, and `weft trace` says what each uplink
//! output will carry.

use super::{port_name, Fwd, Tracer};
use crate::snapshot::{PortRole, Snapshot};
use crate::verdict::{EgressEdit, Output, PortNo, Stage};

/// Traces the wire translation of each uplink output of a forwarding decision.
pub(crate) fn trace_uplink<T: Tracer>(
    snap: &Snapshot,
    vlan: u16,
    in_port: PortNo,
    fwd: Fwd,
    t: &mut T,
) {
    let mut outs = Vec::new();
    expand(snap, in_port, fwd, &mut outs);
    let mut any = false;
    for o in outs {
        if snap.port(o.port).map(|p| p.role) == Some(PortRole::Uplink) {
            any = true;
            let tunnel = snap.tunnel().filter(|tn| tn.port == o.port);
            if let Some(tn) = tunnel {
                let vni = tn
                    .vni_of_vlan(vlan)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into());
                let dest = if tn.peers.is_empty() {
                    "no tunnel peers".to_string()
                } else {
                    format!(
                        "to the VTEP the destination was learned behind, else flood to {}",
                        tn.peers
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                t.step(
                    Stage::Uplink,
                    format!(
                        "local VLAN {vlan} -> tunnel {}: VXLAN VNI {vni} from {}: {dest}",
                        port_name(snap, o.port),
                        tn.local_ip
                    ),
                );
                continue;
            }
            let text = match o.edit {
                EgressEdit::Keep => "untagged (flat)".to_string(),
                EgressEdit::StripTag => "strip tag (flat)".to_string(),
                EgressEdit::PushTag(v) => format!("push global VLAN {v}"),
                EgressEdit::RewriteVid(v) => format!("rewrite to global VLAN {v}"),
            };
            t.step(
                Stage::Uplink,
                format!(
                    "local VLAN {vlan} -> uplink {}: {text}",
                    port_name(snap, o.port)
                ),
            );
        }
    }
    if !any {
        let local = snap
            .network_by_local_vlan(vlan)
            .map(|n| n.uplink.is_none())
            .unwrap_or(true);
        let why = if local {
            "network has no uplink (local)"
        } else {
            "not sent to the uplink"
        };
        t.step(Stage::Uplink, why.to_string());
    }
}

/// Appends the outputs of a forwarding decision.
#[inline]
pub(crate) fn expand(snap: &Snapshot, in_port: PortNo, fwd: Fwd, out: &mut Vec<Output>) -> usize {
    match fwd {
        Fwd::Unicast(o) => {
            out.push(o);
            1
        }
        Fwd::Dhcp | Fwd::Metadata => 0,
        Fwd::Flood {
            vlan,
            tagged_ingress,
        } => {
            let Some(v) = snap.vlan(vlan) else { return 0 };
            let before = out.len();
            out.extend(
                v.members
                    .iter()
                    .filter(|m| m.port != in_port)
                    .map(|m| Output {
                        port: m.port,
                        edit: m.edit(tagged_ingress),
                    }),
            );
            out.len() - before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fixture::*;
    use crate::pipeline::Recorder;

    fn names(s: &Snapshot, outs: &[Output]) -> Vec<(String, EgressEdit)> {
        outs.iter()
            .map(|o| (s.port(o.port).expect("port").name.clone(), o.edit))
            .collect()
    }

    #[test]
    fn a_flood_expands_to_every_other_member_with_its_edit() {
        let s = snap();
        let vlan = s.network("net100").expect("net").local_vlan;
        let mut out = vec![Output {
            port: PortNo(0),
            edit: EgressEdit::Keep,
        }];
        // From a VM: the uplink pushes the segmentation_id.
        let n = expand(
            &s,
            port(&s, "vm1"),
            Fwd::Flood {
                vlan,
                tagged_ingress: false,
            },
            &mut out,
        );
        assert_eq!(n, 3);
        let mut got = names(&s, &out[1..]);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("eth1".to_string(), EgressEdit::PushTag(100)),
                ("open1".to_string(), EgressEdit::Keep),
                ("vm2".to_string(), EgressEdit::Keep)
            ]
        );
        // From the uplink (tagged): VM ports get the tag stripped, never back to the uplink.
        out.clear();
        expand(
            &s,
            port(&s, "eth1"),
            Fwd::Flood {
                vlan,
                tagged_ingress: true,
            },
            &mut out,
        );
        assert!(names(&s, &out)
            .iter()
            .all(|(n, e)| n != "eth1" && *e == EgressEdit::StripTag));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn unicast_is_one_output_and_unknown_vlans_none() {
        let s = snap();
        let o = Output {
            port: port(&s, "vm2"),
            edit: EgressEdit::Keep,
        };
        let mut out = Vec::new();
        assert_eq!(expand(&s, port(&s, "vm1"), Fwd::Unicast(o), &mut out), 1);
        assert_eq!(out, [o]);
        assert_eq!(
            expand(
                &s,
                port(&s, "vm1"),
                Fwd::Flood {
                    vlan: 4000,
                    tagged_ingress: false
                },
                &mut out
            ),
            0
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn trace_says_what_the_wire_carries() {
        let s = snap();
        let vlan = s.network("net100").expect("net").local_vlan;
        let mut r = Recorder(Vec::new());
        trace_uplink(
            &s,
            vlan,
            port(&s, "vm1"),
            Fwd::Flood {
                vlan,
                tagged_ingress: false,
            },
            &mut r,
        );
        assert_eq!(r.0.len(), 1);
        assert_eq!(r.0[0].stage, Stage::Uplink);
        assert_eq!(
            r.0[0].decision,
            format!("local VLAN {vlan} -> uplink eth1: push global VLAN 100")
        );

        let local = s.network("local").expect("net").local_vlan;
        let mut r = Recorder(Vec::new());
        trace_uplink(
            &s,
            local,
            port(&s, "solo"),
            Fwd::Flood {
                vlan: local,
                tagged_ingress: false,
            },
            &mut r,
        );
        assert_eq!(r.0[0].decision, "network has no uplink (local)");
    }
}
