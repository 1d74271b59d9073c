//! `GET /allocation_candidates` at 100, 1,000 and 5,000 providers, through
//! the whole router (query parsing, the pure search, JSON rendering), and
//! the pure search alone. The bar: real Placement 16.0.0 on this machine
//! takes 92.7 ms p50 at 1,000 providers and 483 ms at 5,000.
//!
//! Each provider is a compute host with VCPU, MEMORY_MB and DISK_GB, a
//! quarter of it used, and CPU traits on half of them; the request is what
//! Nova sends for a small flavor (1.36, three classes, one required trait
//! on half the hosts: `limit` unset, so every candidate is rendered).

use axum::body::Body;
use axum::http::Request as HttpRequest;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http_body_util::BodyExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tower::ServiceExt;
use weft_compute::placement::candidates::{candidates, Group, Request};
use weft_compute::placement::model::{Consumer, Inventory, Provider};
use weft_compute::placement::state::{Change, State};
use weft_compute::placement::{self, Authenticator, Placement};
use weft_identity::policy::{Credentials, Mode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Admin;

impl Authenticator for Admin {
    fn validate(&self, _: &str) -> Option<Credentials> {
        Some(Credentials {
            user_id: "admin".into(),
            roles: vec!["admin".into()],
            project_id: Some("admin".into()),
            ..Default::default()
        })
    }
}

fn uuid(kind: u32, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012}")
}

/// `n` hosts as store changes.
fn hosts(n: usize) -> Vec<Change> {
    let mut out = Vec::new();
    for i in 0..n {
        let inv = |total: u64, ratio: f64| Inventory {
            allocation_ratio: ratio,
            ..Inventory::with_total(total)
        };
        let traits: BTreeSet<String> = if i % 2 == 0 {
            ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE42"]
                .map(String::from)
                .into()
        } else {
            ["HW_CPU_X86_SSE42"].map(String::from).into()
        };
        out.push(Change::Provider(Provider {
            uuid: uuid(1, i),
            name: format!("compute{i}"),
            generation: 1,
            parent: None,
            root: uuid(1, i),
            inventories: BTreeMap::from([
                ("VCPU".to_string(), inv(32, 4.0)),
                ("MEMORY_MB".to_string(), inv(131_072, 1.5)),
                ("DISK_GB".to_string(), inv(2_000, 1.0)),
            ]),
            traits,
            aggregates: BTreeSet::new(),
            created_at: String::new(),
            updated_at: String::new(),
        }));
        out.push(Change::Consumer(Consumer {
            uuid: uuid(2, i),
            project_id: "p".into(),
            user_id: "u".into(),
            generation: 1,
            consumer_type: Some("INSTANCE".into()),
            allocations: BTreeMap::from([(
                uuid(1, i),
                BTreeMap::from([
                    ("VCPU".to_string(), 32),
                    ("MEMORY_MB".to_string(), 32_768),
                    ("DISK_GB".to_string(), 500),
                ]),
            )]),
            created_at: String::new(),
            updated_at: String::new(),
        }));
    }
    out
}

const QUERY: &str = "/allocation_candidates?resources=VCPU:2,MEMORY_MB:4096,DISK_GB:20";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("allocation_candidates_http");
    g.sample_size(30);
    for n in [100usize, 1_000, 5_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(weft_store::SqliteStore::open(&dir.path().join("b.sqlite")).unwrap());
        let changes = placement::state::to_store(&hosts(n)).unwrap();
        weft_store::Store::commit(store.as_ref(), placement::state::SERVICE, 0, &changes).unwrap();
        let pl = Placement::open(store, None, None, Mode::Enforce, Some(Arc::new(Admin))).unwrap();
        let app = placement::router(pl);
        let get = || {
            HttpRequest::get(QUERY)
                .header("x-auth-token", "admin")
                .header("openstack-api-version", "placement 1.36")
                .body(Body::empty())
                .unwrap()
        };
        let check = rt.block_on(async {
            let r = app.clone().oneshot(get()).await.unwrap();
            assert_eq!(r.status(), 200);
            let b = r.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            v["allocation_requests"].as_array().unwrap().len()
        });
        assert_eq!(check, n, "every host fits the flavor");
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    let r = app.clone().oneshot(get()).await.unwrap();
                    r.into_body().collect().await.unwrap().to_bytes().len()
                })
            })
        });
    }
    g.finish();

    let mut st = State::default();
    st.apply_changes(&hosts(1_000));
    let req = Request {
        unsuffixed: Group {
            resources: BTreeMap::from([
                ("VCPU".to_string(), 2),
                ("MEMORY_MB".to_string(), 4096),
                ("DISK_GB".to_string(), 20),
            ]),
            ..Default::default()
        },
        nested: true,
        ..Default::default()
    };
    c.bench_function("allocation_candidates_pure/1000", |b| {
        b.iter(|| candidates(&st, &req).requests.len())
    });

    // The same hosts without local disk, drawing DISK_GB from ten shared
    // pools (MISC_SHARES_VIA_AGGREGATE), each aggregated with a hundred of
    // them: every candidate is a host plus its pool.
    let mut changes = hosts(1_000);
    for c in &mut changes {
        if let Change::Provider(p) = c {
            let i: usize = p.name["compute".len()..].parse().unwrap();
            p.inventories.remove("DISK_GB");
            p.aggregates.insert(uuid(3, i / 100));
        }
        if let Change::Consumer(x) = c {
            for r in x.allocations.values_mut() {
                r.remove("DISK_GB");
            }
        }
    }
    for k in 0..10 {
        changes.push(Change::Provider(Provider {
            uuid: uuid(4, k),
            name: format!("pool{k}"),
            generation: 1,
            parent: None,
            root: uuid(4, k),
            inventories: BTreeMap::from([("DISK_GB".to_string(), Inventory::with_total(100_000))]),
            traits: BTreeSet::from(["MISC_SHARES_VIA_AGGREGATE".to_string()]),
            aggregates: BTreeSet::from([uuid(3, k)]),
            created_at: String::new(),
            updated_at: String::new(),
        }));
    }
    let mut shared = State::default();
    shared.apply_changes(&changes);
    assert_eq!(candidates(&shared, &req).requests.len(), 1_000);
    c.bench_function("allocation_candidates_pure_shared_disk/1000", |b| {
        b.iter(|| candidates(&shared, &req).requests.len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
