//! `GET /allocation_candidates`: which sets of providers could satisfy a
//! request, as a pure function over one snapshot.
//!
//! ```text
//!  providers ─► trees (by root) ─► per tree:
//!     unsuffixed group: each class from any provider of the tree (1.29+,
//!                       the root alone before), traits over the providers used
//!     numbered groups:  all of a group's classes from one provider
//!     product of the groups' options ─► isolate? ─► summed amounts fit? ─► dedupe
//! ```
//!
//! Sharing providers (`MISC_SHARES_VIA_AGGREGATE`) and `same_subtree` are
//! not implemented: requests using `same_subtree` are refused by the API
//! shell rather than answered wrongly.

use super::model::Provider;
use super::query::{AggFilter, TraitFilter};
use super::state::State;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One request group: the unsuffixed one (`resources`, `required`, ...) or
/// a numbered one (`resources1`, `required1`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// `""` for the unsuffixed group.
    pub suffix: String,
    /// Class -> amount.
    pub resources: BTreeMap<String, u64>,
    /// Traits.
    pub required: TraitFilter,
    /// Aggregates.
    pub member_of: AggFilter,
    /// Only providers in the tree of this one.
    pub in_tree: Option<String>,
}

/// A whole allocation candidates request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The unsuffixed group (possibly without resources).
    pub unsuffixed: Group,
    /// Numbered groups (1.25).
    pub groups: Vec<Group>,
    /// `group_policy=isolate`: numbered groups on distinct providers.
    pub isolate: bool,
    /// At most this many candidates.
    pub limit: Option<usize>,
    /// 1.35 `root_required`: traits the root of each candidate's tree must
    /// (and, `!T`, must not) have.
    pub root_required: TraitFilter,
    /// 1.29+: the unsuffixed group may draw on every provider of a tree;
    /// before, only on a root provider alone.
    pub nested: bool,
}

/// One allocation request: what to allocate where, and which group each
/// provider served (1.34 `mappings`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate<'s> {
    /// Provider -> class -> amount.
    pub allocations: BTreeMap<&'s str, BTreeMap<&'s str, u64>>,
    /// Group suffix -> providers that satisfied it.
    pub mappings: BTreeMap<&'s str, BTreeSet<&'s str>>,
}

/// The answer: candidates, and the providers to summarise.
#[derive(Debug, Clone, Default)]
pub struct Candidates<'s> {
    /// In the order found (trees by root uuid).
    pub requests: Vec<Candidate<'s>>,
    /// Providers for `provider_summaries`.
    pub summaries: BTreeSet<&'s str>,
}

/// One class drawn from one provider for one group.
#[derive(Debug, Clone, Copy)]
struct Pick<'s> {
    rp: &'s str,
    rc: &'s str,
    amount: u64,
    suffix: &'s str,
}

/// Room left on `p` for one allocation of `amount` of `rc`.
fn fits(st: &State, p: &Provider, rc: &str, amount: u64) -> bool {
    p.inventories
        .get(rc)
        .is_some_and(|inv| inv.fits_unit(amount) && st.used(&p.uuid, rc) + amount <= inv.capacity())
}

/// Whether `p` may serve group `g` at all (aggregates, tree, forbidden traits).
fn eligible(g: &Group, p: &Provider, tree_root: Option<&str>) -> bool {
    g.member_of.matches(&p.aggregates)
        && tree_root.is_none_or(|r| p.root == r)
        && !g.required.forbidden.iter().any(|t| p.traits.contains(t))
}

/// The unsuffixed group's options in one tree: for each class a provider,
/// all combinations, whose providers together carry the required traits.
fn unsuffixed_options<'s>(
    st: &'s State,
    g: &'s Group,
    members: &[&'s Provider],
    tree_root: Option<&str>,
) -> Vec<Vec<Pick<'s>>> {
    let per_class: Vec<Vec<Pick<'s>>> = g
        .resources
        .iter()
        .map(|(rc, &amount)| {
            members
                .iter()
                .filter(|p| eligible(g, p, tree_root) && fits(st, p, rc, amount))
                .map(|p| Pick {
                    rp: &p.uuid,
                    rc,
                    amount,
                    suffix: &g.suffix,
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    let traits_asked = !(g.required.all.is_empty() && g.required.any_of.is_empty());
    product(&per_class, &mut |combo: &[Pick<'s>]| {
        let ok = !traits_asked || {
            let used: Vec<&Provider> = combo.iter().map(|p| &st.providers[p.rp]).collect();
            g.required
                .matches_union(|t| used.iter().any(|p| p.traits.contains(t)))
        };
        if ok {
            out.push(combo.to_vec());
        }
        true
    });
    out
}

/// A numbered group's options in one tree: single providers with all of it.
fn numbered_options<'s>(
    st: &'s State,
    g: &'s Group,
    members: &[&'s Provider],
    tree_root: Option<&str>,
) -> Vec<Vec<Pick<'s>>> {
    members
        .iter()
        .filter(|p| eligible(g, p, tree_root) && g.required.matches(&p.traits))
        .filter(|p| g.resources.iter().all(|(rc, &n)| fits(st, p, rc, n)))
        .map(|p| {
            g.resources
                .iter()
                .map(|(rc, &amount)| Pick {
                    rp: &p.uuid,
                    rc,
                    amount,
                    suffix: &g.suffix,
                })
                .collect()
        })
        .collect()
}

/// Calls `f` with every combination taking one element from each list, in
/// order, until `f` returns false.
fn product<T: Copy>(lists: &[Vec<T>], f: &mut impl FnMut(&[T]) -> bool) {
    if lists.iter().any(Vec::is_empty) {
        return;
    }
    let mut idx = vec![0usize; lists.len()];
    let mut combo: Vec<T> = lists.iter().map(|l| l[0]).collect();
    loop {
        if !f(&combo) {
            return;
        }
        let mut i = lists.len();
        loop {
            if i == 0 {
                return;
            }
            i -= 1;
            idx[i] += 1;
            if idx[i] < lists[i].len() {
                combo[i] = lists[i][idx[i]];
                break;
            }
            idx[i] = 0;
            combo[i] = lists[i][0];
        }
    }
}

/// The in_tree filter of a group as the root of its tree; `Err` when the
/// provider named does not exist (nothing can match).
fn tree_of<'s>(st: &'s State, g: &Group) -> Result<Option<&'s str>, ()> {
    match &g.in_tree {
        None => Ok(None),
        Some(u) => st.providers.get(u).map(|p| Some(p.root.as_str())).ok_or(()),
    }
}

