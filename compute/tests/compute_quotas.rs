//! os-quota-sets and /limits over HTTP: Nova's defaults per microversion,
//! detail with usage, admin-only updates (below usage only with `force`),
//! revert, bad input; quotas enforced at server create with Nova's 403
//! body, min/max_count trimmed to what fits; and the race: many creates at
//! once through two API replicas on one store never pass the quota.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{call_on, env};

/// An env with flavors "1" (1 vCPU) and "2" (2 vCPUs, 256 MiB) and one server of alice's on
/// flavor "2": the usage the detail, /limits and the update checks below count.
async fn env_with_one_server() -> servers_util::Env {
    let e = env();
    e.flavor("1", 1).await;
    e.flavor("2", 2).await;
    let (st, b) = e
        .create_with("alice", "2.79", json!({"flavorRef": "2"}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_sets_show_nova_defaults_per_microversion_to_whom_may_see_them() {
    let e = env();
    let (st, b) = e
        .call(
            "alice",
            "2.1",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let q = &b["quota_set"];
    assert_eq!(q["id"], "p-alice");
    assert_eq!(
        (
            q["instances"].as_i64(),
            q["cores"].as_i64(),
            q["ram"].as_i64()
        ),
        (Some(10), Some(20), Some(51200))
    );
    assert_eq!(q["server_groups"], 10);
    assert_eq!(
        q["floating_ips"], 10,
        "nova-network proxies before 2.36: {q}"
    );
    assert_eq!(q["injected_files"], 5);
    let (_, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    let q = &b["quota_set"];
    assert!(
        q.get("floating_ips").is_none() && q.get("injected_files").is_none(),
        "{q}"
    );
    assert_eq!(q["server_group_members"], 10);

    // Another project's quota is an admin's to see.
    let (st, _) = e
        .call("bob", "", Method::GET, "/v2.1/os-quota-sets/p-alice", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = e
        .call(
            "admin",
            "",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = e
        .call(
            "bob",
            "",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice/defaults",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["quota_set"]["instances"], 10);
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice?user_id=u-alice",
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "per-user quotas are said to be unsupported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_and_limits_show_the_usage() {
    let e = env_with_one_server().await;
    // Usage in detail, and in /limits.
    let (_, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice/detail",
            None,
        )
        .await;
    assert_eq!(
        b["quota_set"]["instances"],
        json!({"limit": 10, "in_use": 1, "reserved": 0})
    );
    assert_eq!(b["quota_set"]["cores"]["in_use"], 2);
    assert_eq!(b["quota_set"]["ram"]["in_use"], 256);
    let (st, b) = e
        .call("alice", "2.79", Method::GET, "/v2.1/limits", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let a = &b["limits"]["absolute"];
    assert_eq!(b["limits"]["rate"], json!([]));
    assert_eq!(
        (
            a["maxTotalInstances"].as_i64(),
            a["totalInstancesUsed"].as_i64()
        ),
        (Some(10), Some(1))
    );
    assert_eq!(
        (a["maxTotalCores"].as_i64(), a["totalCoresUsed"].as_i64()),
        (Some(20), Some(2))
    );
    assert_eq!(
        (a["maxTotalRAMSize"].as_i64(), a["totalRAMUsed"].as_i64()),
        (Some(51200), Some(256))
    );
    assert!(
        a.get("maxPersonality").is_none() && a.get("maxSecurityGroups").is_none(),
        "{a}"
    );
    let (_, b) = e
        .call("alice", "2.1", Method::GET, "/v2.1/limits", None)
        .await;
    assert_eq!(b["limits"]["absolute"]["maxPersonality"], 5);
    // An admin may look at another project's; a member gets their own.
    let (_, b) = e
        .call(
            "admin",
            "",
            Method::GET,
            "/v2.1/limits?tenant_id=p-alice",
            None,
        )
        .await;
    assert_eq!(b["limits"]["absolute"]["totalInstancesUsed"], 1);
    let (_, b) = e
        .call(
            "bob",
            "",
            Method::GET,
            "/v2.1/limits?tenant_id=p-alice",
            None,
        )
        .await;
    assert_eq!(b["limits"]["absolute"]["totalInstancesUsed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_updates_are_an_admins_and_enforced_at_create() {
    let e = env_with_one_server().await;
    // Updates are an admin's; bad values are 400s.
    let put = |who: &'static str, body: Value| {
        e.call(
            who,
            "2.79",
            Method::PUT,
            "/v2.1/os-quota-sets/p-alice",
            Some(body),
        )
    };
    let (st, _) = put("alice", json!({"quota_set": {"instances": 50}})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    for body in [
        json!({"quota_set": {"instances": -2}}),
        json!({"quota_set": {"instances": "many"}}),
        json!({"quota_set": {"volumes": 3}}),
        json!({"quota_set": {"floating_ips": 3}}),
        json!({"quota_set": {"cores": 1.5}}),
        json!({"quota": {}}),
    ] {
        let (st, b) = put("admin", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(b["badRequest"]["message"].is_string());
    }
    // Below what is in use: refused unless forced.
    let (st, b) = put("admin", json!({"quota_set": {"cores": 1}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["badRequest"]["message"],
        "Quota limit 1 for cores must be greater than or equal to already used and reserved 2."
    );
    let (st, b) = put(
        "admin",
        json!({"quota_set": {"cores": 1, "instances": "3", "force": true}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["quota_set"]["cores"].as_i64(),
            b["quota_set"]["instances"].as_i64()
        ),
        (Some(1), Some(3))
    );
    assert!(b["quota_set"].get("id").is_none());
    let (st, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Quota exceeded for cores: Requested 1, but already used 2 of 1 cores"
    );
    // -1 is unlimited; DELETE goes back to the defaults.
    let (st, _) = put("admin", json!({"quota_set": {"cores": -1}})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({"flavorRef": "2", "min_count": 1, "max_count": 5}),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (_, l) = e
        .call("alice", "", Method::GET, "/v2.1/servers", None)
        .await;
    assert_eq!(
        l["servers"].as_array().unwrap().len(),
        3,
        "max_count trimmed to the 3 instances allowed: {l}"
    );
    let (st, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        b["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 3 of 3 instances"
    );
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = e
        .call(
            "admin",
            "",
            Method::DELETE,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (_, b) = e
        .call(
            "alice",
            "",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(
        (
            b["quota_set"]["instances"].as_i64(),
            b["quota_set"]["cores"].as_i64()
        ),
        (Some(10), Some(20))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_on_two_replicas_never_pass_the_quota() {
    let e = env();
    e.flavor("1", 1).await;
    let (st, _) = e
        .call(
            "admin",
            "",
            Method::PUT,
            "/v2.1/os-quota-sets/p-alice",
            Some(json!({"quota_set": {"instances": 5}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let apps = [e.app.clone(), e.replica()];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = apps[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            call_on(&app, "alice", "2.79", Method::POST, "/v2.1/servers",
                Some(json!({"server": {"name": format!("r{i}"), "imageRef": "img", "flavorRef": "1", "networks": "none"}})))
                .await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (st, b) = t.await.unwrap();
        match st {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::FORBIDDEN => assert!(
                b["forbidden"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Quota exceeded for instances"),
                "{b}"
            ),
            other => panic!("{other}: {b}"),
        }
    }
    let (_, l) = e
        .call("alice", "", Method::GET, "/v2.1/servers", None)
        .await;
    let n = l["servers"].as_array().unwrap().len();
    assert_eq!((accepted, n), (5, 5), "the quota of 5 was passed");
}
