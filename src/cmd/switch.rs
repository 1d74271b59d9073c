//! `weft switch`, `weft ctl`, `weft trace`: the standalone datapath and its
//! control-socket clients.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_datapath::daemon::{control, ApplyReport, Switch, SwitchOptions};
use weft_datapath::io::sys;
use weft_datapath::metrics;
use weft_datapath::SwitchConfig;

#[derive(Args)]
pub struct SwitchArgs {
    /// Switch config (TOML): physnets, networks, ports.
    #[arg(long)]
    pub config: PathBuf,
    /// Serve the counters in Prometheus' text format at http://ADDR/metrics
    /// (e.g. 127.0.0.1:9101; no authentication: bind a management address).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Take the ports over from the switch running on the config's control socket instead of
    /// opening them: its taps, AF_PACKET sockets and tunnel sockets pass to this process
    /// open (no netdev is closed), with its running config and learned MACs; it exits once
    /// this one forwards. How to upgrade the switch binary without dropping traffic.
    #[arg(long)]
    pub takeover: bool,
}

#[derive(Args)]
pub struct CtlArgs {
    /// Control socket of the running switch (default: /run/weft/switch.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print the raw JSON reply instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

#[derive(Subcommand)]
pub enum CtlCmd {
    /// Ports: name, kind, network, local VLAN, state, rx/tx/drops.
    Ports,
    /// Learned and static MAC entries per local VLAN.
    Macs,
    /// Counters per port, per drop reason and per stage.
    Counters,
    /// The same counters in Prometheus' text format (what --metrics-listen serves).
    Metrics,
    /// Re-read the config file and apply it (like SIGHUP).
    Reload,
    /// The security groups' tracked connections (with --flush: remove the selected ones).
    Conntrack {
        /// Only this port's connections.
        #[arg(long)]
        port: Option<String>,
        /// Only this zone's (the network's local VLAN).
        #[arg(long)]
        zone: Option<u16>,
        /// Remove the selected connections (their next packet must be admitted anew).
        #[arg(long)]
        flush: bool,
    },
}

#[derive(Args)]
pub struct TraceArgs {
    /// Control socket of the running switch (default: /run/weft/switch.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Frame description: in_port=NAME dl_src=MAC dl_dst=MAC [dl_vlan=N] [nw_src=IP nw_dst=IP] ...
    #[arg(required = true)]
    pub frame: Vec<String>,
}

fn socket_path(s: &Option<PathBuf>) -> PathBuf {
    s.clone()
        .unwrap_or_else(weft_datapath::daemon::default_control_socket)
}

fn load(path: &Path) -> anyhow::Result<SwitchConfig> {
    // The error names the file, line and field; print it as is.
    SwitchConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run_switch(a: SwitchArgs) -> anyhow::Result<()> {
    let cfg = load(&a.config)?;
    let sock = cfg.switch.control_socket.clone();
    // Signals are taken synchronously by this thread; block them before any
    // worker thread exists so none of them gets one.
    sys::block_control_signals().context("blocking signals")?;
    let (handle, listener) = if a.takeover {
        let (h, l, rep) = Switch::take_over(&sock, SwitchOptions::default())?;
        tracing::info!(
            adopted = rep.adopted,
            opened = rep.opened,
            macs = rep.macs,
            prepare_us = rep.prepare_us,
            pause_us = rep.pause_us,
            "took the ports over from the running switch"
        );
        (Arc::new(h), Some(l))
    } else {
        (Arc::new(Switch::start(cfg)?), None)
    };
    let cfg_path = a.config.clone();
    let h2 = Arc::downgrade(&handle);
    let reload: Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync> = Arc::new(move || {
        let cfg = SwitchConfig::load(&cfg_path).map_err(|e| e.to_string())?;
        let h = h2.upgrade().ok_or("switch is shutting down")?;
        h.apply(cfg).map_err(|e| e.to_string())
    });
    let server = handle
        .serve_control_upgradable(&sock, listener, Some(reload.clone()))
        .with_context(|| format!("control socket {}", sock.display()))?;
    let metrics = match a.metrics_listen {
        Some(addr) => {
            let h = Arc::downgrade(&handle);
            let render = Arc::new(move || {
                h.upgrade()
                    .map(|h| metrics::render(&h.metrics()))
                    .unwrap_or_default()
            });
            // After a takeover the old process holds the address until it exits (soon):
            // retry, and never give up the ports this process now holds over metrics.
            let tries = if a.takeover { 50 } else { 1 };
            let mut got = None;
            for i in 0..tries {
                match metrics::MetricsServer::bind(addr, render.clone()) {
                    Ok(m) => {
                        tracing::info!(addr = %m.local_addr(), "serving /metrics");
                        got = Some(m);
                        break;
                    }
                    Err(e) if i + 1 == tries && !a.takeover => {
                        return Err(e).with_context(|| format!("--metrics-listen {addr}"))
                    }
                    Err(e) if i + 1 == tries => {
                        tracing::error!("--metrics-listen {addr}: {e}; running without /metrics")
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
            got
        }
        None => None,
    };
    for p in handle.port_states() {
        tracing::info!(
            port = %p.name, kind = %p.kind, network = ?p.network, local_vlan = p.local_vlan,
            attached = p.attached, "port"
        );
    }
    tracing::info!(socket = %sock.display(), "weft switch running");
    loop {
        if handle.handed_over() {
            // The new process holds the ports (and the socket): closing ours closes nothing.
            tracing::info!("ports handed over to a new switch process; exiting");
            break;
        }
        match sys::wait_signal(100) {
            Some(sys::SIGHUP) => match reload() {
                Ok(r) => tracing::info!(?r, "reloaded on SIGHUP"),
                Err(e) => tracing::error!("reload failed, old config kept: {e}"),
            },
            Some(_) => break,
            None => {}
        }
    }
    drop(metrics);
    drop(server);
    handle.shutdown();
    Ok(())
}

fn call(socket: &Option<PathBuf>, req: Value) -> anyhow::Result<Value> {
    let path = socket_path(socket);
    let reply = control::request(&path, &req)?;
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let msg = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        bail!("{msg}");
    }
    Ok(reply)
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn run_ctl(a: CtlArgs) -> anyhow::Result<()> {
    let reply = call(&a.socket, ctl_request(&a.cmd))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    print!("{}", render_reply(&a.cmd, &reply));
    Ok(())
}

/// The control-socket request a subcommand stands for (the socket's protocol, see
/// `weft_datapath::daemon::control`).
fn ctl_request(cmd: &CtlCmd) -> Value {
    match cmd {
        CtlCmd::Ports => json!({ "cmd": "ports" }),
        CtlCmd::Macs => json!({ "cmd": "macs" }),
        CtlCmd::Counters => json!({ "cmd": "counters" }),
        CtlCmd::Metrics => json!({ "cmd": "metrics" }),
        CtlCmd::Reload => json!({ "cmd": "reload" }),
        CtlCmd::Conntrack { port, zone, flush } => {
            json!({ "cmd": "conntrack", "port": port, "zone": zone, "flush": flush })
        }
    }
}

/// The text `weft ctl` prints for a reply: each reply kind has its own shape, rendered to a
/// string so the whole output is written at once (and can be checked without a switch).
fn render_reply(cmd: &CtlCmd, reply: &Value) -> String {
    match cmd {
        CtlCmd::Metrics => s(reply, "metrics"),
        CtlCmd::Conntrack { flush: true, .. } => {
            format!("flushed {} connections\n", s(reply, "flushed"))
        }
        CtlCmd::Conntrack { .. } => conntrack_text(reply),
        CtlCmd::Ports => ports_text(reply),
        CtlCmd::Macs => macs_text(reply),
        CtlCmd::Counters => counters_text(&reply["counters"]),
        CtlCmd::Reload => {
            let r = &reply["report"];
            format!(
                "reloaded (generation {}): added {} removed {} reattached {} updated {}\n",
                r["generation"], r["added"], r["removed"], r["reattached"], r["updated"]
            )
        }
    }
}

/// Rows of `key` (an array of objects) in the reply, each mapped to table cells.
fn rows_of(reply: &Value, key: &str, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    reply[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(row)
        .collect()
}

/// `weft ctl conntrack`: one line per tracked connection, then the table's totals (how
/// full it is and what it refused, which the entries alone do not show).
fn conntrack_text(reply: &Value) -> String {
    const KEYS: [&str; 9] = [
        "zone",
        "port",
        "proto",
        "origin",
        "responder",
        "direction",
        "state",
        "rule",
        "expires_in_secs",
    ];
    let rows = rows_of(reply, "entries", |c| KEYS.iter().map(|k| s(c, k)).collect());
    let head = [
        "ZONE",
        "PORT",
        "PROTO",
        "ORIGIN",
        "RESPONDER",
        "DIR",
        "STATE",
        "RULE",
        "EXPIRES_S",
    ];
    format!(
        "{}{} of {} entries; created {}, invalid {}, refused (full) {}\n",
        table(&head, &rows),
        s(reply, "count"),
        s(reply, "capacity"),
        s(reply, "created"),
        s(reply, "invalid"),
        s(reply, "refused_full")
    )
}

/// `weft ctl ports`: a port is "pending" while its netdev does not exist yet.
fn ports_text(reply: &Value) -> String {
    let rows = rows_of(reply, "ports", |p| {
        let state = if p["attached"].as_bool() == Some(true) {
            "attached"
        } else {
            "pending"
        };
        vec![
            s(p, "name"),
            format!("{}/{}", s(p, "kind"), s(p, "role")),
            s(p, "network"),
            s(p, "local_vlan"),
            state.to_string(),
            s(p, "rx_frames"),
            s(p, "tx_frames"),
            s(p, "drops"),
            s(p, "rx_ring_drops"),
        ]
    });
    let head = [
        "NAME",
        "KIND",
        "NETWORK",
        "LOCAL_VLAN",
        "STATE",
        "RX",
        "TX",
        "DROPS",
        "RX_RING_LOST",
    ];
    table(&head, &rows)
}

/// `weft ctl macs`: configured MACs never age, so they show "static" instead of an age.
fn macs_text(reply: &Value) -> String {
    let rows = rows_of(reply, "macs", |m| {
        let age = if m["static"].as_bool() == Some(true) {
            "static".into()
        } else {
            s(m, "age_secs")
        };
        vec![s(m, "vlan"), s(m, "mac"), s(m, "port"), age]
    });
    table(&["VLAN", "MAC", "PORT", "AGE"], &rows)
}

/// `weft ctl counters`: per port, per drop reason, per stage, then the pipeline's and the
/// workers' totals.
fn counters_text(c: &Value) -> String {
    let rows = rows_of(c, "ports", |p| {
        let drops: Vec<String> = p["drops"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            s(p, "name"),
            s(p, "rx"),
            s(p, "tx"),
            s(p, "rx_errors"),
            s(p, "tx_dropped"),
            if drops.is_empty() {
                "-".into()
            } else {
                drops.join(",")
            },
        ]
    });
    let mut out = String::from("ports:\n");
    out += &table(&["NAME", "RX", "TX", "RX_ERR", "TX_DROP", "DROPS"], &rows);
    out += "\ndrop reasons:\n";
    let rows: Vec<Vec<String>> = c["drop_reasons"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    out += &table(&["REASON", "COUNT"], &rows);
    out += "\nstages:\n";
    let rows = rows_of(c, "stages", |st| {
        vec![s(st, "stage"), s(st, "entered"), s(st, "dropped")]
    });
    out += &table(&["STAGE", "ENTERED", "DROPPED"], &rows);
    out += &format!(
        "\nprocessed {}  flow cache hits {} misses {}\n",
        c["processed"], c["flow_cache_hits"], c["flow_cache_misses"]
    );
    // Whether `[switch] busy_poll_us` pays here: hits are frames found by spinning.
    let p = &c["poll"];
    out += &format!(
        "workers: sleeps {}  spin windows that found a frame {} ended empty {}\n",
        p["sleeps"], p["spin_hits"], p["spin_misses"]
    );
    // Which tap I/O runs (`[switch] io`, after the io_uring probe).
    out += &format!(
        "tap I/O: {}  io_uring_enter calls {}\n",
        s(p, "io"),
        p["uring_enters"]
    );
    out
}

pub fn run_trace(a: TraceArgs) -> anyhow::Result<()> {
    let desc = a.frame.join(" ");
    let reply = call(&a.socket, json!({"cmd": "trace", "frame": desc}))?;
    println!("Flow: {desc}");
    for step in reply["trace"].as_array().into_iter().flatten() {
        println!("  {:<10} {}", s(step, "stage"), s(step, "decision"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables are aligned on their widest cell; a missing or null field shows as "-".
    #[test]
    fn ports_reply_renders_as_an_aligned_table() {
        let reply = json!({"ok": true, "ports": [
            {"name": "tap-a", "kind": "tap", "role": "vm", "network": "n1", "local_vlan": 1,
             "attached": true, "rx_frames": 10, "tx_frames": 3, "drops": 0, "rx_ring_drops": 0},
            {"name": "eth1", "kind": "system", "role": "uplink", "network": null, "attached": false}
        ]});
        assert_eq!(
            render_reply(&CtlCmd::Ports, &reply),
            "NAME   KIND           NETWORK  LOCAL_VLAN  STATE     RX  TX  DROPS  RX_RING_LOST\n\
             tap-a  tap/vm         n1       1           attached  10  3   0      0\n\
             eth1   system/uplink  -        -           pending   -   -   -      -\n"
        );
    }

    #[test]
    fn counters_reply_renders_ports_reasons_stages_and_totals() {
        let reply = json!({"ok": true, "counters": {
            "ports": [
                {"name": "tap-a", "rx": 1, "tx": 2, "rx_errors": 0, "tx_dropped": 0, "drops": {}},
                {"name": "tap-b", "rx": 1, "tx": 2, "rx_errors": 0, "tx_dropped": 0,
                 "drops": {"port_security": 3, "firewall": 1}}
            ],
            "drop_reasons": {"port_security": 3},
            "stages": [{"stage": "classify", "entered": 4, "dropped": 0}],
            "processed": 9, "flow_cache_hits": 5, "flow_cache_misses": 4,
            "poll": {"sleeps": 7, "spin_hits": 1, "spin_misses": 2, "io": "uring",
                     "uring_enters": 11}
        }});
        assert_eq!(
            render_reply(&CtlCmd::Counters, &reply),
            "ports:\n\
             NAME   RX  TX  RX_ERR  TX_DROP  DROPS\n\
             tap-a  1   2   0       0        -\n\
             tap-b  1   2   0       0        firewall=1,port_security=3\n\
             \n\
             drop reasons:\n\
             REASON         COUNT\n\
             port_security  3\n\
             \n\
             stages:\n\
             STAGE     ENTERED  DROPPED\n\
             classify  4        0\n\
             \n\
             processed 9  flow cache hits 5 misses 4\n\
             workers: sleeps 7  spin windows that found a frame 1 ended empty 2\n\
             tap I/O: uring  io_uring_enter calls 11\n"
        );
    }

    #[test]
    fn conntrack_flush_and_metrics_replies() {
        let cmd = CtlCmd::Conntrack {
            port: None,
            zone: None,
            flush: true,
        };
        assert_eq!(
            render_reply(&cmd, &json!({"flushed": 3})),
            "flushed 3 connections\n"
        );
        assert_eq!(
            render_reply(&CtlCmd::Metrics, &json!({"metrics": "weft_x 1\n"})),
            "weft_x 1\n"
        );
        assert_eq!(
            ctl_request(&cmd),
            json!({"cmd": "conntrack", "port": null, "zone": null, "flush": true})
        );
    }
}
