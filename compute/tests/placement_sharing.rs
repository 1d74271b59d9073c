//! Allocation candidates over HTTP with sharing providers
//! (`MISC_SHARES_VIA_AGGREGATE`) and `same_subtree` (1.36), on a real
//! SQLite store: a compute node without disk draws DISK_GB from a shared
//! pool in its aggregate, never from one outside it, and groups tied by
//! `same_subtree` land under one NUMA node.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const AGG: &str = "aaaaaaaa-1111-4111-8111-111111111111";
const OTHER_AGG: &str = "bbbbbbbb-2222-4222-8222-222222222222";

async fn generation(app: &Router, uuid: &str) -> u64 {
    let r = admin(
        app,
        "GET",
        &format!("/resource_providers/{uuid}"),
        "1.20",
        None,
    )
    .await;
    r.body["generation"].as_u64().unwrap()
}

async fn traits(app: &Router, uuid: &str, names: &[&str]) {
    let gen = generation(app, uuid).await;
    let r = admin(
        app,
        "PUT",
        &format!("/resource_providers/{uuid}/traits"),
        "1.20",
        Some(json!({"traits": names, "resource_provider_generation": gen})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn aggregates(app: &Router, uuid: &str, aggs: &[&str]) {
    let gen = generation(app, uuid).await;
    let r = admin(
        app,
        "PUT",
        &format!("/resource_providers/{uuid}/aggregates"),
        "1.20",
        Some(json!({"aggregates": aggs, "resource_provider_generation": gen})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn get(app: &Router, query: &str, mv: &str) -> Value {
    let r = admin(
        app,
        "GET",
        &format!("/allocation_candidates?{query}"),
        mv,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    r.body
}

/// Each candidate's allocations as a set of (provider, class, amount).
fn allocations(body: &Value) -> BTreeSet<Vec<(String, String, u64)>> {
    body["allocation_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut v = Vec::new();
            for (rp, share) in c["allocations"].as_object().unwrap() {
                for (rc, n) in share["resources"].as_object().unwrap() {
                    v.push((rp.clone(), rc.clone(), n.as_u64().unwrap()));
                }
            }
            v.sort();
            v
        })
        .collect()
}

fn alloc(parts: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = parts
        .iter()
        .map(|(rp, rc, n)| (rp.to_string(), rc.to_string(), *n))
        .collect();
    v.sort();
    v
}

/// cn1 (no disk) and cn2 (local disk) in AGG with the shared pool ss;
/// cn3 outside it; ss_plain in AGG with disk but without the trait.
struct Cloud {
    cn1: String,
    cn2: String,
    cn3: String,
    ss: String,
    ss_plain: String,
}

async fn cloud(app: &Router) -> Cloud {
    let cn1 = provider(app, "cn1", None).await;
    let cn2 = provider(app, "cn2", None).await;
    let cn3 = provider(app, "cn3", None).await;
    let ss = provider(app, "ss", None).await;
    let ss_plain = provider(app, "ss_plain", None).await;
    inventory(app, &cn1, &[("VCPU", 8), ("MEMORY_MB", 4096)]).await;
    inventory(
        app,
        &cn2,
        &[("VCPU", 8), ("MEMORY_MB", 4096), ("DISK_GB", 100)],
    )
    .await;
    inventory(app, &cn3, &[("VCPU", 8), ("MEMORY_MB", 4096)]).await;
    inventory(app, &ss, &[("DISK_GB", 1000)]).await;
    inventory(app, &ss_plain, &[("DISK_GB", 1000)]).await;
    traits(app, &ss, &["MISC_SHARES_VIA_AGGREGATE"]).await;
    traits(app, &cn1, &["HW_CPU_X86_AVX2"]).await;
    for rp in [&cn1, &cn2, &ss, &ss_plain] {
        aggregates(app, rp, &[AGG]).await;
    }
    Cloud {
        cn1,
        cn2,
        cn3,
        ss,
        ss_plain,
    }
}

#[tokio::test]
async fn shared_disk_joins_the_compute_nodes_of_its_aggregate() {
    let e = env();
    let c = cloud(&e.app).await;
    let body = get(&e.app, "resources=VCPU:1,DISK_GB:10", "1.34").await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([
            alloc(&[(&c.cn1, "VCPU", 1), (&c.ss, "DISK_GB", 10)]),
            alloc(&[(&c.cn2, "VCPU", 1), (&c.cn2, "DISK_GB", 10)]),
            alloc(&[(&c.cn2, "VCPU", 1), (&c.ss, "DISK_GB", 10)]),
        ]),
        "cn3 is outside the aggregate, ss_plain does not share: {body}"
    );
    let summaries = body["provider_summaries"].as_object().unwrap();
    let names: BTreeSet<&str> = summaries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([c.cn1.as_str(), c.cn2.as_str(), c.ss.as_str()])
    );
    assert_eq!(
        summaries[&c.ss]["resources"]["DISK_GB"],
        json!({"capacity": 1000, "used": 0})
    );
    let m = body["allocation_requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["allocations"].get(&c.cn1).is_some())
        .unwrap();
    let mut mapped: Vec<&str> = m["mappings"][""]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    mapped.sort();
    let mut want = vec![c.cn1.as_str(), c.ss.as_str()];
    want.sort();
    assert_eq!(mapped, want);

    // Shared disk alone: one candidate per provider, however many trees
    // the pool anchors to.
    let body = get(&e.app, "resources=DISK_GB:10", "1.34").await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([
            alloc(&[(&c.cn2, "DISK_GB", 10)]),
            alloc(&[(&c.ss, "DISK_GB", 10)]),
            alloc(&[(&c.ss_plain, "DISK_GB", 10)]),
        ])
    );

    // Before 1.29 (no trees) sharing works the same: the pool is its own tree.
    let body = get(&e.app, "resources=VCPU:1,DISK_GB:10", "1.28").await;
    assert_eq!(allocations(&body).len(), 3, "{body}");
}

#[tokio::test]
async fn filters_apply_to_the_sharing_provider_as_placement_does() {
    let e = env();
    let c = cloud(&e.app).await;
    // A required trait is met by the providers of a candidate together;
    // a forbidden one by none of them (the pool carries the sharing trait).
    let body = get(
        &e.app,
        "resources=VCPU:1,DISK_GB:10&required=HW_CPU_X86_AVX2",
        "1.34",
    )
    .await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([alloc(&[(&c.cn1, "VCPU", 1), (&c.ss, "DISK_GB", 10)])])
    );
    let body = get(
        &e.app,
        "resources=VCPU:1,DISK_GB:10&required=!MISC_SHARES_VIA_AGGREGATE",
        "1.34",
    )
    .await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([alloc(&[(&c.cn2, "VCPU", 1), (&c.cn2, "DISK_GB", 10)])])
    );
    // in_tree confines the unsuffixed group to one tree: nothing shared in.
    let body = get(
        &e.app,
        &format!("resources=VCPU:1,DISK_GB:10&in_tree={}", c.cn1),
        "1.34",
    )
    .await;
    assert_eq!(allocations(&body), BTreeSet::new());
    // member_of: the pool itself must be in the aggregate asked for.
    let body = get(
        &e.app,
        &format!("resources=VCPU:1,DISK_GB:10&member_of={AGG}"),
        "1.34",
    )
    .await;
    assert_eq!(allocations(&body).len(), 3, "{body}");
    let body = get(
        &e.app,
        &format!("resources=VCPU:1,DISK_GB:10&member_of=!{AGG}"),
        "1.34",
    )
    .await;
    assert_eq!(allocations(&body), BTreeSet::new());
    // A numbered group may be served by the pool, for each tree it anchors.
    let body = get(
        &e.app,
        "resources1=VCPU:1&resources2=DISK_GB:10&group_policy=isolate",
        "1.34",
    )
    .await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([
            alloc(&[(&c.cn1, "VCPU", 1), (&c.ss, "DISK_GB", 10)]),
            alloc(&[(&c.cn2, "VCPU", 1), (&c.ss, "DISK_GB", 10)]),
        ]),
        "isolate keeps cn2's own disk out of its second group: {body}"
    );
    // Out of the aggregate, the pool shares with no one.
    aggregates(&e.app, &c.ss, &[OTHER_AGG]).await;
    let body = get(&e.app, "resources=VCPU:1,DISK_GB:10", "1.34").await;
    assert_eq!(
        allocations(&body),
        BTreeSet::from([alloc(&[(&c.cn2, "VCPU", 1), (&c.cn2, "DISK_GB", 10)])])
    );
    let _ = c.cn3;
}

#[tokio::test]
async fn same_subtree_keeps_groups_under_one_numa_node() {
    let e = env();
    let cn = provider(&e.app, "cn", None).await;
    inventory(&e.app, &cn, &[("VCPU", 8)]).await;
    let mut numas = Vec::new();
    for n in ["numa0", "numa1"] {
        let numa = provider(&e.app, n, Some(&cn)).await;
        traits(&e.app, &numa, &["HW_NUMA_ROOT"]).await;
        let pf = provider(&e.app, &format!("{n}_pf"), Some(&numa)).await;
        inventory(&e.app, &pf, &[("SRIOV_NET_VF", 4)]).await;
        numas.push((numa, pf));
    }
    let q = "resources_VF=SRIOV_NET_VF:1&required_NUMA=HW_NUMA_ROOT\
             &same_subtree=_VF,_NUMA&group_policy=none";
    let body = get(&e.app, q, "1.36").await;
    let reqs = body["allocation_requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{body}");
    for r in reqs {
        let numa = r["mappings"]["_NUMA"][0].as_str().unwrap();
        let pf = r["mappings"]["_VF"][0].as_str().unwrap();
        assert!(
            numas.iter().any(|(n, p)| n == numa && p == pf),
            "a VF from another NUMA node's PF: {r}"
        );
        // The resourceless group maps to a provider but allocates nothing.
        assert!(r["allocations"].get(numa).is_none());
    }
    // Two resourceful groups tied together: both VFs under one NUMA node.
    let q = "resources_A=SRIOV_NET_VF:1&resources_B=SRIOV_NET_VF:1\
             &required_NUMA=HW_NUMA_ROOT&same_subtree=_A,_B,_NUMA&group_policy=isolate";
    let body = get(&e.app, q, "1.36").await;
    assert_eq!(
        body["allocation_requests"],
        json!([]),
        "isolate over one PF each"
    );
    let q = "resources_A=SRIOV_NET_VF:1&resources_B=SRIOV_NET_VF:1\
             &same_subtree=_A,_B&group_policy=none";
    let body = get(&e.app, q, "1.36").await;
    assert_eq!(
        body["allocation_requests"].as_array().unwrap().len(),
        2,
        "{body}"
    );
}

#[tokio::test]
async fn resourceless_and_same_subtree_errors() {
    let e = env();
    for (q, mv, want) in [
        (
            "resources1=VCPU:1&required2=HW_NUMA_ROOT&group_policy=none",
            "1.36",
            "Resourceless suffixed group request should be specified in `same_subtree`",
        ),
        (
            "member_of1=aaaaaaaa-1111-4111-8111-111111111111&group_policy=none",
            "1.36",
            "There must be at least one resources or resources[$S] parameter.",
        ),
        (
            "resources_A=VCPU:1&resources_B=VCPU:1&same_subtree=_A,B&group_policy=none",
            "1.36",
            "Real suffixes should be specified in `same_subtree`:",
        ),
        (
            "resources_A=VCPU:1&resources_B=VCPU:1&same_subtree=_A,,_B&group_policy=none",
            "1.36",
            "Empty string (unsuffixed group) can not be specified in `same_subtree`",
        ),
        (
            "resources_A=VCPU:1&same_subtree=_A",
            "1.35",
            "'same_subtree' does not match any of the regexes",
        ),
        (
            "required=CUSTOM_FOO&required1=CUSTOM_BAR",
            "1.25",
            "Found the following orphaned traits keys: required, required1",
        ),
        (
            "resources=VCPU:1&in_tree1=aaaaaaaa-1111-4111-8111-111111111111",
            "1.31",
            "All request groups must specify resources.",
        ),
        (
            "resources1@=VCPU:1",
            "1.33",
            "'resources1@' does not match any of the regexes: '^in_tree([a-zA-Z0-9_-]{1,64})?$'",
        ),
        (
            "resources=VCPU:1&required=in:HW_NUMA_ROOT,HW_NIC_ROOT",
            "1.38",
            "The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39.",
        ),
        (
            "group_policy=isolate",
            "1.25",
            "At least one request group (`resources` or `resources{$S}`) is required.",
        ),
    ] {
        let r = admin(
            &e.app,
            "GET",
            &format!("/allocation_candidates?{q}"),
            mv,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        let detail = r.body["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(want), "{q}: {detail}");
    }
    // Repeated single-valued keys are read at their first value; a repeated
    // `required` before 1.39 at its last.
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&limit=1&limit=0",
        "1.16",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cn = provider(&e.app, "cn", None).await;
    inventory(&e.app, &cn, &[("VCPU", 1)]).await;
    traits(&e.app, &cn, &["HW_NUMA_ROOT"]).await;
    let q = "resources=VCPU:1&required=HW_NIC_ROOT&required=HW_NUMA_ROOT";
    let body = get(&e.app, q, "1.38").await;
    assert_eq!(body["allocation_requests"].as_array().unwrap().len(), 1);
    let body = get(&e.app, q, "1.39").await;
    assert_eq!(body["allocation_requests"], json!([]));
}
