//! `weft serve`'s GET /metrics with the in-process agent and its switch in
//! the same registry (as `start_in_serve` wires them): scraped through the
//! server's router and parsed; the agent's rounds and applied revision move
//! when another host registers (a commit that changes this host's peers).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::time::Duration;
use tower::ServiceExt;
use weft::in_process::LocalCtrl;
use weft_ctrl::networking::{self, NetConfig};
use weft_ctrl::server::{Server, ServerConfig};

/// `series -> value`; every line must be a HELP/TYPE/EOF comment or a sample.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        let v: f64 = value.parse().expect("the value is a number");
        assert!(out.insert(series.to_string(), v).is_none(), "dup {series}");
    }
    assert!(text.ends_with("# EOF\n"));
    out
}

async fn scrape(app: &axum::Router) -> BTreeMap<String, f64> {
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    parse(std::str::from_utf8(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_metrics_show_the_in_process_agent_and_switch() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.admin_password = Some("pw".into());
    let (server, net) = tokio::task::spawn_blocking(move || {
        let mut server = Server::open(cfg).unwrap();
        let net = networking::mount(&mut server, &NetConfig::default()).unwrap();
        (server, net)
    })
    .await
    .unwrap();
    let switch_cfg = dir.path().join("switch.toml");
    std::fs::write(&switch_cfg, "[switch]\nworkers = 1\n").unwrap();
    let local = weft_agent::spawn_local(
        &tokio::runtime::Handle::current(),
        &switch_cfg,
        None,
        |base| LocalCtrl {
            net: net.clone(),
            host: "serve-h1".into(),
            tunnel_ip: base.tunnel_ip.clone(),
        },
    )
    .unwrap();
    server.metrics().extend(|reg| local.register_metrics(reg));
    let app = server.router();

    // One API request first: a request is counted when its answer is done,
    // so a scrape never counts itself, and a first scrape that already sees
    // the agent's round would otherwise find no request counted at all.
    let req = Request::builder()
        .uri("/identity/v3")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );

    let rounds = "weft_agent_sync_rounds_total";
    let mut m = scrape(&app).await;
    for _ in 0..200 {
        if m[rounds] >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        m = scrape(&app).await;
    }
    assert!(m[rounds] >= 1.0, "the agent never finished a round");
    assert!(m.contains_key("weft_switch_frames_processed_total"));
    // ctrl's own families are still there.
    assert!(m.keys().any(|k| k.starts_with("weft_http_requests_total{")));
    let before = (m[rounds], m["weft_agent_applied_revision"]);

    // Another host registers its tunnel endpoint: this host gets a new peer.
    let n = net.clone();
    tokio::task::spawn_blocking(move || n.register_tunnel("serve-h2", Some("192.0.2.9")))
        .await
        .unwrap()
        .unwrap();
    let mut after = scrape(&app).await;
    for _ in 0..200 {
        if after[rounds] > before.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        after = scrape(&app).await;
    }
    assert!(after[rounds] > before.0, "no round after the commit");
    assert!(after["weft_agent_applied_revision"] > before.1);
    drop(local);
}
