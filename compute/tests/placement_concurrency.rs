//! Concurrent schedulers never double-book: many writers, through two
//! replicas of placement on one store (two SQLite handles on one file; two
//! PostgreSQL connections, as two `weft serve` processes would be), against
//! one provider. Generations and capacity are checked on the state each
//! commit is made on, so exactly the capacity is granted and every stale
//! generation is a 409 `placement.concurrent_update`.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use weft_compute::placement::allocations::{self, ConsumerWrite};
use weft_compute::placement::error::{Code, PlacementError};
use weft_compute::placement::inventories::{self, InventoryReq, SetInventories};
use weft_compute::placement::microversion::MAX;
use weft_compute::placement::providers::{self, CreateProvider};
use weft_compute::placement::service::Ctx;
use weft_compute::placement::Placement;
use weft_identity::policy::Mode;
use weft_store::Store;

const CTX: Ctx = Ctx { version: MAX };

fn open(store: Arc<dyn Store>) -> Arc<Placement> {
    Placement::open(store, None, None, Mode::Enforce, None).unwrap()
}

fn sqlite_pair() -> (tempfile::TempDir, [Arc<dyn Store>; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.sqlite");
    let a: Arc<dyn Store> = Arc::new(weft_store::SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(weft_store::SqliteStore::open(&path).unwrap());
    (dir, [a, b])
}

fn inv(total: i64) -> InventoryReq {
    InventoryReq {
        total,
        reserved: None,
        min_unit: None,
        max_unit: None,
        step_size: None,
        allocation_ratio: None,
    }
}

/// A provider with `vcpu` VCPUs, made through `pl`; its uuid.
fn host(pl: &Placement, vcpu: i64) -> String {
    let p = pl
        .write(CTX, |st, env, ctx| {
            providers::create(
                st,
                env,
                ctx,
                &CreateProvider {
                    name: "host".into(),
                    uuid: None,
                    parent_provider_uuid: None,
                },
            )
        })
        .unwrap();
    let req = SetInventories {
        resource_provider_generation: 0,
        inventories: BTreeMap::from([("VCPU".to_string(), inv(vcpu))]),
    };
    pl.write(CTX, |st, env, ctx| {
        inventories::set_all(st, env, ctx, &p.uuid, &req)
    })
    .unwrap();
    p.uuid
}

fn consumer(i: usize, rp: &str, vcpu: u64, generation: Option<u64>) -> ConsumerWrite {
    ConsumerWrite {
        consumer: format!("00000000-0000-4000-8000-{i:012}"),
        allocations: BTreeMap::from([(
            rp.to_string(),
            BTreeMap::from([("VCPU".to_string(), vcpu)]),
        )]),
        project_id: Some("p".into()),
        user_id: Some("u".into()),
        consumer_generation: generation,
        consumer_type: None,
    }
}

/// Runs `n` writers at once, alternating between the replicas; each
/// result in order of the writer's index.
fn race<T: Send + 'static>(
    replicas: &[Arc<Placement>; 2],
    n: usize,
    f: impl Fn(&Placement, usize) -> Result<T, PlacementError> + Send + Sync + 'static,
) -> Vec<Result<T, PlacementError>> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (pl, f, barrier) = (replicas[i % 2].clone(), f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(&pl, i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn is_conflict(e: &PlacementError, want: Code) -> bool {
    matches!(e, PlacementError::Conflict { code, .. } if *code == want)
}

fn never_double_books(stores: [Arc<dyn Store>; 2]) {
    let replicas = stores.map(open);
    let rp = host(&replicas[0], 8);
    // 24 schedulers each claim 1 VCPU of 8 for a new consumer.
    let rp2 = rp.clone();
    let results = race(&replicas, 24, move |pl, i| {
        let w = vec![consumer(i, &rp2, 1, None)];
        pl.write(CTX, |st, env, ctx| allocations::write(st, env, ctx, &w))
    });
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 8, "exactly the capacity is granted: {results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            is_conflict(e, Code::Undefined),
            "a refusal is the capacity 409: {e:?}"
        );
    }
    for pl in &replicas {
        pl.replica().catch_up().unwrap();
        let st = pl.snapshot();
        assert_eq!(st.used(&rp, "VCPU"), 8);
        assert_eq!(st.consumers.len(), 8);
    }

    // Two schedulers write the same new consumer (generation None) on a
    // host with room for both: only the consumer generation decides.
    let host2 = host_named(&replicas[1], "host2", 4);
    let results = race(&replicas, 2, move |pl, _| {
        let w = vec![consumer(999, &host2, 1, None)];
        pl.write(CTX, |st, env, ctx| allocations::write(st, env, ctx, &w))
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(is_conflict(e, Code::ConcurrentUpdate), "{e:?}");

    // Two writers send the provider generation both read: one wins.
    let g = replicas[0].snapshot().providers[&rp].generation;
    let rp2 = rp.clone();
    let results = race(&replicas, 2, move |pl, i| {
        let req = SetInventories {
            resource_provider_generation: g,
            inventories: BTreeMap::from([("VCPU".to_string(), inv(16 + i as i64))]),
        };
        pl.write(CTX, |st, env, ctx| {
            inventories::set_all(st, env, ctx, &rp2, &req)
        })
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(is_conflict(e, Code::ConcurrentUpdate), "{e:?}");
}

fn host_named(pl: &Placement, name: &str, vcpu: i64) -> String {
    let req = CreateProvider {
        name: name.into(),
        uuid: None,
        parent_provider_uuid: None,
    };
    let p = pl
        .write(CTX, |st, env, ctx| providers::create(st, env, ctx, &req))
        .unwrap();
    let inv_req = SetInventories {
        resource_provider_generation: 0,
        inventories: BTreeMap::from([("VCPU".to_string(), inv(vcpu))]),
    };
    pl.write(CTX, |st, env, ctx| {
        inventories::set_all(st, env, ctx, &p.uuid, &inv_req)
    })
    .unwrap();
    p.uuid
}

#[test]
fn sqlite_replicas_never_double_book() {
    let (_dir, stores) = sqlite_pair();
    never_double_books(stores);
}

#[test]
fn postgres_replicas_never_double_book() {
    let db = weft_store::testing::TestDatabase::create().unwrap();
    let a: Arc<dyn Store> = Arc::new(weft_store::PgStore::connect(&db.url).unwrap());
    let b: Arc<dyn Store> = Arc::new(weft_store::PgStore::connect(&db.url).unwrap());
    never_double_books([a, b]);
}
