//! Encoding checked sample by sample, and a scrape over HTTP.

use super::*;
use crate::verdict::Stage;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

/// Samples of an exposition text: `name{k="v",...}` -> value. Checks the
/// shape of every line it reads, so a malformed line fails the test.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line == "# EOF",
                "bad comment line {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let v: f64 = value.parse().expect("value is a number");
        if let Some((name, labels)) = series.split_once('{') {
            assert!(labels.ends_with('}'), "labels closed in {line:?}");
            for kv in labels.trim_end_matches('}').split(',') {
                let (k, v) = kv.split_once('=').expect("label is k=v");
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(v.starts_with('"') && v.ends_with('"'), "quoted {kv}");
            }
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
        assert!(out.insert(series.to_string(), v).is_none(), "dup {series}");
    }
    out
}

fn sample(ports_rx: u64) -> SwitchMetrics {
    SwitchMetrics {
        processed: 10,
        flow_cache_hits: 7,
        flow_cache_misses: 3,
        stages: vec![StageCounters {
            stage: Stage::Classify,
            entered: 10,
            dropped: 2,
        }],
        drop_reasons: vec![PortDrop {
            reason: "reserved_vlan",
            stage: "classify",
            count: 2,
        }],
        rule_hits: vec![RuleHits {
            port: "tap1".into(),
            rule: "r1".into(),
            packets: 5,
        }],
        conntrack: ConntrackMetrics {
            entries: 1,
            capacity: 16,
            ..Default::default()
        },
        ports: vec![PortMetrics {
            name: "tap1".into(),
            kind: "tap".into(),
            role: "vm".into(),
            attached: true,
            rx_frames: ports_rx,
            rx_bytes: 640,
            tx_frames: 4,
            tx_bytes: 256,
            rx_errors: 0,
            rx_ring_drops: 0,
            tx_dropped: 1,
            drops: vec![PortDrop {
                reason: "reserved_vlan",
                stage: "classify",
                count: 2,
            }],
        }],
    }
}

#[test]
fn every_counter_is_a_sample_with_its_labels() {
    let s = parse(&render(&sample(10)));
    assert_eq!(s["weft_switch_frames_processed_total"], 10.0);
    assert_eq!(s["weft_switch_flow_cache_hits_total"], 7.0);
    assert_eq!(
        s["weft_switch_stage_frames_dropped_total{stage=\"classify\"}"],
        2.0
    );
    assert_eq!(
        s["weft_switch_port_attached{port=\"tap1\",kind=\"tap\",role=\"vm\"}"],
        1.0
    );
    assert_eq!(s["weft_switch_port_rx_frames_total{port=\"tap1\"}"], 10.0);
    assert_eq!(s["weft_switch_port_tx_dropped_total{port=\"tap1\"}"], 1.0);
    assert_eq!(
        s["weft_switch_port_drops_total{port=\"tap1\",reason=\"reserved_vlan\",stage=\"classify\"}"],
        2.0
    );
    assert_eq!(
        s["weft_switch_drops_total{reason=\"reserved_vlan\",stage=\"classify\"}"],
        2.0
    );
}

#[test]
fn http_scrape_answers_the_current_numbers() {
    let rx = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let r = rx.clone();
    let srv = MetricsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || render(&sample(r.load(Ordering::Relaxed)))),
    )
    .unwrap();
    let get = |req: &str| {
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let scrape = || {
        let text = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        parse(body)["weft_switch_port_rx_frames_total{port=\"tap1\"}"]
    };
    assert_eq!(scrape(), 1.0);
    rx.store(5, Ordering::Relaxed);
    assert_eq!(scrape(), 5.0);
    assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
}
