//! Every rule protocol the networking API accepts reaches a switch that enforces it: Neutron's
//! names (and legacy aliases), numbers 0..=255 as text or JSON numbers, for IPv4 and IPv6, go
//! through ctrl's store and sync, the agent's translation and the switch's own validation (a
//! single rule the switch refused would fail the whole host's config). The expected protocol
//! number is computed here from IANA's numbers, not from either side's table.
//!
//! In the root package, which links ctrl and the agent; it borrows ctrl's test set-up.

#[path = "../ctrl/tests/common/mod.rs"]
mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft::in_process::LocalCtrl;
use weft_agent::{Agent, Datapath, HostBase};
use weft_datapath::SwitchConfig;

/// Records what the agent applies, after the switch's own validation.
#[derive(Clone, Default)]
struct CheckedSwitch {
    applied: Arc<Mutex<Vec<SwitchConfig>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Datapath for CheckedSwitch {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        match config.validated("plan") {
            Ok(c) => {
                self.applied.lock().unwrap().push(c);
                Ok(())
            }
            Err(e) => {
                self.refused.lock().unwrap().push(e.to_string());
                Err(e.to_string())
            }
        }
    }
    fn attached(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

/// IANA's numbers for the names Neutron accepts; `ip`/`hopopt` (0) mean any protocol to a
/// firewall, as `any` does.
fn iana(name: &str) -> Option<Option<u8>> {
    Some(Some(match name {
        "any" | "ip" | "hopopt" => return Some(None),
        "icmp" => 1,
        "igmp" => 2,
        "ipip" => 4,
        "tcp" => 6,
        "egp" => 8,
        "udp" => 17,
        "dccp" => 33,
        "ipv6-encap" => 41,
        "ipv6-route" => 43,
        "ipv6-frag" => 44,
        "rsvp" => 46,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "ipv6-nonxt" => 59,
        "ipv6-opts" => 60,
        "ospf" => 89,
        "vrrp" => 112,
        "pgm" => 113,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    }))
}

const NAMES: [&str; 26] = [
    "any",
    "ip",
    "hopopt",
    "icmp",
    "igmp",
    "ipip",
    "tcp",
    "egp",
    "udp",
    "dccp",
    "ipv6-encap",
    "ipv6-route",
    "ipv6-frag",
    "rsvp",
    "gre",
    "esp",
    "ah",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ospf",
    "vrrp",
    "pgm",
    "sctp",
    "udplite",
];

/// What a rule with `protocol` in `ethertype` means to a firewall: 0 is any protocol, and ICMP
/// in an IPv6 rule is ICMPv6.
fn meaning(ethertype: &str, protocol: &Value) -> Option<u8> {
    let n = match protocol {
        Value::String(s) => match s.parse::<u8>() {
            Ok(n) => Some(n),
            Err(_) => iana(s).expect("a name of the list"),
        },
        v => Some(v.as_u64().unwrap() as u8),
    };
    match (ethertype, n) {
        (_, Some(0)) => None,
        ("IPv6", Some(1)) => Some(58),
        (_, n) => n,
    }
}

#[tokio::test]
async fn every_protocol_the_api_accepts_reaches_the_switch() {
    let api = Api::new();
    let n = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "local"}}),
        )
        .await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let sg = api
        .create(
            "/security-groups",
            ADMIN,
            json!({"security_group": {"name": "protocols"}}),
        )
        .await;
    let sg_id = sg["id"].as_str().unwrap().to_string();
    // Each accepted rule: its id and the protocol it must mean to the switch.
    let mut want = std::collections::BTreeMap::new();
    let mut candidates: Vec<Value> = NAMES.iter().map(|n| json!(n)).collect();
    candidates.extend((0..=255u16).map(|n| json!(n.to_string())));
    candidates.extend([json!(6), json!(58), json!(0)]);
    for ethertype in ["IPv4", "IPv6"] {
        for (i, protocol) in candidates.iter().enumerate() {
            // A distinct rule each time (duplicates are refused): vary the remote prefix.
            let prefix = match ethertype {
                "IPv4" => format!("10.{}.{}.0/24", i / 256, i % 256),
                _ => format!("fd00:{i:x}::/64"),
            };
            let (status, body) = api
                .post(
                    "/security-group-rules",
                    ADMIN,
                    json!({"security_group_rule": {"security_group_id": sg_id,
                        "direction": "ingress", "ethertype": ethertype,
                        "protocol": protocol, "remote_ip_prefix": prefix}}),
                )
                .await;
            if status.is_success() {
                let id = body["security_group_rule"]["id"].as_str().unwrap();
                want.insert(id.to_string(), meaning(ethertype, protocol));
            } else {
                // Refused only for IPv6-only protocols in IPv4 rules.
                assert_eq!(ethertype, "IPv4", "{protocol} refused: {body}");
                assert!(
                    body.to_string().contains("EthertypeConflictWithProtocol"),
                    "{protocol}: {body}"
                );
            }
        }
    }
    // Nearly everything was accepted: 256 numbers and 26 names, twice, less IPv4's refusals.
    assert!(want.len() > 500, "{}", want.len());
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": n["id"], "binding:host_id": "h1",
                "security_groups": [sg_id]}}),
        )
        .await;
    let dev = format!("tap{}", &p["id"].as_str().unwrap()[..11]);

    let sw = CheckedSwitch::default();
    let mut agent = Agent::new(
        LocalCtrl {
            net: api.net.clone(),
            host: "h1".into(),
            tunnel_ip: None,
        },
        sw.clone(),
        HostBase::parse("").unwrap(),
    );
    agent.pending_wait = Duration::from_millis(20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));
    let mut cfg = None;
    for _ in 0..400 {
        cfg = sw
            .applied
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|c| c.ports.iter().any(|p| p.name == dev))
            .cloned();
        if cfg.is_some() || !sw.refused.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(*sw.refused.lock().unwrap(), Vec::<String>::new());
    let cfg = cfg.expect("the port's config was never applied: the agent refused the state");
    let group = cfg
        .security_groups
        .iter()
        .find(|g| g.id == sg_id)
        .expect("the group reached the switch");
    for r in &group.rules {
        if let Some(expected) = want.remove(&r.id) {
            assert_eq!(r.protocol, expected, "rule {r:?}");
        }
    }
    assert!(want.is_empty(), "rules missing from the switch: {want:?}");
}
