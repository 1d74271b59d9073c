//! `weft agent --metrics-listen`: the agent's loop against a scripted ctrl
//! and a real (portless) switch, scraped over HTTP and parsed: sync rounds,
//! the applied revision, failed steps and the switch's own counters move.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weft_agent::{Agent, AgentError, Ctrl, HostBase, WeftSwitch};
use weft_proto::HostState;

/// A ctrl whose first registration fails and that publishes a new revision
/// every few milliseconds.
#[derive(Default)]
struct ScriptedCtrl {
    registrations: AtomicU64,
}

impl Ctrl for ScriptedCtrl {
    async fn register(&self) -> Result<(), AgentError> {
        if self.registrations.fetch_add(1, Ordering::Relaxed) == 0 {
            return Err(AgentError::Local("ctrl not up yet".into()));
        }
        Ok(())
    }
    async fn state(&self, since: u64, _wait: Duration) -> Result<HostState, AgentError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(HostState {
            host: "h1".into(),
            revision: since + 1,
            networks: vec![],
            ports: vec![],
            security_groups: vec![],
            tunnel_peers: vec![],
        })
    }
    async fn report(&self, _: &[(String, String)]) -> Result<(), AgentError> {
        Ok(())
    }
}

/// Samples of an exposition text, `series -> value`; any line that is not a
/// comment, `# EOF` or `name{labels} value` fails the test.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "unclosed labels in {line:?}");
        }
        let v: f64 = value.parse().expect("the value is a number");
        assert!(out.insert(series.to_string(), v).is_none(), "dup {series}");
    }
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    out
}

fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    parse(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_shows_sync_rounds_failures_and_the_switch() {
    let base = HostBase::parse("[switch]\nworkers = 1\n").unwrap();
    let sw = WeftSwitch::start(&base.config).unwrap();
    let agent = Agent::new(ScriptedCtrl::default(), sw, base);
    let metrics = agent.metrics.clone();
    let srv = weft_agent::serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        &agent.metrics,
        &agent.dp.handle,
    )
    .unwrap();
    let addr = srv.local_addr();

    let before = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    assert_eq!(before["weft_agent_sync_rounds_total"], 0.0);
    // The switch's counters are in the same scrape.
    assert_eq!(before["weft_switch_frames_processed_total"], 0.0);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));
    // The first registration fails; the agent retries after a second.
    for _ in 0..400 {
        if metrics.rounds() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let after = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    let rounds = after["weft_agent_sync_rounds_total"];
    assert!(rounds >= 3.0, "rounds {rounds}");
    assert!(after["weft_agent_applied_revision"] >= 3.0);
    assert_eq!(
        after["weft_agent_sync_failures_total{step=\"register\"}"],
        1.0
    );
    // Every round observed a lag.
    assert!(after["weft_agent_sync_lag_seconds_count"] >= rounds);
    assert!(after["weft_agent_sync_lag_seconds_sum"] > 0.0);
    assert_eq!(
        after["weft_agent_sync_lag_seconds_bucket{le=\"+Inf\"}"],
        after["weft_agent_sync_lag_seconds_count"]
    );

    stop_tx.send(true).unwrap();
    let sw = task.await.unwrap();
    sw.handle.shutdown();
}
