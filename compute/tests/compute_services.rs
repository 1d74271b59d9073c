//! os-services writes over HTTP (real SQLite store, real placement, the
//! build loop): 2.53's `PUT /os-services/{uuid}`, the older per-action
//! `PUT /os-services/{enable,disable,disable-log-reason,force-down}`, and
//! `DELETE /os-services/{id}`, with Nova's codes for bad input; and the
//! scheduler keeping new servers off a disabled or forced-down host.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::env;

async fn service(e: &servers_util::Env, mv: &str, host: &str) -> Value {
    let (st, b) = e
        .call("admin", mv, Method::GET, "/v2.1/os-services", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn put(
    e: &servers_util::Env,
    who: &str,
    mv: &str,
    id: &str,
    body: Value,
) -> (StatusCode, Value) {
    e.call(
        who,
        mv,
        Method::PUT,
        &format!("/v2.1/os-services/{id}"),
        Some(body),
    )
    .await
}

/// A server created now: its status once settled, and its fault.
async fn boot(e: &servers_util::Env) -> (String, Value) {
    let (st, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let s = e.settled(b["server"]["id"].as_str().unwrap()).await;
    (s["status"].as_str().unwrap().to_string(), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_253_disables_forces_down_and_the_scheduler_skips_the_host() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let svc = service(&e, "2.53", "h1").await;
    let id = svc["id"].as_str().unwrap().to_string();
    assert_eq!(svc["status"], "enabled");

    // Bad input, as Nova answers it.
    let cases = [
        (
            "alice",
            id.as_str(),
            json!({"status": "disabled"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "admin",
            "not-a-uuid",
            json!({"status": "disabled"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "8a5d4c2e-1111-4222-8333-944455556666",
            json!({"status": "disabled"}),
            StatusCode::NOT_FOUND,
        ),
        ("admin", id.as_str(), json!({}), StatusCode::BAD_REQUEST),
        (
            "admin",
            id.as_str(),
            json!({"disabled_reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"status": "off"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"status": "enabled", "disabled_reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"status": "disabled", "disabled_reason": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"status": "disabled", "disabled_reason": "r".repeat(256)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"forced_down": "maybe"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            id.as_str(),
            json!({"status": "disabled", "host": "h1"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (who, sid, body, want) in cases {
        let (st, b) = put(&e, who, "2.53", sid, body.clone()).await;
        assert_eq!(st, want, "{body}: {b}");
    }
    assert_eq!(
        service(&e, "2.53", "h1").await["status"],
        "enabled",
        "a refused update changed nothing"
    );

    // Disabled: the only host is filtered out, the create goes ERROR.
    let (st, b) = put(
        &e,
        "admin",
        "2.53",
        &id,
        json!({"status": "disabled", "disabled_reason": "maintenance"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["service"]["status"], "disabled");
    assert_eq!(b["service"]["disabled_reason"], "maintenance");
    assert_eq!(b["service"]["id"], id.as_str());
    assert_eq!(b["service"]["forced_down"], false);
    let (status, s) = boot(&e).await;
    assert_eq!(status, "ERROR", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No valid host was found"),
        "{s}"
    );

    // Enabled again: the reason goes, a create lands.
    let (st, b) = put(&e, "admin", "2.53", &id, json!({"status": "enabled"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["service"]["disabled_reason"], Value::Null);
    let (status, s) = boot(&e).await;
    assert_eq!(status, "ACTIVE", "{s}");

    // Forced down: the host is down whatever its heartbeats say.
    let (st, b) = put(&e, "admin", "2.53", &id, json!({"forced_down": true})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["service"]["state"], "down");
    assert_eq!(b["service"]["status"], "enabled");
    let (status, s) = boot(&e).await;
    assert_eq!(status, "ERROR", "{s}");
    let (st, _) = put(&e, "admin", "2.53", &id, json!({"forced_down": "false"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(service(&e, "2.53", "h1").await["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_before_253_by_action_with_host_and_binary() {
    let e = env();
    e.add_host("h1", 8);
    let hb = |extra: Value| {
        let mut b = json!({"host": "h1", "binary": "nova-compute"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (st, b) = put(&e, "admin", "2.1", "disable", hb(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"service": {"host": "h1", "binary": "nova-compute", "status": "disabled"}})
    );
    assert_eq!(service(&e, "2.1", "h1").await["status"], "disabled");

    let (st, b) = put(
        &e,
        "admin",
        "2.1",
        "disable-log-reason",
        hb(json!({"disabled_reason": "disk"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["service"]["disabled_reason"], "disk");
    assert_eq!(service(&e, "2.1", "h1").await["disabled_reason"], "disk");

    let (st, b) = put(&e, "admin", "2.1", "enable", hb(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let now = service(&e, "2.1", "h1").await;
    assert_eq!(
        (now["status"].as_str(), now["disabled_reason"].as_str()),
        (Some("enabled"), None)
    );

    let (st, b) = put(
        &e,
        "admin",
        "2.11",
        "force-down",
        hb(json!({"forced_down": true})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["service"]["forced_down"], true);
    assert_eq!(service(&e, "2.11", "h1").await["state"], "down");

    let cases = [
        (
            "alice",
            "2.1",
            "disable",
            hb(json!({})),
            StatusCode::FORBIDDEN,
        ),
        (
            "admin",
            "2.1",
            "disable-log-reason",
            hb(json!({})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "2.1",
            "disable",
            json!({"host": "h1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "2.1",
            "disable",
            hb(json!({"color": "red"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "2.10",
            "force-down",
            hb(json!({"forced_down": true})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "2.10",
            "force-down",
            hb(json!({})),
            StatusCode::NOT_FOUND,
        ),
        (
            "admin",
            "2.11",
            "force-down",
            hb(json!({})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "admin",
            "2.1",
            "reboot",
            hb(json!({})),
            StatusCode::NOT_FOUND,
        ),
        (
            "admin",
            "2.1",
            "disable",
            json!({"host": "nope", "binary": "nova-compute"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "admin",
            "2.1",
            "disable",
            json!({"host": "h1", "binary": "nova-scheduler"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (who, mv, action, body, want) in cases {
        let (st, b) = put(&e, who, mv, action, body.clone()).await;
        assert_eq!(st, want, "{mv} {action} {body}: {b}");
        assert!(
            b.as_object().unwrap().values().next().unwrap()["message"].is_string(),
            "{b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_a_host_with_servers_and_removes_an_empty_one() {
    let e = env();
    e.add_host("h1", 8);
    e.add_host("h2", 8);
    e.flavor("1", 1).await;
    // Keep the server on h1.
    let h2 = service(&e, "2.53", "h2").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = put(&e, "admin", "2.53", &h2, json!({"status": "disabled"})).await;
    assert_eq!(st, StatusCode::OK);
    let (status, s) = boot(&e).await;
    assert_eq!(status, "ACTIVE", "{s}");
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "h1");

    let h1 = service(&e, "2.53", "h1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = |who: &'static str, mv: &'static str, id: String| {
        let e = &e;
        async move {
            e.call(
                who,
                mv,
                Method::DELETE,
                &format!("/v2.1/os-services/{id}"),
                None,
            )
            .await
        }
    };
    assert_eq!(
        del("admin", "2.53", h1.clone()).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        del("alice", "2.53", h2.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        del("admin", "2.53", "17".into()).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        del("admin", "2.1", "abc".into()).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        del("admin", "2.1", "99".into()).await.0,
        StatusCode::NOT_FOUND
    );

    // Before 2.53 by its integer id.
    let seq = service(&e, "2.1", "h2").await["id"].as_u64().unwrap();
    let (st, b) = del("admin", "2.1", seq.to_string()).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(service(&e, "2.53", "h2").await, Value::Null);
    assert_eq!(del("admin", "2.53", h2).await.0, StatusCode::NOT_FOUND);
    assert_eq!(service(&e, "2.53", "h1").await["status"], "enabled");
}
