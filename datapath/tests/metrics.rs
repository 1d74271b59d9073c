//! The switch's `/metrics`: a running switch with real taps, scraped over its
//! control socket (`{"cmd":"metrics"}`, what `weft ctl metrics` prints) and
//! over HTTP (`weft switch --metrics-listen`), parsed, before and after the
//! kernel sends frames into a tap. Needs root (creates taps named `wsm…`).

mod lab;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::Link;
use serde_json::json;
use weft_datapath::daemon::{control, Switch};
use weft_datapath::metrics::{render, MetricsServer};
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    lab::uniq("wsm", role)
}

fn ip(args: &[&str]) {
    lab::sh("ip", args);
}

/// `series -> value` of an exposition text; a line that is neither a
/// `# HELP`/`# TYPE`/`# EOF` comment nor `name{labels} value` fails the test.
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
        assert!(!series.contains('{') || series.ends_with('}'), "{line:?}");
        let v: f64 = value.parse().expect("the value is a number");
        assert!(out.insert(series.to_string(), v).is_none(), "dup {series}");
    }
    assert!(text.ends_with("# EOF\n"));
    out
}

fn http_scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: switch\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    parse(body)
}

#[test]
fn scrapes_move_with_traffic_on_both_endpoints() {
    let (a, b) = (uniq("a"), uniq("b"));
    let _g = [Link(a.clone()), Link(b.clone())];
    let cfg = format!(
        "[switch]\nworkers = 1\n\n[[network]]\nname = \"n1\"\ntype = \"local\"\n\n\
         [[port]]\nname = \"{a}\"\nkind = \"tap\"\nnetwork = \"n1\"\nmac = \"fa:16:3e:77:00:01\"\nfixed_ips = [\"10.77.0.1\"]\n\n\
         [[port]]\nname = \"{b}\"\nkind = \"tap\"\nnetwork = \"n1\"\nmac = \"fa:16:3e:77:00:02\"\nfixed_ips = [\"10.77.0.2\"]\n"
    );
    let h = Arc::new(Switch::start(SwitchConfig::from_toml(&cfg, "t.toml").unwrap()).unwrap());
    let dir = std::env::temp_dir().join(uniq("sock"));
    let sock = dir.join("switch.sock");
    let _control = h.serve_control(&sock, None).unwrap();
    let weak = Arc::downgrade(&h);
    let http = MetricsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || {
            weak.upgrade()
                .map(|h| render(&h.metrics()))
                .unwrap_or_default()
        }),
    )
    .unwrap();
    let socket_scrape = || {
        let r = control::request(&sock, &json!({"cmd": "metrics"})).unwrap();
        assert_eq!(r["ok"], true, "{r}");
        parse(r["metrics"].as_str().unwrap())
    };
    let rx_a = format!("weft_switch_port_rx_frames_total{{port=\"{a}\"}}");
    let tx_b = format!("weft_switch_port_tx_frames_total{{port=\"{b}\"}}");
    let before = socket_scrape();
    assert_eq!(
        before[&format!("weft_switch_port_attached{{port=\"{a}\",kind=\"tap\",role=\"vm\"}}")],
        1.0
    );
    // The same numbers over HTTP (the switch may have seen a frame or two
    // from the kernel already: IPv6 router solicitations once a tap is up).
    assert!(http_scrape(http.local_addr())[&rx_a] >= before[&rx_a]);

    // The kernel side of tap a asks for 10.77.0.2: ARP requests enter the
    // switch on a and are flooded to b.
    ip(&["addr", "add", "10.77.0.1/24", "dev", &a]);
    ip(&["link", "set", &a, "up"]);
    ip(&["link", "set", &b, "up"]);
    let _ = Command::new("ping")
        .args(["-c", "2", "-W", "1", "-I", &a, "10.77.0.2"])
        .output();
    let end = Instant::now() + Duration::from_secs(5);
    let mut after = socket_scrape();
    while after[&tx_b] <= before[&tx_b] && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        after = socket_scrape();
    }
    assert!(after[&rx_a] > before[&rx_a], "no frame counted on {a}");
    assert!(
        after[&tx_b] > before[&tx_b],
        "the ARP request was not flooded to {b}"
    );
    let processed = "weft_switch_frames_processed_total";
    assert!(after[processed] > before[processed]);
    let classified = "weft_switch_stage_frames_entered_total{stage=\"classify\"}";
    assert!(after[classified] > before[classified]);
    let over_http = http_scrape(http.local_addr());
    assert!(over_http[&rx_a] >= after[&rx_a]);
    let _ = std::fs::remove_dir_all(&dir);
}
