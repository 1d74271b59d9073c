//! Security groups in a snapshot: each firewalled port's rules compiled once, group members
//! shared between the rules naming them, both reused from the previous snapshot when a reload
//! leaves them alone; and the connection table brought in line after a swap.

use super::{PortNo, Snapshot};
use crate::config::SwitchConfig;
use crate::secgroup::{CompiledFirewall, Members};
use std::collections::HashMap;
use std::sync::Arc;

/// A port's compiled firewall: the previous snapshot's (same port, name, local VLAN and config)
/// when the reload left it alone, so that its hit counters carry on and the datapath can tell
/// by pointer which ports' firewalls changed.
pub(super) fn firewall(
    cfg: &SwitchConfig,
    members: &HashMap<String, Arc<Members>>,
    ids: &[String],
    no: PortNo,
    name: &str,
    vlan: u16,
    prev: Option<&Snapshot>,
) -> Arc<CompiledFirewall> {
    use crate::config::RuleRemote;
    use crate::secgroup::{Remote, Rule};
    let groups: Vec<_> = ids
        .iter()
        .filter_map(|id| cfg.security_groups.iter().find(|g| g.id == *id))
        .collect();
    // Validation refuses a port mixing stateful and stateless groups.
    let stateful = groups.first().is_none_or(|g| g.stateful);
    let rules: Vec<Rule> = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .map(|r| Rule {
            id: r.id.clone(),
            direction: r.direction,
            family: r.family,
            protocol: r.protocol,
            port_min: r.port_min,
            port_max: r.port_max,
            remote: match &r.remote {
                RuleRemote::Any => Remote::Any,
                RuleRemote::Prefix(n) => Remote::Prefix(*n),
                RuleRemote::Group(id) => Remote::Group {
                    id: id.clone(),
                    members: members.get(id).cloned().unwrap_or_default(),
                },
            },
        })
        .collect();
    // Members are shared Arcs reused across snapshots, so this compares pointers, not lists.
    prev.filter(|s| {
        s.port(no)
            .is_some_and(|p| p.name == name && p.local_vlan == vlan)
    })
    .and_then(|s| s.firewall(no))
    .filter(|c| c.fw.stateful == stateful && c.source == rules)
    .cloned()
    .unwrap_or_else(|| Arc::new(CompiledFirewall::new(stateful, rules)))
}

/// Every group's members, compiled; the previous snapshot's when its list is unchanged.
pub(super) fn group_members(
    cfg: &SwitchConfig,
    prev: Option<&Snapshot>,
) -> HashMap<String, Arc<Members>> {
    cfg.security_groups
        .iter()
        .map(|g| {
            let m = prev
                .and_then(|s| s.groups.get(&g.id))
                .filter(|m| m.nets() == g.members.as_slice())
                .cloned()
                .unwrap_or_else(|| Arc::new(Members::new(g.members.clone())));
            (g.id.clone(), m)
        })
        .collect()
}

/// After a snapshot swap: the table takes the new bound, and each port whose firewall changed
/// (other rules, removed, or the port gone) has its connections re-checked against its new
/// rules, or dropped when it has none. Ports whose firewall is the same compiled one (the
/// snapshot reuses it when their config did not change) are not touched.
pub fn reload_conntrack(ct: &mut crate::secgroup::ConnTable, old: &Snapshot, new: &Snapshot) {
    ct.set_capacity(new.config().switch.conntrack_size);
    for p in old.ports() {
        let Some(before) = old.firewall(p.no) else {
            continue;
        };
        match new.firewall(p.no) {
            Some(after) if std::sync::Arc::ptr_eq(before, after) => {}
            Some(after) => {
                crate::secgroup::recheck(ct, p.no, &after.fw);
            }
            None => {
                ct.retain(|c| c.key.port != p.no);
            }
        }
    }
}
