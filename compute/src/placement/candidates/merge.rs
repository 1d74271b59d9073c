//! One option per group, drawn in the same anchor tree, folded into one
//! candidate when the whole request's rules hold: `group_policy=isolate`,
//! `same_subtree`, capacity of amounts summed across groups, and (before
//! 1.29) one provider per tree.

use super::{Candidate, Opt, Request};
use crate::placement::state::State;
use std::collections::{BTreeMap, BTreeSet};

/// `combo[0]` is the unsuffixed group's option, the rest the numbered
/// groups' in request order.
pub(super) fn merge<'s>(st: &'s State, req: &Request, combo: &[&Opt<'s>]) -> Option<Candidate<'s>> {
    if req.isolate {
        let mut used = BTreeSet::new();
        for o in &combo[1..] {
            if !o.rps.iter().all(|rp| used.insert(*rp)) {
                return None;
            }
        }
    }
    for suffixes in &req.same_subtree {
        let rps: BTreeSet<&str> = combo
            .iter()
            .filter(|o| suffixes.contains(o.suffix))
            .flat_map(|o| o.rps.iter().copied())
            .collect();
        if !same_subtree(st, &rps) {
            return None;
        }
    }
    let mut c = Candidate {
        allocations: BTreeMap::new(),
        mappings: BTreeMap::new(),
    };
    let mut summed = false;
    for o in combo {
        for p in &o.picks {
            let e = c
                .allocations
                .entry(p.rp)
                .or_default()
                .entry(p.rc)
                .or_insert(0);
            summed |= *e > 0;
            *e += p.amount;
        }
        if !o.rps.is_empty() {
            c.mappings
                .entry(o.suffix)
                .or_default()
                .extend(o.rps.iter().copied());
        }
    }
    // Each pick fit on its own; only amounts that two groups put on one
    // provider and class need checking again, against the capacity and
    // the largest single allocation (`max_unit`), as Placement does.
    if summed {
        for (rp, resources) in &c.allocations {
            let p = &st.providers[*rp];
            for (rc, n) in resources {
                let inv = &p.inventories[*rc];
                if st.used(rp, rc) + n > inv.capacity() || *n > inv.max_unit {
                    return None;
                }
            }
        }
    }
    if !req.nested {
        // Before 1.29 a client cannot read trees: a candidate using two
        // providers of one tree is left out.
        let mut roots = BTreeSet::new();
        for rp in c.allocations.keys() {
            if !roots.insert(st.providers[*rp].root.as_str()) {
                return None;
            }
        }
    }
    Some(c)
}

/// Whether one of `rps` is an ancestor (or itself) of all the others.
fn same_subtree(st: &State, rps: &BTreeSet<&str>) -> bool {
    if rps.len() <= 1 {
        return true;
    }
    let under = |rp: &str, top: &str| {
        let mut at = st.providers.get(rp);
        while let Some(p) = at {
            if p.uuid == top {
                return true;
            }
            at = p.parent.as_deref().and_then(|q| st.providers.get(q));
        }
        false
    };
    rps.iter().any(|top| rps.iter().all(|rp| under(rp, top)))
}
