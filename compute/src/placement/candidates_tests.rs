//! Allocation candidates against a naive reference: every anchor tree,
//! and every way of placing each class of the unsuffixed group and each
//! numbered group on any provider serving that tree (its own, or a sharing
//! provider aggregated with it), kept when each provider passes its
//! group's filters and everything fits; over generated provider trees with
//! usage, traits, aggregates, sharing providers and groups (resourceless
//! ones named in `same_subtree` among them).

use super::candidates::sharing::SHARES_VIA_AGGREGATE;
use super::candidates::{candidates, Group, Request};
use super::model::{Consumer, Inventory, Provider};
use super::query::{AggFilter, TraitFilter};
use super::state::{Change, State};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const CLASSES: [&str; 2] = ["VCPU", "MEMORY_MB"];
const TRAITS: [&str; 2] = ["HW_CPU_X86_AVX", "HW_CPU_X86_SSE"];
const AGGS: [&str; 2] = [
    "aaaaaaaa-0000-4000-8000-000000000000",
    "bbbbbbbb-0000-4000-8000-000000000000",
];

/// One generated provider: parent index (into earlier providers, or a
/// root), (total, used) per class (total 0: no inventory), trait bits,
/// aggregate bits, and whether it shares via aggregate.
#[derive(Debug, Clone)]
struct Gen {
    parent: Option<usize>,
    inv: [(u64, u64); 2],
    traits: [bool; 2],
    aggs: [bool; 2],
    shares: bool,
}

fn gen_provider() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of(0usize..8),
        [(0u64..6, 0u64..3), (0u64..6, 0u64..3)],
        [any::<bool>(), any::<bool>()],
        [any::<bool>(), any::<bool>()],
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(parent, inv, traits, aggs, shares)| Gen {
            parent,
            inv: inv.map(|(t, u)| (t, u.min(t))),
            traits,
            aggs,
            shares,
        })
}

fn uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn build(gens: &[Gen]) -> State {
    let mut st = State::default();
    let mut changes = Vec::new();
    let mut roots: Vec<String> = Vec::new();
    for (i, g) in gens.iter().enumerate() {
        let parent = g.parent.filter(|p| *p < i);
        let root = match parent {
            Some(p) => roots[p].clone(),
            None => uuid(i),
        };
        roots.push(root.clone());
        let mut inventories = BTreeMap::new();
        let mut used = BTreeMap::new();
        for (k, (total, u)) in g.inv.iter().enumerate() {
            if *total > 0 {
                inventories.insert(CLASSES[k].to_string(), Inventory::with_total(*total));
                if *u > 0 {
                    used.insert(CLASSES[k].to_string(), *u);
                }
            }
        }
        let mut traits: BTreeSet<String> = TRAITS
            .iter()
            .zip(g.traits)
            .filter(|(_, on)| *on)
            .map(|(t, _)| t.to_string())
            .collect();
        if g.shares {
            traits.insert(SHARES_VIA_AGGREGATE.to_string());
        }
        changes.push(Change::Provider(Provider {
            uuid: uuid(i),
            name: format!("p{i}"),
            generation: 0,
            parent: parent.map(uuid),
            root,
            inventories,
            traits,
            aggregates: AGGS
                .iter()
                .zip(g.aggs)
                .filter(|(_, on)| *on)
                .map(|(a, _)| a.to_string())
                .collect(),
            created_at: String::new(),
            updated_at: String::new(),
        }));
        if !used.is_empty() {
            changes.push(Change::Consumer(Consumer {
                uuid: format!("10000000-0000-4000-8000-{i:012}"),
                project_id: "p".into(),
                user_id: "u".into(),
                generation: 1,
                consumer_type: None,
                allocations: BTreeMap::from([(uuid(i), used)]),
                created_at: String::new(),
                updated_at: String::new(),
            }));
        }
    }
    st.apply_changes(&changes);
    st
}

fn gen_group(suffix: &'static str) -> impl Strategy<Value = Group> {
    (
        proptest::option::of(1u64..3),
        proptest::option::of(1u64..3),
        0u8..4,
        0u8..4,
        proptest::option::weighted(0.15, 0usize..7),
    )
        .prop_map(move |(vcpu, mem, traits, aggs, in_tree)| {
            let mut resources = BTreeMap::new();
            if let Some(n) = vcpu {
                resources.insert("VCPU".to_string(), n);
            }
            if let Some(n) = mem {
                resources.insert("MEMORY_MB".to_string(), n);
            }
            let mut required = TraitFilter::default();
            match traits {
                1 => {
                    required.all.insert(TRAITS[0].to_string());
                }
                2 => {
                    required.forbidden.insert(TRAITS[1].to_string());
                }
                _ => {}
            }
            let mut member_of = AggFilter::default();
            match aggs {
                1 => member_of.any_of.push(BTreeSet::from([AGGS[0].to_string()])),
                2 => {
                    member_of.none_of.insert(AGGS[1].to_string());
                }
                _ => {}
            }
            Group {
                suffix: suffix.to_string(),
                resources,
                required,
                member_of,
                in_tree: in_tree.map(uuid),
            }
        })
}