/// Every candidate for `req` on `st`.
pub fn candidates<'s>(st: &'s State, req: &'s Request) -> Candidates<'s> {
    let mut out = Candidates::default();
    let Ok(un_root) = tree_of(st, &req.unsuffixed) else {
        return out;
    };
    let mut group_roots = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        match tree_of(st, g) {
            Ok(r) => group_roots.push(r),
            Err(()) => return out,
        }
    }
    // Providers grouped by tree: one sorted list cut into runs, rather than
    // a map of small vectors (a thousand allocations at a thousand hosts).
    let mut all: Vec<&Provider> = st
        .providers
        .values()
        .filter(|p| req.nested || p.parent.is_none())
        .collect();
    all.sort_by(|a, b| a.root.cmp(&b.root));
    let limit = req.limit.unwrap_or(usize::MAX);
    let mut seen: HashSet<Candidate<'s>> = HashSet::new();
    for members in all.chunk_by(|a, b| a.root == b.root) {
        if out.requests.len() >= limit {
            break;
        }
        if !req.root_required.is_empty()
            && !st
                .providers
                .get(&members[0].root)
                .is_some_and(|root| req.root_required.matches(&root.traits))
        {
            continue;
        }
        let mut options: Vec<Vec<Vec<Pick<'s>>>> = Vec::with_capacity(1 + req.groups.len());
        if req.unsuffixed.resources.is_empty() {
            options.push(vec![Vec::new()]);
        } else {
            options.push(unsuffixed_options(st, &req.unsuffixed, members, un_root));
        }
        for (g, r) in req.groups.iter().zip(&group_roots) {
            options.push(numbered_options(st, g, members, *r));
        }
        let before = out.requests.len();
        let refs: Vec<Vec<&Vec<Pick<'s>>>> = options.iter().map(|o| o.iter().collect()).collect();
        product(&refs, &mut |combo: &[&Vec<Pick<'s>>]| {
            if let Some(c) = merge(st, req, combo) {
                // Without numbered groups each combination places each
                // class on its own provider choice, so no two are alike and
                // the (hashing, cloning) dedupe is skipped.
                if req.groups.is_empty() || seen.insert(c.clone()) {
                    out.requests.push(c);
                }
            }
            out.requests.len() < limit
        });
        if out.requests.len() > before {
            if req.nested {
                out.summaries
                    .extend(members.iter().map(|p| p.uuid.as_str()));
            } else {
                for c in &out.requests[before..] {
                    out.summaries.extend(c.allocations.keys().copied());
                }
            }
        }
    }
    out
}

/// One combination of group options as a candidate, if it holds together:
/// numbered groups on distinct providers under `isolate`, amounts summed
/// per provider and class within capacity, and the unsuffixed group's
/// traits (when it asked for no resources) over every provider used.
fn merge<'s>(st: &'s State, req: &Request, combo: &[&Vec<Pick<'s>>]) -> Option<Candidate<'s>> {
    if req.isolate {
        let mut used = BTreeSet::new();
        for picks in &combo[1..] {
            if let Some(first) = picks.first() {
                if !used.insert(first.rp) {
                    return None;
                }
            }
        }
    }
    let mut c = Candidate {
        allocations: BTreeMap::new(),
        mappings: BTreeMap::new(),
    };
    let mut shared = false;
    for picks in combo {
        for p in picks.iter() {
            let e = c
                .allocations
                .entry(p.rp)
                .or_default()
                .entry(p.rc)
                .or_insert(0);
            shared |= *e > 0;
            *e += p.amount;
            c.mappings.entry(p.suffix).or_default().insert(p.rp);
        }
    }
    if shared {
        for (rp, resources) in &c.allocations {
            let p = &st.providers[*rp];
            for (rc, n) in resources {
                let inv = &p.inventories[*rc];
                if st.used(rp, rc) + n > inv.capacity() {
                    return None;
                }
            }
        }
    }
    let u = &req.unsuffixed;
    if u.resources.is_empty() && !u.required.is_empty() {
        let used: Vec<&Provider> = c.allocations.keys().map(|rp| &st.providers[*rp]).collect();
        let ok = u
            .required
            .matches_union(|t| used.iter().any(|p| p.traits.contains(t)))
            && !u
                .required
                .forbidden
                .iter()
                .any(|t| used.iter().any(|p| p.traits.contains(t)));
        if !ok {
            return None;
        }
    }
    Some(c)
}
