//! Allocation candidates against a naive reference: every way of placing
//! each class of the unsuffixed group and each numbered group on any
//! provider, kept when the providers share a tree and everything fits,
//! over generated provider trees with usage, traits and groups.

use super::candidates::{candidates, Group, Request};
use super::model::{Consumer, Inventory, Provider};
use super::query::TraitFilter;
use super::state::{Change, State};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const CLASSES: [&str; 2] = ["VCPU", "MEMORY_MB"];
const TRAITS: [&str; 2] = ["HW_CPU_X86_AVX", "HW_CPU_X86_SSE"];

/// One generated provider: parent index (into earlier providers, or a
/// root), (total, used) per class (total 0: no inventory), trait bits.
#[derive(Debug, Clone)]
struct Gen {
    parent: Option<usize>,
    inv: [(u64, u64); 2],
    traits: [bool; 2],
}

fn gen_provider() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of(0usize..8),
        [(0u64..6, 0u64..3), (0u64..6, 0u64..3)],
        [any::<bool>(), any::<bool>()],
    )
        .prop_map(|(parent, inv, traits)| Gen {
            parent,
            inv: inv.map(|(t, u)| (t, u.min(t))),
            traits,
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
        changes.push(Change::Provider(Provider {
            uuid: uuid(i),
            name: format!("p{i}"),
            generation: 0,
            parent: parent.map(uuid),
            root,
            inventories,
            traits: TRAITS
                .iter()
                .zip(g.traits)
                .filter(|(_, on)| *on)
                .map(|(t, _)| t.to_string())
                .collect(),
            aggregates: BTreeSet::new(),
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
    )
        .prop_map(move |(vcpu, mem, traits)| {
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
            Group {
                suffix: suffix.to_string(),
                resources,
                required,
                ..Default::default()
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
    )
        .prop_map(|(mut unsuffixed, g1, g2, isolate, nested)| {
            // At most one group of each suffix (the generator may draw two).
            let groups: Vec<Group> = g1
                .into_iter()
                .take(1)
                .chain(g2.into_iter().take(1))
                .filter(|g| !g.resources.is_empty())
                .collect();
            if unsuffixed.resources.is_empty() {
                // The reference judges traits of a resourceless group
                // nowhere; keep such requests out.
                unsuffixed.required = TraitFilter::default();
            }
            Request {
                unsuffixed,
                groups,
                isolate,
                limit: None,
                nested,
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

/// Every assignment, brute force.
fn reference(st: &State, req: &Request) -> BTreeSet<Key> {
    let ps: Vec<&Provider> = st.providers.values().collect();
    let classes: Vec<(&String, &u64)> = req.unsuffixed.resources.iter().collect();
    let slots = classes.len() + req.groups.len();
    let mut out = BTreeSet::new();
    let mut idx = vec![0usize; slots];
    loop {
        let pick = |k: usize| ps[idx[k]];
        let used: Vec<&Provider> = (0..slots).map(pick).collect();
        let ok = (|| {
            let root = used.first().map(|p| p.root.as_str());
            if used.iter().any(|p| Some(p.root.as_str()) != root) {
                return false;
            }
            if !req.nested && used.iter().any(|p| p.parent.is_some()) {
                return false;
            }
            let u = &req.unsuffixed;
            let un: Vec<&Provider> = used[..classes.len()].to_vec();
            for (k, (rc, n)) in classes.iter().enumerate() {
                let p = un[k];
                if free(st, p, rc) < **n
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
            for (g, p) in req.groups.iter().zip(&used[classes.len()..]) {
                if !g.required.matches(&p.traits)
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
            true
        })();
        if ok {
            let mut alloc: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            let mut maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut add = |p: &Provider, rc: &str, n: u64, suffix: &str| {
                *alloc
                    .entry(p.uuid.clone())
                    .or_default()
                    .entry(rc.to_string())
                    .or_default() += n;
                maps.entry(suffix.to_string())
                    .or_default()
                    .insert(p.uuid.clone());
            };
            for (k, (rc, n)) in classes.iter().enumerate() {
                add(used[k], rc, **n, "");
            }
            for (g, p) in req.groups.iter().zip(&used[classes.len()..]) {
                for (rc, n) in &g.resources {
                    add(p, rc, *n, &g.suffix);
                }
            }
            let fits = alloc.iter().all(|(rp, r)| {
                r.iter()
                    .all(|(rc, n)| free(st, &st.providers[rp], rc) >= *n)
            });
            if fits {
                out.insert((alloc, maps));
            }
        }
        // Next assignment (odometer); none left when it wraps.
        let mut k = slots;
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < ps.len() {
                break;
            }
            idx[k] = 0;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn candidates_match_the_brute_force_reference(
        gens in proptest::collection::vec(gen_provider(), 1..7),
        req in gen_request(),
    ) {
        prop_assume!(!req.unsuffixed.resources.is_empty() || !req.groups.is_empty());
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
