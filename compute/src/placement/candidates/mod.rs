//! `GET /allocation_candidates`: which sets of providers could satisfy a
//! request, as a pure function over one snapshot.
//!
//! ```text
//!  providers ─► trees (by root) ─► per anchor tree T:
//!     sharing providers anchored on T (sharing.rs) join T's own providers
//!     unsuffixed group: each class from any provider of T or one sharing
//!                       with T, traits over the providers used
//!     numbered groups:  all of a group's classes from one provider of T or
//!                       one sharing with T (none, for a resourceless group:
//!                       the provider it maps to)
//!     product of the groups' options ─► isolate? same_subtree? summed
//!     amounts fit? one provider per tree (before 1.29)? ─► dedupe
//! ```
//!
//! This follows Placement's own search (`research_context.py`,
//! `allocation_candidate.py`): a candidate is built per anchor tree, and
//! the same candidate reached from several anchors (a pool of shared disk
//! alone) is answered once.

mod merge;
pub mod sharing;

use super::model::Provider;
use super::query::{AggFilter, TraitFilter};
use super::state::State;
use sharing::Sharing;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One request group: the unsuffixed one (`resources`, `required`, ...) or
/// a numbered one (`resources1`, `required1`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// `""` for the unsuffixed group.
    pub suffix: String,
    /// Class -> amount; empty for a resourceless group (1.36, named in
    /// `same_subtree`), which still maps to one provider.
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
    /// 1.36 `same_subtree`: for each set of group suffixes, the providers
    /// those groups map to must all sit under one of them.
    pub same_subtree: Vec<BTreeSet<String>>,
    /// 1.29+: a candidate may take several providers of one tree; before,
    /// at most one provider per tree.
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
    /// In the order found (anchor trees by root uuid).
    pub requests: Vec<Candidate<'s>>,
    /// Providers for `provider_summaries`: every provider of the trees the
    /// candidates allocate from (1.29+), or the providers allocated from.
    pub summaries: BTreeSet<&'s str>,
}

/// One class drawn from one provider.
#[derive(Debug, Clone, Copy)]
struct Pick<'s> {
    rp: &'s str,
    rc: &'s str,
    amount: u64,
}

/// One way to satisfy one group in one anchor tree.
#[derive(Debug, Clone)]
struct Opt<'s> {
    suffix: &'s str,
    picks: Vec<Pick<'s>>,
    /// The providers the group maps to (one for a numbered group).
    rps: Vec<&'s str>,
}

/// Room left on `p` for one allocation of `amount` of `rc`.
fn fits(st: &State, p: &Provider, rc: &str, amount: u64) -> bool {
    p.inventories
        .get(rc)
        .is_some_and(|inv| inv.fits_unit(amount) && st.used(&p.uuid, rc) + amount <= inv.capacity())
}

/// Whether `p`, a provider of the tree rooted at `root`, may serve the
/// unsuffixed group. Placement reads an aggregate on a root as spanning
/// its tree: `p` or its root must be in the aggregates asked for, and
/// neither in a forbidden one.
fn unsuffixed_member(g: &Group, p: &Provider, root: &Provider, in_tree: Option<&str>) -> bool {
    in_tree.is_none_or(|r| p.root == r)
        && (g.member_of.within(&p.aggregates) || g.member_of.within(&root.aggregates))
        && !g.member_of.excluded(&p.aggregates)
        && !g.member_of.excluded(&root.aggregates)
        && !g.required.forbidden.iter().any(|t| p.traits.contains(t))
}

/// Whether sharing provider `s` may serve the unsuffixed group for the
/// tree rooted at `anchor`: `s` itself in the aggregates asked for, and
/// neither it nor the anchor in a forbidden one.
fn unsuffixed_sharer(g: &Group, s: &Provider, anchor: &Provider) -> bool {
    g.member_of.within(&s.aggregates)
        && !g.member_of.excluded(&s.aggregates)
        && !g.member_of.excluded(&anchor.aggregates)
        && !g.required.forbidden.iter().any(|t| s.traits.contains(t))
}

