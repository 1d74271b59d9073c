//! Live reconfiguration: `weft ctl reload` and SIGHUP add and remove ports
//! while a ping between two unchanged ports keeps going without loss; a
//! `system` port whose netdev does not exist yet stays pending and is
//! attached when it appears; a bad config is refused and the running one
//! kept. Needs root.

mod switch_util;
use switch_util::*;

fn port(name: &str, kind: &str, i: u8, extra: &str) -> String {
    format!(
        "\n[[port]]\nname = \"{name}\"\nkind = \"{kind}\"\nnetwork = \"net-r\"\nmac = \"fa:16:3e:75:00:0{i}\"\nfixed_ips = [\"10.75.0.{i}\"]\n{extra}"
    )
}

const NET: &str = "[[network]]\nname = \"net-r\"\ntype = \"local\"\n";

fn state<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
}

#[test]
fn reload_adds_and_removes_ports_without_disturbing_others() {
    let (r1, r2, r3, r4, r5) = (uniq("r"), uniq("r"), uniq("r"), uniq("r"), uniq("r"));
    let base = format!(
        "{NET}{}{}{}",
        port(&r1, "tap", 1, ""),
        port(&r2, "tap", 2, ""),
        port(&r3, "tap", 3, "")
    );
    let sw = SwitchProc::start(None, "reload", &base);
    let (v1, v2, v3, v4, v5) = (
        Netns::new("v"),
        Netns::new("v"),
        Netns::new("v"),
        Netns::new("v"),
        Netns::new("v"),
    );
    plug(None, &r1, &v1, "fa:16:3e:75:00:01", "10.75.0.1/24");
    plug(None, &r2, &v2, "fa:16:3e:75:00:02", "10.75.0.2/24");
    plug(None, &r3, &v3, "fa:16:3e:75:00:03", "10.75.0.3/24");
    assert!(v1.ping_ok("10.75.0.2", 10), "baseline: {}", sw.log());
    assert!(v3.ping_ok("10.75.0.1", 5));

    // A steady ping on the unchanged pair for the whole reconfiguration.
    let pinger = v1
        .command("ping")
        .args(["-c", "100", "-i", "0.05", "-W", "5", "10.75.0.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    let rx_before = sw.rx(&r1);

    // Remove r3, add tap r4 and system port r5 (its netdev does not exist yet).
    reload_removes_and_adds_ports(&sw, [&r1, &r2, &r3, &r4, &r5], &v3, &v4);

    // The netdev appears (as Nova's tap would): attached automatically.
    let peer = uniq("p");
    let _g = a_pending_netdev_appears_and_is_attached(&sw, &r5, &peer, &v1, &v5);

    sighup_reloads_and_a_bad_config_is_refused(&sw, [&r1, &r2, &r4, &r5]);

    a_netdev_that_goes_away_is_pending_again(&sw, &r5, &peer);

    let out = pinger.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100 packets transmitted, 100 received"),
        "ping disturbed by reloads:\n{text}"
    );
    assert!(
        sw.rx(&r1) > rx_before,
        "unchanged port's counters were reset"
    );
}

/// `weft ctl reload` to a config without r3 and with tap r4 and system port r5, whose netdev
/// does not exist yet: r3's tap goes, r4 reaches the old ports, r5 is pending.
fn reload_removes_and_adds_ports(sw: &SwitchProc, names: [&str; 5], v3: &Netns, v4: &Netns) {
    let [r1, r2, r3, r4, r5] = names;
    sw.rewrite_config(&format!(
        "{NET}{}{}{}{}",
        port(r1, "tap", 1, ""),
        port(r2, "tap", 2, ""),
        port(r4, "tap", 4, ""),
        port(r5, "system", 5, "")
    ));
    let rep = sw.ctl_json(&["reload"]);
    let added: Vec<&str> = rep["report"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(added.contains(&r4) && added.contains(&r5), "{rep}");
    assert_eq!(rep["report"]["removed"][0], r3);
    assert!(
        wait_until(10, || !link_exists(Some(v3), r3)),
        "removed port's tap still exists"
    );

    plug(None, r4, v4, "fa:16:3e:75:00:04", "10.75.0.4/24");
    assert!(
        v4.ping_ok("10.75.0.1", 10),
        "added port cannot reach an old one"
    );
    let ports = sw.ctl_json(&["ports"]);
    assert_eq!(
        state(&ports, r5).unwrap()["attached"],
        false,
        "missing netdev not pending"
    );
    assert!(sw.ctl(&["ports"]).contains("pending"));
}

/// The netdev of pending port r5 appears (a veth whose peer goes into `v5`): the switch attaches
/// it, v5 reaches v1, and TCP from the veth (GSO frames into AF_PACKET) reaches a tap. The
/// guard removes the veth.
fn a_pending_netdev_appears_and_is_attached(
    sw: &SwitchProc,
    r5: &str,
    peer: &str,
    v1: &Netns,
    v5: &Netns,
) -> RootLink {
    sh(
        "ip",
        &["link", "add", r5, "type", "veth", "peer", "name", peer],
    );
    let guard = RootLink {
        name: r5.to_string(),
    };
    assert!(
        wait_until(10, || state(&sw.ctl_json(&["ports"]), r5).unwrap()
            ["attached"]
            == true),
        "pending port never attached"
    );
    plug(None, peer, v5, "fa:16:3e:75:00:05", "10.75.0.5/24");
    assert!(
        v5.ping_ok("10.75.0.1", 10),
        "system port VM cannot reach a tap VM: {}",
        sw.log()
    );
    // TCP from a veth (GSO frames into AF_PACKET) to a tap.
    let got = tcp_bytes(v1, v5, "10.75.0.1", 8);
    assert_eq!(got, 8 * 1024 * 1024);
    guard
}

/// SIGHUP reloads (r4 goes); a bad config is refused with its line and the running one stays.
fn sighup_reloads_and_a_bad_config_is_refused(sw: &SwitchProc, names: [&str; 4]) {
    let [r1, r2, r4, r5] = names;
    // SIGHUP: drop r4 again.
    sw.rewrite_config(&format!(
        "{NET}{}{}{}",
        port(r1, "tap", 1, ""),
        port(r2, "tap", 2, ""),
        port(r5, "system", 5, "")
    ));
    sh("kill", &["-HUP", &sw.child.id().to_string()]);
    assert!(
        wait_until(10, || state(&sw.ctl_json(&["ports"]), r4).is_none()),
        "SIGHUP did not reload"
    );

    // A bad config is refused with its line; the running config stays.
    sw.rewrite_config(&format!(
        "{NET}{}\n[[port]]\nname = \"{r4}\"\nkind = \"tap\"\nnetwork = \"nope\"\n",
        port(r1, "tap", 1, "")
    ));
    let o = run(
        weft(),
        &["ctl", "reload", "--socket", sw.socket.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line") && err.contains("network"), "{err}");
    let ports = sw.ctl_json(&["ports"]);
    assert!(
        state(&ports, r2).is_some() && state(&ports, r4).is_none(),
        "bad config half-applied"
    );
}

/// The system port's netdev goes away: back to pending, and attached again when a netdev of
/// that name reappears.
fn a_netdev_that_goes_away_is_pending_again(sw: &SwitchProc, r5: &str, peer: &str) {
    sh("ip", &["link", "del", r5]);
    assert!(
        wait_until(10, || state(&sw.ctl_json(&["ports"]), r5).unwrap()
            ["attached"]
            == false),
        "deleted netdev still shown attached"
    );
    sh(
        "ip",
        &["link", "add", r5, "type", "veth", "peer", "name", peer],
    );
    assert!(
        wait_until(10, || state(&sw.ctl_json(&["ports"]), r5).unwrap()
            ["attached"]
            == true),
        "re-created netdev not reattached"
    );
}