fn gen_request() -> impl Strategy<Value = Request> {
    (
        gen_group(""),
        proptest::collection::vec(gen_group("1"), 0..=2),
        proptest::collection::vec(gen_group("2"), 0..=2),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut unsuffixed, g1, g2, isolate, nested, subtree)| {
            if unsuffixed.resources.is_empty() {
                // An unsuffixed group without resources is refused by the
                // API; with none of its keys it is simply absent.
                unsuffixed = Group::default();
            }
            // At most one group of each suffix (the generator may draw two).
            let mut groups: Vec<Group> = g1
                .into_iter()
                .take(1)
                .chain(g2.into_iter().take(1))
                .collect();
            // `same_subtree` over both numbered groups when asked and there
            // are two; otherwise a resourceless group has nothing to be
            // tied to, and is left out (the API refuses it).
            let same_subtree = if subtree && groups.len() == 2 {
                vec![BTreeSet::from(["1".to_string(), "2".to_string()])]
            } else {
                groups.retain(|g| !g.resources.is_empty());
                Vec::new()
            };
            Request {
                unsuffixed,
                groups,
                isolate,
                limit: None,
                nested,
                same_subtree,
                ..Default::default()
            }
        })
}

type Key = (
    BTreeMap<String, BTreeMap<String, u64>>,
    BTreeMap<String, BTreeSet<String>>,
);

fn free(st: &State, p: &Provider, rc: &str) -> u64 {
    p.inventories
        .get(rc)
        .map_or(0, |i| i.capacity().saturating_sub(st.used(&p.uuid, rc)))
}

/// Whether `p` serves the tree rooted at `anchor`: it is in the tree, or it
/// shares via aggregate with some provider of the tree.
fn serves(st: &State, p: &Provider, anchor: &str) -> bool {
    p.root == anchor
        || (p.traits.contains(SHARES_VIA_AGGREGATE)
            && st
                .providers
                .values()
                .any(|q| q.root == anchor && !q.aggregates.is_disjoint(&p.aggregates)))
}

/// The root of a group's `in_tree`, `Err` when it names no provider.
fn in_tree_root<'a>(st: &'a State, g: &Group) -> Result<Option<&'a str>, ()> {
    match &g.in_tree {
        None => Ok(None),
        Some(u) => st.providers.get(u).map(|p| Some(p.root.as_str())).ok_or(()),
    }
}

/// Whether the provider `top` is `p` or one of its ancestors.
fn under(st: &State, p: &str, top: &str) -> bool {
    let mut at = st.providers.get(p);
    while let Some(q) = at {
        if q.uuid == top {
            return true;
        }
        at = q.parent.as_ref().and_then(|x| st.providers.get(x));
    }
    false
}

/// The allocation an admitted assignment stands for, as a candidate's key: None when the
/// providers lack the room for the sum of what lands on each, or (unless nested) two
/// providers of one tree are used.
fn key_of(
    st: &State,
    req: &Request,
    classes: &[(&String, &u64)],
    used: &[&Provider],
) -> Option<Key> {
    let mut alloc: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |p: &Provider, rc: Option<(&str, u64)>, suffix: &str| {
        if let Some((rc, n)) = rc {
            *alloc
                .entry(p.uuid.clone())
                .or_default()
                .entry(rc.to_string())
                .or_default() += n;
        }
        maps.entry(suffix.to_string())
            .or_default()
            .insert(p.uuid.clone());
    };
    for (k, (rc, n)) in classes.iter().enumerate() {
        add(used[k], Some((rc.as_str(), **n)), "");
    }
    for (g, p) in req.groups.iter().zip(&used[classes.len()..]) {
        if g.resources.is_empty() {
            add(p, None, &g.suffix);
        }
        for (rc, n) in &g.resources {
            add(p, Some((rc.as_str(), *n)), &g.suffix);
        }
    }
    let fits = alloc.iter().all(|(rp, r)| {
        r.iter()
            .all(|(rc, n)| free(st, &st.providers[rp], rc) >= *n)
    });
    let roots: BTreeSet<&str> = alloc
        .keys()
        .map(|rp| st.providers[rp].root.as_str())
        .collect();
    let one_per_tree = req.nested || roots.len() == alloc.len();
    (fits && one_per_tree).then_some((alloc, maps))
}

