//! os-server-groups over HTTP: create/list/show/delete per microversion
//! (`policies` before 2.64, `policy` + `rules` from it), bad input, policy
//! and visibility (another project's group is a 404), the server_groups
//! and server_group_members quotas; and the `group` scheduler hint driving
//! the scheduler: anti-affinity spreads, a full anti-affinity group is
//! "No valid host was found", affinity stacks, parallel builds of one
//! group never share a host, and deleting a server takes it out of the
//! group's members.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};
use std::collections::BTreeSet;

async fn group(e: &Env, who: &str, mv: &str, body: Value) -> (StatusCode, Value) {
    e.call(
        who,
        mv,
        Method::POST,
        "/v2.1/os-server-groups",
        Some(json!({"server_group": body})),
    )
    .await
}

async fn new_group(e: &Env, who: &str, policy: &str) -> String {
    let (st, b) = group(e, who, "2.64", json!({"name": policy, "policy": policy})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["server_group"]["id"].as_str().unwrap().to_string()
}

/// Alice's groups "g1" (anti-affinity, made at 2.1) and "g2" (anti-affinity with a rule, made
/// at 2.64); returns g1's id.
async fn alices_two_groups(e: &Env) -> String {
    let (st, b) = group(
        e,
        "alice",
        "2.1",
        json!({"name": "g1", "policies": ["anti-affinity"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g1 = b["server_group"]["id"].as_str().unwrap().to_string();
    let (st, b) = group(
        e,
        "alice",
        "2.64",
        json!({"name": "g2", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    g1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_groups_as_each_microversion_shows_them() {
    let e = env();
    // Before 2.64: a list of one policy, metadata, no project until 2.13.
    let (st, b) = group(
        &e,
        "alice",
        "2.1",
        json!({"name": "g1", "policies": ["anti-affinity"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g1 = &b["server_group"];
    assert_eq!(g1["policies"], json!(["anti-affinity"]));
    assert_eq!(g1["members"], json!([]));
    assert_eq!(g1["metadata"], json!({}));
    assert!(
        g1.get("project_id").is_none() && g1.get("policy").is_none(),
        "{g1}"
    );
    // From 2.64: one policy and rules.
    let (st, b) = group(
        &e,
        "alice",
        "2.64",
        json!({"name": "g2", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g2 = &b["server_group"];
    assert_eq!(g2["policy"], "anti-affinity");
    assert_eq!(g2["rules"], json!({"max_server_per_host": 2}));
    assert_eq!(g2["project_id"], "p-alice");
    assert_eq!(g2["user_id"], "u-alice");
    assert!(
        g2.get("policies").is_none() && g2.get("metadata").is_none(),
        "{g2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_server_group_bodies_are_400s() {
    let e = env();
    for (mv, body) in [
        ("2.64", json!({"name": "x", "policies": ["affinity"]})),
        ("2.1", json!({"name": "x", "policy": "affinity"})),
        ("2.1", json!({"name": "x", "policies": ["best-effort"]})),
        (
            "2.1",
            json!({"name": "x", "policies": ["affinity", "anti-affinity"]}),
        ),
        ("2.1", json!({"name": "x", "policies": []})),
        ("2.1", json!({"policies": ["affinity"]})),
        ("2.1", json!({"name": "", "policies": ["affinity"]})),
        ("2.64", json!({"name": "x"})),
        (
            "2.64",
            json!({"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}),
        ),
        (
            "2.64",
            json!({"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}),
        ),
        (
            "2.64",
            json!({"name": "x", "policy": "anti-affinity", "rules": {"other": 1}}),
        ),
    ] {
        let (st, b) = group(&e, "alice", mv, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{mv} {body}: {b}");
        assert!(b["badRequest"]["message"].is_string(), "{b}");
    }
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::POST,
            "/v2.1/os-server-groups",
            Some(json!({"nope": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_look_and_other_projects_see_nothing() {
    let e = env();
    let g1 = alices_two_groups(&e).await;
    // A reader may look, not create; another project sees nothing.
    let (st, _) = group(
        &e,
        "rita",
        "2.1",
        json!({"name": "r", "policies": ["affinity"]}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, l) = e
        .call("rita", "", Method::GET, "/v2.1/os-server-groups", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(l["server_groups"].as_array().unwrap().len(), 2, "{l}");
    let (_, l) = e
        .call("bob", "", Method::GET, "/v2.1/os-server-groups", None)
        .await;
    assert_eq!(l["server_groups"], json!([]));
    let (_, l) = e
        .call(
            "bob",
            "",
            Method::GET,
            "/v2.1/os-server-groups?all_projects=True",
            None,
        )
        .await;
    assert_eq!(l["server_groups"], json!([]), "all_projects is an admin's");
    for m in [Method::GET, Method::DELETE] {
        let (st, b) = e
            .call("bob", "", m, &format!("/v2.1/os-server-groups/{g1}"), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
        assert!(b["itemNotFound"]["message"].as_str().unwrap().contains(&g1));
    }
    let (_, l) = e
        .call("admin", "", Method::GET, "/v2.1/os-server-groups", None)
        .await;
    assert_eq!(
        l["server_groups"],
        json!([]),
        "admin's own project has none"
    );
    let (_, l) = e
        .call(
            "admin",
            "",
            Method::GET,
            "/v2.1/os-server-groups?all_projects=True&limit=1&offset=1",
            None,
        )
        .await;
    assert_eq!(l["server_groups"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["server_groups"][0]["name"], "g2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_groups_quota_and_delete() {
    let e = env();
    let g1 = alices_two_groups(&e).await;
    // The server_groups quota: bob may have one.
    let (st, b) = e
        .call(
            "admin",
            "",
            Method::PUT,
            "/v2.1/os-quota-sets/p-bob",
            Some(json!({"quota_set": {"server_groups": 1}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    new_group(&e, "bob", "affinity").await;
    let (st, b) = group(
        &e,
        "bob",
        "2.64",
        json!({"name": "b2", "policy": "affinity"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Quota exceeded, too many server groups."
    );
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/os-server-groups/{g1}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::GET,
            &format!("/v2.1/os-server-groups/{g1}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

fn hint(g: &str) -> Value {
    json!({"os:scheduler_hints": {"group": g}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_spreads_and_a_full_group_has_no_valid_host() {
    let e = env();
    for h in ["h1", "h2", "h3"] {
        e.add_host(h, 8);
    }
    e.flavor("1", 1).await;
    let g = new_group(&e, "alice", "anti-affinity").await;
    // Hints the scheduler does not honour, and groups the caller cannot
    // use, are refused at create.
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({}),
            json!({"os:scheduler_hints": {"same_host": "x"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({}),
            json!({"os:scheduler_hints": {"group": "not-a-uuid"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({}),
            hint("0b0b0b0b-0000-4000-8000-000000000000"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = e.create_with("bob", "2.79", json!({}), hint(&g)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "another project's group: {b}");

    let mut ids = Vec::new();
    for i in 0..3 {
        let (st, b) = e
            .create_with("alice", "2.79", json!({"name": format!("a{i}")}), hint(&g))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        ids.push(b["server"]["id"].as_str().unwrap().to_string());
    }
    let mut hosts = BTreeSet::new();
    for id in &ids {
        let s = e.settled(id).await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        hosts.insert(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string());
    }
    assert_eq!(
        hosts.len(),
        3,
        "anti-affinity members share a host: {hosts:?}"
    );
    // Every host has a member: the fourth has nowhere to go.
    let (_, b) = e
        .create_with("alice", "2.79", json!({"name": "a3"}), hint(&g))
        .await;
    let fourth = b["server"]["id"].as_str().unwrap().to_string();
    let s = e.settled(&fourth).await;
    assert_eq!(s["status"], "ERROR", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No valid host was found"),
        "{s}"
    );
    let members = |b: &Value| -> BTreeSet<String> {
        b["server_group"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect()
    };
    let (_, b) = e
        .call(
            "alice",
            "",
            Method::GET,
            &format!("/v2.1/os-server-groups/{g}"),
            None,
        )
        .await;
    assert_eq!(members(&b).len(), 4, "{b}");
    // Deleting servers takes them out of the group; the freed host takes a new member.
    for id in [&ids[0], &fourth] {
        let (st, _) = e
            .call(
                "alice",
                "",
                Method::DELETE,
                &format!("/v2.1/servers/{id}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        e.gone(id).await;
    }
    let (_, b) = e
        .call(
            "alice",
            "",
            Method::GET,
            &format!("/v2.1/os-server-groups/{g}"),
            None,
        )
        .await;
    assert_eq!(members(&b), ids[1..].iter().cloned().collect(), "{b}");
    let (_, b) = e
        .create_with("alice", "2.79", json!({"name": "a4"}), hint(&g))
        .await;
    let s = e.settled(b["server"]["id"].as_str().unwrap()).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_builds_of_one_group_never_share_a_host() {
    let e = env();
    for i in 0..8 {
        e.add_host(&format!("h{i}"), 16);
    }
    e.flavor("1", 1).await;
    let (st, b) = e
        .call(
            "admin",
            "",
            Method::PUT,
            "/v2.1/os-quota-sets/p-admin",
            Some(json!({"quota_set": {"instances": 20, "server_group_members": 20}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g = new_group(&e, "admin", "anti-affinity").await;
    // Twelve in one request: the build loop schedules them all at once, each
    // on its own snapshot, so the placement write must settle the race.
    let (st, b) = e
        .create_with(
            "admin",
            "2.79",
            json!({"min_count": 12, "max_count": 12, "return_reservation_id": true}),
            hint(&g),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (_, b) = e
        .call(
            "admin",
            "",
            Method::GET,
            &format!("/v2.1/os-server-groups/{g}"),
            None,
        )
        .await;
    let ids: Vec<String> = b["server_group"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 12);
    let mut on = Vec::new();
    let mut errors = 0;
    for id in &ids {
        let s = e.settled(id).await;
        match s["status"].as_str().unwrap() {
            "ACTIVE" => on.push(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string()),
            _ => errors += 1,
        }
    }
    let distinct: BTreeSet<&String> = on.iter().collect();
    assert_eq!(distinct.len(), on.len(), "two members on one host: {on:?}");
    assert_eq!((on.len(), errors), (8, 4), "{on:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_stacks_and_members_are_a_quota() {
    let e = env();
    for h in ["h1", "h2", "h3"] {
        e.add_host(h, 8);
    }
    e.flavor("1", 1).await;
    let (st, b) = e
        .call(
            "admin",
            "",
            Method::PUT,
            "/v2.1/os-quota-sets/p-alice",
            Some(json!({"quota_set": {"server_group_members": 3}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let g = new_group(&e, "alice", "affinity").await;
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({"min_count": 4, "max_count": 4}),
            hint(&g),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Quota exceeded, too many servers in group"
    );
    let mut hosts = BTreeSet::new();
    for i in 0..3 {
        let (st, b) = e
            .create_with("alice", "2.79", json!({"name": format!("f{i}")}), hint(&g))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        let s = e.settled(b["server"]["id"].as_str().unwrap()).await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        hosts.insert(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string());
    }
    assert_eq!(hosts.len(), 1, "affinity members spread: {hosts:?}");
    let (st, b) = e.create_with("alice", "2.79", json!({}), hint(&g)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
}
