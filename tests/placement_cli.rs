//! End to end: `weft serve` driven by the real `openstack` CLI with the
//! osc-placement plugin, as an operator (or a deployment tool) uses
//! Placement: providers and their tree, inventories, traits, allocation
//! candidates, allocations and usages, and the refusals.
//!
//! Needs python-openstackclient and osc-placement in /opt/weft-venv
//! (`scripts/install-deps.sh`; or set WEFT_VENV). The test fails, rather
//! than skips, when they are missing.

mod serve_util;

use serde_json::Value;
use serve_util::{free_port, row, Serve};
use std::time::{Duration, Instant};

/// `weft serve` with Placement also alone on a port of its own
/// (`--placement-listen`), and no in-process compute host: it would register
/// this host as a provider, and the tests count providers and candidates.
fn start() -> (Serve, u16) {
    let placement_port = free_port();
    let s = Serve::start(
        "placement-cli",
        &[
            "--placement-listen",
            &format!("127.0.0.1:{placement_port}"),
            "--compute-driver",
            "none",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", placement_port)).is_err() {
        assert!(Instant::now() < deadline, "placement port did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    (s, placement_port)
}

#[test]
fn osc_placement_drives_weft_placement() {
    let (s, _) = start();
    let catalog = s.json(&["catalog", "show", "placement"]);
    assert_eq!(catalog["type"], "placement");
    let (host_id, numa_id) = a_host_with_a_numa_node(&s);
    inventory_of_8_vcpus_at_4x_and_16_gib(&s, &host_id);
    candidates_with_and_without_a_trait(&s, &host_id);
    let consumer = "5c5b7f9e-1f0a-4c7e-9d9b-3b1e2f000001";
    an_allocation_its_usage_and_what_it_holds(&s, &host_id, consumer);
    releasing_frees_the_host_and_the_providers_go(&s, &host_id, &numa_id, consumer);
}

/// Providers: a compute host with a NUMA node under it (a name is taken once). Returns their
/// uuids (host, NUMA node).
fn a_host_with_a_numa_node(s: &Serve) -> (String, String) {
    let host = s.json(&["resource", "provider", "create", "compute1"]);
    let host_id = host["uuid"].as_str().unwrap().to_string();
    assert_eq!(host["generation"], 0);
    let numa = s.json(&[
        "resource",
        "provider",
        "create",
        "compute1_numa0",
        "--parent-provider",
        &host_id,
    ]);
    assert_eq!(numa["root_provider_uuid"], host_id.as_str());
    let err = s.fails(&["resource", "provider", "create", "compute1"]);
    assert!(err.contains("Conflicting resource provider name"), "{err}");
    let list = s.json(&["resource", "provider", "list", "--in-tree", &host_id]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    (host_id, numa["uuid"].as_str().unwrap().to_string())
}

/// Inventory: 8 VCPUs at 4x overcommit, 16 GiB with 512 MiB reserved; an unknown class is
/// refused.
fn inventory_of_8_vcpus_at_4x_and_16_gib(s: &Serve, host_id: &str) {
    let inv = s.json(&[
        "resource",
        "provider",
        "inventory",
        "set",
        host_id,
        "--resource",
        "VCPU=8",
        "--resource",
        "VCPU:allocation_ratio=4.0",
        "--resource",
        "MEMORY_MB=16384",
        "--resource",
        "MEMORY_MB:reserved=512",
    ]);
    assert_eq!(row(&inv, "resource_class", "VCPU")["total"], 8);
    assert_eq!(row(&inv, "resource_class", "MEMORY_MB")["reserved"], 512);
    let err = s.fails(&[
        "resource",
        "provider",
        "inventory",
        "set",
        host_id,
        "--resource",
        "NOPE=1",
    ]);
    assert!(!err.is_empty());
}

/// Candidates for one VCPU: the host, with 32 VCPU of capacity; traits filter them.
fn candidates_with_and_without_a_trait(s: &Serve, host_id: &str) {
    let cands = s.json(&["allocation", "candidate", "list", "--resource", "VCPU=1"]);
    let c = row(&cands, "resource provider", host_id);
    assert_eq!(c["allocation"], "VCPU=1");
    assert!(
        c["inventory used/capacity"]
            .as_str()
            .unwrap()
            .contains("VCPU=0/32"),
        "{c}"
    );

    // Traits filter candidates.
    s.json(&[
        "resource",
        "provider",
        "trait",
        "set",
        host_id,
        "--trait",
        "HW_CPU_X86_AVX2",
    ]);
    let cands = s.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--required",
        "HW_CPU_X86_AVX2",
    ]);
    assert_eq!(cands.as_array().unwrap().len(), 1);
    let cands = s.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--forbidden",
        "HW_CPU_X86_AVX2",
        "--os-placement-api-version",
        "1.22",
    ]);
    assert_eq!(cands.as_array().unwrap().len(), 0);
}