/// Every assignment under every anchor tree, brute force.
fn reference(st: &State, req: &Request) -> BTreeSet<Key> {
    let ps: Vec<&Provider> = st.providers.values().collect();
    let classes: Vec<(&String, &u64)> = req.unsuffixed.resources.iter().collect();
    let slots = classes.len() + req.groups.len();
    let mut out = BTreeSet::new();
    let Ok(un_tree) = in_tree_root(st, &req.unsuffixed) else {
        return out;
    };
    let mut trees = Vec::new();
    for g in &req.groups {
        match in_tree_root(st, g) {
            Ok(t) => trees.push(t),
            Err(()) => return out,
        }
    }
    let anchors: BTreeSet<&str> = ps.iter().map(|p| p.root.as_str()).collect();
    for anchor in anchors {
        let root = &st.providers[anchor];
        let mut idx = vec![0usize; slots];
        loop {
            let used: Vec<&Provider> = (0..slots).map(|k| ps[idx[k]]).collect();
            let ok = (|| {
                if used.iter().any(|p| !serves(st, p, anchor)) {
                    return false;
                }
                let u = &req.unsuffixed;
                let un: Vec<&Provider> = used[..classes.len()].to_vec();
                for (k, (rc, n)) in classes.iter().enumerate() {
                    let p = un[k];
                    let aggs_ok = if p.root == anchor {
                        // A tree's own provider: it or its root in the
                        // aggregates, neither in a forbidden one.
                        (u.member_of.within(&p.aggregates) || u.member_of.within(&root.aggregates))
                            && !u.member_of.excluded(&p.aggregates)
                            && !u.member_of.excluded(&root.aggregates)
                    } else {
                        // Shared from outside: never under in_tree; the
                        // sharing provider itself in the aggregates.
                        un_tree.is_none()
                            && u.member_of.within(&p.aggregates)
                            && !u.member_of.excluded(&p.aggregates)
                            && !u.member_of.excluded(&root.aggregates)
                    };
                    if free(st, p, rc) < **n
                        || !p.inventories[*rc].fits_unit(**n)
                        || !aggs_ok
                        || un_tree.is_some_and(|t| p.root != t)
                        || u.required.forbidden.iter().any(|t| p.traits.contains(t))
                    {
                        return false;
                    }
                }
                if !u
                    .required
                    .all
                    .iter()
                    .all(|t| un.iter().any(|p| p.traits.contains(t)))
                {
                    return false;
                }
                for ((g, p), t) in req.groups.iter().zip(&used[classes.len()..]).zip(&trees) {
                    if !g.required.matches(&p.traits)
                        || !g.member_of.matches(&p.aggregates)
                        || t.is_some_and(|t| p.root != t)
                        || g.resources.iter().any(|(rc, n)| free(st, p, rc) < *n)
                    {
                        return false;
                    }
                }
                if req.isolate {
                    let numbered: BTreeSet<&str> = used[classes.len()..]
                        .iter()
                        .map(|p| p.uuid.as_str())
                        .collect();
                    if numbered.len() != req.groups.len() {
                        return false;
                    }
                }
                for set in &req.same_subtree {
                    let rps: Vec<&str> = req
                        .groups
                        .iter()
                        .zip(&used[classes.len()..])
                        .filter(|(g, _)| set.contains(&g.suffix))
                        .map(|(_, p)| p.uuid.as_str())
                        .collect();
                    if !rps.iter().any(|top| rps.iter().all(|p| under(st, p, top))) {
                        return false;
                    }
                }
                true
            })();
            if ok {
                out.extend(key_of(st, req, &classes, &used));
            }
            // Next assignment (odometer); none left when it wraps.
            let mut k = slots;
            let done = loop {
                if k == 0 {
                    break true;
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < ps.len() {
                    break false;
                }
                idx[k] = 0;
            };
            if done {
                break;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn candidates_match_the_brute_force_reference(
        gens in proptest::collection::vec(gen_provider(), 1..7),
        req in gen_request(),
    ) {
        prop_assume!(
            !req.unsuffixed.resources.is_empty()
                || req.groups.iter().any(|g| !g.resources.is_empty())
        );
        let st = build(&gens);
        let got: BTreeSet<Key> = candidates(&st, &req)
            .requests
            .iter()
            .map(|c| {
                (
                    c.allocations
                        .iter()
                        .map(|(rp, r)| {
                            (rp.to_string(), r.iter().map(|(rc, n)| (rc.to_string(), *n)).collect())
                        })
                        .collect(),
                    c.mappings
                        .iter()
                        .map(|(s, set)| (s.to_string(), set.iter().map(|x| x.to_string()).collect()))
                        .collect(),
                )
            })
            .collect();
        let want = reference(&st, &req);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn limit_and_summaries() {
    let gens: Vec<Gen> = (0..5)
        .map(|_| Gen {
            parent: None,
            inv: [(4, 0), (4, 0)],
            traits: [false, false],
            aggs: [false, false],
            shares: false,
        })
        .collect();
    let st = build(&gens);
    let mut req = Request {
        unsuffixed: Group {
            resources: BTreeMap::from([("VCPU".to_string(), 1)]),
            ..Default::default()
        },
        nested: true,
        ..Default::default()
    };
    assert_eq!(candidates(&st, &req).requests.len(), 5);
    req.limit = Some(2);
    let found = candidates(&st, &req);
    assert_eq!(found.requests.len(), 2);
    assert_eq!(
        found.summaries.len(),
        2,
        "only the trees that gave candidates"
    );
}
