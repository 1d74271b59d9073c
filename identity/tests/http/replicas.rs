//! Several `Identity` replicas on one PostgreSQL database (whatever
//! `WEFT_TEST_STORE` says): records and Fernet keys written through one are
//! seen by the others once they follow the change log.

use crate::common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_identity::model::User;
use weft_identity::service::{AuthRequest, PasswordAuth, ScopeRequest, UserRef};
use weft_identity::{Identity, IdentityConfig};
use weft_store::testing::TestDatabase;
use weft_store::{PgStore, Store};

struct Two {
    _db: TestDatabase,
    store: Arc<dyn Store>,
    _dirs: [tempfile::TempDir; 2],
    a: Arc<Identity>,
    b: Arc<Identity>,
    admin_project: String,
}

fn replica(store: Arc<dyn Store>, dir: &std::path::Path) -> Arc<Identity> {
    let mut id = Identity::open(IdentityConfig::new(dir, "http://weft.test:8080"), store).unwrap();
    id.set_bcrypt_cost(4);
    Arc::new(id)
}

/// Two replicas on a fresh database, opened and bootstrapped at the same time.
fn two() -> Two {
    let db = TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).unwrap());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let start = |dir: std::path::PathBuf| {
        let store = store.clone();
        std::thread::spawn(move || {
            let id = replica(store, &dir);
            let rep = id.bootstrap(Some(ADMIN_PW)).unwrap();
            id.register_service("identity", "keystone", &id.v3_url())
                .unwrap();
            (id, rep)
        })
    };
    let (ta, tb) = (start(dirs[0].path().into()), start(dirs[1].path().into()));
    let (a, ra) = ta.join().unwrap();
    let (b, rb) = tb.join().unwrap();
    a.replica().catch_up().unwrap();
    b.replica().catch_up().unwrap();
    assert_eq!(ra.admin_user_id, rb.admin_user_id, "one admin user");
    assert_eq!(ra.admin_project_id, rb.admin_project_id);
    assert_eq!(
        u8::from(ra.already_bootstrapped) + u8::from(rb.already_bootstrapped),
        1,
        "exactly one replica bootstrapped"
    );
    Two {
        _db: db,
        store,
        _dirs: dirs,
        a,
        b,
        admin_project: ra.admin_project_id,
    }
}

fn admin_login(project: &str) -> AuthRequest {
    AuthRequest {
        password: Some(PasswordAuth {
            user: UserRef {
                name: Some("admin".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            },
            password: ADMIN_PW.into(),
        }),
        scope: ScopeRequest::Project {
            id: Some(project.into()),
            name: None,
            domain_id: None,
            domain_name: None,
        },
        ..Default::default()
    }
}

fn new_user(id: &Identity, name: &str) -> String {
    let uid = weft_identity::service::new_id();
    let user = User {
        id: uid.clone(),
        name: name.into(),
        domain_id: "default".into(),
        enabled: true,
        password_hash: None,
        password_created_at: None,
        password_expires_at: None,
        default_project_id: None,
        description: None,
        options: Default::default(),
        extra: Default::default(),
    };
    id.write(|tx| {
        tx.put_user(user.clone());
        Ok(())
    })
    .unwrap();
    uid
}

#[test]
fn starting_together_makes_one_state_and_one_key_set() {
    let t = two();
    let (sa, sb) = (t.a.snapshot(), t.b.snapshot());
    assert_eq!(sa.revision, sb.revision);
    assert_eq!(sa.fernet_keys, sb.fernet_keys);
    assert_eq!(sa.keys.indexes(), [0, 1]);
    assert_eq!(sa.users.len(), 1);
    assert_eq!(sa.roles.len(), sb.roles.len());
    assert_eq!(sa.services.len(), 1, "register_service made one service");
    assert_eq!(sa.endpoints.len(), 3);
    assert_eq!(
        t.store.load("identity").unwrap().revision,
        sa.revision,
        "both replicas are at the store's revision"
    );
}

#[test]
fn a_user_created_on_a_is_seen_on_b_after_catch_up() {
    let t = two();
    let uid = new_user(&t.a, "alice");
    assert!(
        t.a.snapshot().users.contains_key(&uid),
        "A reads its own write"
    );
    assert!(!t.b.snapshot().users.contains_key(&uid));
    assert!(t.b.replica().catch_up().unwrap());
    let s = t.b.snapshot();
    assert_eq!(
        s.user_by_name("default", "alice").map(|u| &u.id),
        Some(&uid)
    );
    assert_eq!(s.revision, t.a.revision());
    // B's next write, made on its own caught-up state, does not conflict.
    new_user(&t.b, "bob");
    t.a.replica().catch_up().unwrap();
    assert!(t.a.snapshot().user_by_name("default", "bob").is_some());
}

#[test]
fn a_write_on_a_stale_replica_is_rerun_not_lost() {
    let t = two();
    new_user(&t.a, "alice");
    // B has not caught up: its commit conflicts, it catches up and reruns.
    new_user(&t.b, "bob");
    let s = t.b.snapshot();
    assert!(s.user_by_name("default", "alice").is_some());
    assert!(s.user_by_name("default", "bob").is_some());
}

#[test]
fn the_follower_brings_a_users_to_b() {
    let t = two();
    weft_store::follow(t.store.clone(), vec![t.b.replica()]).unwrap();
    let uid = new_user(&t.a, "carol");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.b.snapshot().users.contains_key(&uid) {
        assert!(Instant::now() < deadline, "B never saw A's user");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tokens_and_key_rotations_cross_replicas() {
    let t = two();
    let (token, _) = t.a.issue_token(&admin_login(&t.admin_project)).unwrap();
    // Shared keys: B validates A's token in process, cached afterwards.
    let ctx = t.b.validate_token(&token).unwrap();
    assert_eq!(ctx.project_id.as_deref(), Some(t.admin_project.as_str()));
    assert!(t.b.validate_token(&token).is_ok());

    // One rotation on A: B follows; A's old token still validates there
    // and a token sealed with A's new primary too.
    assert_eq!(t.a.rotate_keys(3).unwrap(), [0, 1, 2]);
    assert!(t.b.replica().catch_up().unwrap());
    assert_eq!(t.b.snapshot().keys.indexes(), [0, 1, 2]);
    assert_eq!(t.b.snapshot().fernet_keys, t.a.snapshot().fernet_keys);
    let (fresh, _) = t.a.issue_token(&admin_login(&t.admin_project)).unwrap();
    assert!(t.b.validate_token(&fresh).is_ok());
    assert!(t.b.validate_token(&token).is_ok());

    // A second rotation drops key 1, which sealed `token`: B's cached
    // validation must not outlive the key.
    assert_eq!(t.a.rotate_keys(3).unwrap(), [0, 2, 3]);
    assert!(t.b.validate_token(&token).is_ok(), "B has not followed yet");
    t.b.replica().catch_up().unwrap();
    assert!(t.b.validate_token(&token).is_err());
    assert!(t.a.validate_token(&token).is_err());
    assert!(t.b.validate_token(&fresh).is_ok(), "key 2 is kept");
}