/// An allocation and the usage it makes; past the capacity it is refused with Placement's
/// words, and what it holds cannot be removed (inventory in use, the provider).
fn an_allocation_its_usage_and_what_it_holds(s: &Serve, host_id: &str, consumer: &str) {
    let alloc = s.json(&[
        "resource",
        "provider",
        "allocation",
        "set",
        consumer,
        "--allocation",
        &format!("rp={host_id},VCPU=2,MEMORY_MB=2048"),
        "--project-id",
        "proj-1",
        "--user-id",
        "user-1",
    ]);
    assert_eq!(alloc[0]["resource_provider"], host_id);
    let usage = s.json(&["resource", "provider", "usage", "show", host_id]);
    assert_eq!(row(&usage, "resource_class", "VCPU")["usage"], 2);
    assert_eq!(row(&usage, "resource_class", "MEMORY_MB")["usage"], 2048);
    let by_project = s.json(&["resource", "usage", "show", "proj-1"]);
    assert_eq!(row(&by_project, "resource_class", "VCPU")["usage"], 2);

    // Past the capacity: refused with Placement's words.
    let err = s.fails(&[
        "resource",
        "provider",
        "allocation",
        "set",
        "5c5b7f9e-1f0a-4c7e-9d9b-3b1e2f000002",
        "--allocation",
        &format!("rp={host_id},VCPU=31"),
        "--project-id",
        "proj-1",
        "--user-id",
        "user-1",
    ]);
    assert!(err.contains("exceed the capacity"), "{err}");
    // Inventory in use cannot be removed.
    let err = s.fails(&[
        "resource",
        "provider",
        "inventory",
        "delete",
        host_id,
        "--resource-class",
        "VCPU",
    ]);
    assert!(err.contains("in use"), "{err}");
    // Nor the provider with allocations, nor the parent of another.
    let err = s.fails(&["resource", "provider", "delete", host_id]);
    assert!(!err.is_empty());
}

/// Releasing the allocation frees the host; then both providers can go.
fn releasing_frees_the_host_and_the_providers_go(
    s: &Serve,
    host_id: &str,
    numa_id: &str,
    consumer: &str,
) {
    let out = s.openstack(&["resource", "provider", "allocation", "delete", consumer]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = s.json(&["resource", "provider", "usage", "show", host_id]);
    assert_eq!(row(&usage, "resource_class", "VCPU")["usage"], 0);
    for id in [numa_id, host_id] {
        let out = s.openstack(&["resource", "provider", "delete", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = s.json(&["resource", "provider", "list"]);
    assert_eq!(list, serde_json::json!([]));
}

/// One HTTP/1.1 request to `port` (placement alone): status line, headers
/// and body as text.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Auth-Token: {token}\r\n\
         OpenStack-API-Version: placement 1.20\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// `--placement-listen`: Placement alone at the root of a port of its own
/// (as a standalone placement-api on 8778), on the same service and tokens
/// as `/placement`, with root-relative links.
#[test]
fn placement_alone_on_its_own_port() {
    let (s, placement_port) = start();
    let token = s.json(&["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http(placement_port, "GET", "/", "", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"max_version\":\"1.39\""), "{r}");
    // No valid token, no provider.
    let r = http(
        placement_port,
        "POST",
        "/resource_providers",
        "bogus",
        r#"{"name":"x"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = http(
        placement_port,
        "POST",
        "/resource_providers",
        &token,
        r#"{"name":"alone"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    let uuid = v["uuid"].as_str().unwrap();
    let here = format!("/resource_providers/{uuid}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "location: http://127.0.0.1:{}{here}\r\n",
            placement_port
        )),
        "{head}"
    );
    let links = v["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["href"] == here.as_str()), "{v}");
    // The same provider through the catalog's /placement, with its links there.
    let shown = s.json(&["resource", "provider", "show", uuid]);
    assert_eq!(shown["name"], "alone");
    let r = http(
        placement_port,
        "GET",
        &format!("/resource_providers/{uuid}"),
        &token,
        "",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}
