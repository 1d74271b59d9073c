//! os-instance-actions over HTTP: the `create` action with the build's
//! events (scheduling, then the host's build, Success or Error), power
//! actions with their events, per-microversion views (events for admins
//! before 2.51, for all after; hostId from 2.62, host and traceback for
//! admins), a deleted server's actions from 2.21, visibility (404 for
//! another project); and the server list filters: name as a regular
//! expression, changes-since / changes-before, next links that keep them.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};
use std::time::{Duration, Instant};

fn actions(b: &Value) -> Vec<String> {
    b["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_events_of_a_server() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let (st, b) = e
        .create_with("alice", "2.79", json!({"name": "web"}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&id).await["status"], "ACTIVE");
    let path = format!("/v2.1/servers/{id}/os-instance-actions");
    let create = the_create_is_recorded_with_its_events(&e, &id, &path).await;
    let show = format!("{path}/{create}");
    a_power_action_leaves_its_own_record_and_event(&e, &id, &path, &create).await;
    others_see_nothing_and_unknown_ids_are_404s(&e, &path, &show).await;
    a_deleted_servers_actions_stay_visible_and_page(&e, &id, &path).await;
}

/// The create's record (who, which server, a request id) and its two events as each
/// microversion shows them. Returns the create's request id.
async fn the_create_is_recorded_with_its_events(e: &Env, id: &str, path: &str) -> String {
    let (st, b) = e.call("alice", "2.79", Method::GET, path, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(actions(&b), ["create"]);
    let a = &b["instanceActions"][0];
    assert_eq!(
        (a["user_id"].as_str(), a["project_id"].as_str()),
        (Some("u-alice"), Some("p-alice"))
    );
    assert_eq!(a["instance_uuid"], id);
    assert!(a["message"].is_null());
    let rid = a["request_id"].as_str().unwrap().to_string();
    assert!(rid.starts_with("req-"), "{rid}");
    // The events: scheduling then the build, both Success, with times.
    let show = format!("{path}/{rid}");
    let (st, b) = e.call("alice", "2.79", Method::GET, &show, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let ev = b["instanceAction"]["events"].as_array().unwrap().clone();
    let names: Vec<&str> = ev.iter().map(|x| x["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "conductor_schedule_and_build_instances",
            "compute__do_build_and_run_instance"
        ]
    );
    for x in &ev {
        assert_eq!(x["result"], "Success", "{x}");
        assert!(x["finish_time"].as_str().unwrap() >= x["start_time"].as_str().unwrap());
        assert!(
            x.get("traceback").is_none() && x.get("host").is_none(),
            "an admin's: {x}"
        );
    }
    assert!(!ev[1]["hostId"].as_str().unwrap().is_empty(), "2.62 hostId");
    assert!(b["instanceAction"]["updated_at"].is_string(), "2.58");
    // Before 2.51 events are an admin's.
    let (_, b) = e.call("alice", "2.50", Method::GET, &show, None).await;
    assert!(b["instanceAction"].get("events").is_none(), "{b}");
    let (_, b) = e.call("admin", "2.50", Method::GET, &show, None).await;
    assert_eq!(b["instanceAction"]["events"].as_array().unwrap().len(), 2);
    assert!(
        b["instanceAction"]["events"][0].get("hostId").is_none(),
        "before 2.62"
    );
    let (_, b) = e.call("admin", "2.79", Method::GET, &show, None).await;
    assert_eq!(b["instanceAction"]["events"][1]["host"], "h1");
    rid
}

/// A power action leaves its own record and event, listed before the create.
async fn a_power_action_leaves_its_own_record_and_event(e: &Env, id: &str, path: &str, rid: &str) {
    // A power action leaves its own record and event.
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(json!({"os-stop": null})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(e.settled(id).await["status"], "SHUTOFF");
    let (_, b) = e.call("alice", "2.79", Method::GET, path, None).await;
    assert_eq!(actions(&b), ["stop", "create"], "newest first");
    let stop = b["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(stop, rid);
    let (_, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            &format!("{path}/{stop}"),
            None,
        )
        .await;
    assert_eq!(
        b["instanceAction"]["events"][0]["event"],
        "compute_stop_instance"
    );
    assert_eq!(b["instanceAction"]["events"][0]["result"], "Success");
}

/// Others see nothing; unknown ids are 404s.
async fn others_see_nothing_and_unknown_ids_are_404s(e: &Env, path: &str, show: &str) {
    // Others see nothing; unknown ids are 404s.
    for p in [path, show] {
        let (st, _) = e.call("bob", "2.79", Method::GET, p, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{p}");
    }
    let (st, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            &format!("{path}/req-nope"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
}

/// Deleted: its actions stay visible from 2.21, with the delete; 2.58 pages by request id.
async fn a_deleted_servers_actions_stay_visible_and_page(e: &Env, id: &str, path: &str) {
    // Deleted: its actions stay visible from 2.21, with the delete.
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
    let (st, b) = e.call("alice", "2.21", Method::GET, path, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(actions(&b), ["delete", "stop", "create"]);
    // 2.58 pages by request id; before it the paging keys are ignored.
    let (_, b) = e
        .call(
            "alice",
            "2.58",
            Method::GET,
            &format!("{path}?limit=1"),
            None,
        )
        .await;
    assert_eq!(actions(&b), ["delete"]);
    let marker = b["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b) = e
        .call(
            "alice",
            "2.58",
            Method::GET,
            &format!("{path}?limit=5&marker={marker}"),
            None,
        )
        .await;
    assert_eq!(actions(&b), ["stop", "create"]);
    let (_, b) = e
        .call(
            "alice",
            "2.57",
            Method::GET,
            &format!("{path}?limit=1"),
            None,
        )
        .await;
    assert_eq!(actions(&b).len(), 3);
    for q in ["marker=req-nope", "limit=x", "changes-since=soon"] {
        let (st, b) = e
            .call("alice", "2.66", Method::GET, &format!("{path}?{q}"), None)
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
    }
    let (_, b) = e
        .call(
            "alice",
            "2.66",
            Method::GET,
            &format!("{path}?changes-before=2000-01-01T00:00:00Z"),
            None,
        )
        .await;
    assert_eq!(actions(&b).len(), 0);
    let (st, _) = e.call("alice", "2.20", Method::GET, path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e.call("bob", "2.21", Method::GET, path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_is_an_error_event() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let (_, b) = e
        .create_with("alice", "2.79", json!({"name": "doomed"}), json!({}))
        .await;
    let id = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&id).await["status"], "ERROR");
    let path = format!("/v2.1/servers/{id}/os-instance-actions");
    let (_, b) = e.call("admin", "2.79", Method::GET, &path, None).await;
    assert_eq!(b["instanceActions"][0]["message"], "Error");
    let rid = b["instanceActions"][0]["request_id"].as_str().unwrap();
    let (_, b) = e
        .call("admin", "2.79", Method::GET, &format!("{path}/{rid}"), None)
        .await;
    let build = &b["instanceAction"]["events"][1];
    assert_eq!(build["result"], "Error", "{b}");
    assert!(
        build["traceback"]
            .as_str()
            .unwrap()
            .contains("the driver said no"),
        "{b}"
    );
    // No host has room: the scheduling event fails with the fault.
    e.flavor("9", 9).await;
    let (_, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({"name": "big", "flavorRef": "9"}),
            json!({}),
        )
        .await;
    let id = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&id).await["status"], "ERROR");
    let path = format!("/v2.1/servers/{id}/os-instance-actions");
    let (_, b) = e.call("admin", "2.79", Method::GET, &path, None).await;
    let rid = b["instanceActions"][0]["request_id"].as_str().unwrap();
    let (_, b) = e
        .call("admin", "2.79", Method::GET, &format!("{path}/{rid}"), None)
        .await;
    let ev = b["instanceAction"]["events"].as_array().unwrap();
    assert_eq!(ev.len(), 1, "{b}");
    assert_eq!(ev[0]["event"], "conductor_schedule_and_build_instances");
    assert_eq!(ev[0]["result"], "Error");
    assert!(
        ev[0]["traceback"]
            .as_str()
            .unwrap()
            .starts_with("No valid host was found"),
        "{b}"
    );
}

async fn names(e: &servers_util::Env, mv: &str, q: &str) -> Vec<String> {
    let (st, b) = e
        .call(
            "alice",
            mv,
            Method::GET,
            &format!("/v2.1/servers?{q}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{q}: {b}");
    let mut v: Vec<String> = b["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_list_regex_changes_window_and_links() {
    let e = env();
    e.flavor("1", 1).await;
    for n in ["web1", "web2", "db"] {
        let (st, b) = e
            .create_with("alice", "2.79", json!({"name": n}), json!({}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    }
    // No hosts: they settle in ERROR; then a mark in time, then one more.
    let deadline = Instant::now() + Duration::from_secs(20);
    while names(&e, "", "status=ERROR").await.len() < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mark = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, b) = e
        .create_with("alice", "2.79", json!({"name": "late"}), json!({}))
        .await;
    assert!(b["server"]["id"].is_string(), "{b}");

    assert_eq!(names(&e, "", "name=%5Eweb").await, ["web1", "web2"]);
    assert_eq!(names(&e, "", "name=b%24").await, ["db"]);
    assert_eq!(names(&e, "", "name=web2").await, ["web2"]);
    let (st, b) = e
        .call("alice", "", Method::GET, "/v2.1/servers?name=%5B", None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let since = format!("changes-since={}", mark.replace(':', "%3A"));
    assert_eq!(names(&e, "", &since).await, ["late"]);
    let before = format!("changes-before={}", mark.replace(':', "%3A"));
    assert_eq!(names(&e, "2.66", &before).await, ["db", "web1", "web2"]);
    assert_eq!(
        names(&e, "2.65", &before).await.len(),
        4,
        "changes-before is 2.66's"
    );
    // The same instant in another zone is the same filter.
    let plus_one = chrono::DateTime::parse_from_rfc3339(&mark)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let q = format!(
        "changes-since={}",
        plus_one.replace(':', "%3A").replace('+', "%2B")
    );
    assert_eq!(names(&e, "", &q).await, ["late"]);
    for q in [
        "changes-since=yesterday",
        "changes-since=2030-01-01T00:00:00Z&changes-before=2020-01-01T00:00:00Z",
    ] {
        let (st, b) = e
            .call(
                "alice",
                "2.66",
                Method::GET,
                &format!("/v2.1/servers?{q}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {b}");
    }
    // The next link keeps the filters.
    let (_, b) = e
        .call(
            "alice",
            "",
            Method::GET,
            "/v2.1/servers/detail?name=%5Eweb&limit=1",
            None,
        )
        .await;
    let next = b["servers_links"][0]["href"].as_str().unwrap();
    assert!(
        next.contains("name=%5Eweb") && next.contains("limit=1") && next.contains("marker="),
        "{next}"
    );
    let path = &next[next.find("/v2.1/").unwrap()..];
    let (_, b2) = e.call("alice", "", Method::GET, path, None).await;
    assert_eq!(b2["servers"].as_array().unwrap().len(), 1);
    assert_ne!(b2["servers"][0]["name"], b["servers"][0]["name"]);
    assert!(b2["servers"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("web"));
}