/// The unsuffixed group's options in one anchor tree: for each class a
/// provider (of the tree, or sharing with it), all combinations, whose
/// providers together carry the required traits.
fn unsuffixed_options<'s>(
    st: &'s State,
    g: &'s Group,
    members: &[&'s Provider],
    sharers: &[&'s Provider],
    root: &'s Provider,
    in_tree: Option<&str>,
) -> Vec<Opt<'s>> {
    // `in_tree` confines the group to one tree: nothing shared from outside.
    let sharers = if in_tree.is_some() { &[][..] } else { sharers };
    let eligible: Vec<&Provider> = members
        .iter()
        .copied()
        .filter(|p| unsuffixed_member(g, p, root, in_tree))
        .chain(
            sharers
                .iter()
                .copied()
                .filter(|s| unsuffixed_sharer(g, s, root)),
        )
        .collect();
    let per_class: Vec<Vec<Pick<'s>>> = g
        .resources
        .iter()
        .map(|(rc, &amount)| {
            eligible
                .iter()
                .filter(|p| fits(st, p, rc, amount))
                .map(|p| Pick {
                    rp: &p.uuid,
                    rc,
                    amount,
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
            let mut rps: Vec<&str> = combo.iter().map(|p| p.rp).collect();
            rps.sort_unstable();
            rps.dedup();
            out.push(Opt {
                suffix: &g.suffix,
                picks: combo.to_vec(),
                rps,
            });
        }
        true
    });
    out
}

/// A numbered group's options in one anchor tree: single providers (of the
/// tree, or sharing with it) with all of it, each judged on its own
/// traits and aggregates.
fn numbered_options<'s>(
    st: &'s State,
    g: &'s Group,
    members: &[&'s Provider],
    sharers: &[&'s Provider],
    in_tree: Option<&str>,
) -> Vec<Opt<'s>> {
    members
        .iter()
        .chain(sharers)
        .filter(|p| {
            in_tree.is_none_or(|r| p.root == r)
                && g.member_of.matches(&p.aggregates)
                && g.required.matches(&p.traits)
                && g.resources.iter().all(|(rc, &n)| fits(st, p, rc, n))
        })
        .map(|p| Opt {
            suffix: &g.suffix,
            picks: g
                .resources
                .iter()
                .map(|(rc, &amount)| Pick {
                    rp: &p.uuid,
                    rc,
                    amount,
                })
                .collect(),
            rps: vec![p.uuid.as_str()],
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
    let sharing = Sharing::of(st);
    // Providers grouped by tree: one sorted list cut into runs, rather than
    // a map of small vectors (a thousand allocations at a thousand hosts).
    let mut all: Vec<&Provider> = st.providers.values().collect();
    all.sort_by(|a, b| a.root.cmp(&b.root));
    let limit = req.limit.unwrap_or(usize::MAX);
    // Without numbered groups or sharing, each combination places each
    // class on its own provider choice in one tree, so no two are alike and
    // the (hashing, cloning) dedupe is skipped.
    let dedupe = !req.groups.is_empty() || !sharing.is_empty();
    let mut seen: HashSet<Candidate<'s>> = HashSet::new();
    let unsuffixed_empty = Opt {
        suffix: "",
        picks: Vec::new(),
        rps: Vec::new(),
    };
    for members in all.chunk_by(|a, b| a.root == b.root) {
        if out.requests.len() >= limit {
            break;
        }
        let Some(root) = st.providers.get(&members[0].root) else {
            continue;
        };
        if !req.root_required.is_empty() && !req.root_required.matches(&root.traits) {
            continue;
        }
        let sharers = sharing.serving(&root.uuid);
        let mut options: Vec<Vec<Opt<'s>>> = Vec::with_capacity(1 + req.groups.len());
        if req.unsuffixed.resources.is_empty() {
            options.push(vec![unsuffixed_empty.clone()]);
        } else {
            options.push(unsuffixed_options(
                st,
                &req.unsuffixed,
                members,
                sharers,
                root,
                un_root,
            ));
        }
        for (g, r) in req.groups.iter().zip(&group_roots) {
            options.push(numbered_options(st, g, members, sharers, *r));
        }
        let refs: Vec<Vec<&Opt<'s>>> = options.iter().map(|o| o.iter().collect()).collect();
        product(&refs, &mut |combo: &[&Opt<'s>]| {
            if let Some(c) = merge::merge(st, req, combo) {
                if !dedupe || seen.insert(c.clone()) {
                    out.requests.push(c);
                }
            }
            out.requests.len() < limit
        });
    }
    out.summaries = summaries(st, req, &out.requests, &all);
    out
}

/// The providers to summarise: from 1.29, every provider of each tree a
/// candidate allocates from (a sharing provider's tree too); before, the
/// providers allocated from.
fn summaries<'s>(
    st: &'s State,
    req: &Request,
    requests: &[Candidate<'s>],
    by_root: &[&'s Provider],
) -> BTreeSet<&'s str> {
    let used: BTreeSet<&str> = requests
        .iter()
        .flat_map(|c| c.allocations.keys().copied())
        .collect();
    if !req.nested {
        return used;
    }
    let roots: HashSet<&str> = used
        .iter()
        .filter_map(|rp| st.providers.get(*rp))
        .map(|p| p.root.as_str())
        .collect();
    by_root
        .iter()
        .filter(|p| roots.contains(p.root.as_str()))
        .map(|p| p.uuid.as_str())
        .collect()
}
