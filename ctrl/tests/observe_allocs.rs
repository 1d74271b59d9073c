//! What the per-request observability costs in heap allocations: the same
//! trivial route served bare and behind `weft serve`'s outer layer (request
//! id, span, log line, per-route metrics), with a tracing subscriber
//! formatting every span and event as `weft serve` does. Allocations, not
//! time: a count does not move when other builds share the machine.

#![allow(unsafe_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tower::ServiceExt;
use weft_ctrl::server::{Server, ServerConfig, ServiceMount};

/// Counts the allocations of the thread that runs the requests (the test's
/// current-thread runtime), not those of other test threads.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the count is
// a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: `p` came from `System.alloc` with `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Mean allocations of one `GET path` through `app`, after a warm-up (the
/// first requests create the metric families' entries).
async fn per_request(app: &Router, path: &str) -> f64 {
    const N: u64 = 500;
    let send = || async {
        // Headers as every real client sends some: the request's header map
        // exists already, as it does in `weft serve`.
        let req = Request::builder()
            .uri(path)
            .header("accept", "application/json")
            .header("user-agent", "observe-allocs")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    };
    for _ in 0..50 {
        send().await;
    }
    let before = allocs();
    for _ in 0..N {
        send().await;
    }
    (allocs() - before) as f64 / N as f64
}

#[tokio::test(flavor = "current_thread")]
async fn observe_layer_allocations_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.admin_password = Some("pw".into());
    let mut server = Server::open(cfg).unwrap();
    let echo = Router::new().route("/ping/{id}", get(|| async { "pong" }));
    server
        .mount(ServiceMount::new("/echo", "echo", "echo", echo.clone()))
        .unwrap();
    let bare = Router::new().nest("/echo", echo);
    let served = server.router();
    let path = "/echo/ping/1";

    // No subscriber: what the layer itself costs.
    let quiet = per_request(&served, path).await - per_request(&bare, path).await;
    // With a subscriber formatting the span and the log line, as `weft serve` runs.
    let logged = {
        let _log = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        );
        per_request(&served, path).await - per_request(&bare, path).await
    };
    eprintln!(
        "allocations per request added by the observe layer: {quiet:.2} alone, {logged:.2} with the log subscriber"
    );
    assert!(
        quiet <= QUIET_BUDGET,
        "the observe layer allocates {quiet:.2} times per request"
    );
    assert!(
        logged <= LOGGED_BUDGET,
        "the observe layer and its log line allocate {logged:.2} times per request"
    );
}

/// Measured: 19 while every label, the path and the request id were copied
/// into Strings per request; 11 once they were not; 8 with the layer as a
/// tower Service instead of `middleware::from_fn` (which boxed its future,
/// re-boxed the route and cloned it per request). What is left: the request
/// id's header value, the response header map growing for it, the one boxed
/// tail future, and the route's own boxing above the bare router's. Then 10
/// (requests carrying two headers, as clients' do): the request id is also
/// put on the request, for Placement's error bodies (`request_id`), one
/// header value and the request's header map growing for it.
const QUIET_BUDGET: f64 = 10.0;
/// The same with the subscriber's span storage and formatted fields: 25, 17,
/// then 14 measured.
const LOGGED_BUDGET: f64 = 16.0;
