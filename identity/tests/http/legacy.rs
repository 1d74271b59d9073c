//! A state directory from before weft-store: `identity.sqlite` (tables
//! `records` and `meta`) and `fernet-keys/`, imported on the first open.

use crate::common::*;
use weft_identity::service::{AuthRequest, PasswordAuth, ScopeRequest, UserRef};
use weft_identity::token::{KeySet, Payload, TokenScope, METHOD_PASSWORD};
use weft_identity::{Identity, IdentityConfig};

/// Writes an old-format state dir holding `rows` at `revision` and Fernet
/// keys 0 (staged), 1 and 2 (primary); returns the keys.
fn legacy_dir(dir: &std::path::Path, revision: u64, rows: &[weft_store::Row]) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("identity.sqlite")).unwrap();
    conn.execute_batch(
        "CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                               PRIMARY KEY (kind, id));
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('revision', ?1)",
        [revision.to_string()],
    )
    .unwrap();
    for r in rows {
        conn.execute(
            "INSERT INTO records (kind, id, body) VALUES (?1, ?2, ?3)",
            [&r.kind, &r.id, &r.body],
        )
        .unwrap();
    }
    let keys_dir = dir.join("fernet-keys");
    std::fs::create_dir(&keys_dir).unwrap();
    let keys: Vec<String> = (0..3)
        .map(|_| weft_identity::token::generate_key())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        std::fs::write(keys_dir.join(i.to_string()), k).unwrap();
    }
    keys
}

fn open(dir: &std::path::Path, store: std::sync::Arc<dyn weft_store::Store>) -> Identity {
    let mut id = Identity::open(IdentityConfig::new(dir, "http://x"), store).unwrap();
    id.set_bcrypt_cost(4);
    id
}

#[test]
fn an_old_state_dir_is_imported_at_its_revision_once() {
    // The records an older weft kept: made here by bootstrapping a scratch
    // store and taking its identity rows (without its keys).
    let scratch = tempfile::tempdir().unwrap();
    let (rows, admin_project) = {
        let store = test_store(scratch.path());
        let id = open(scratch.path(), store.clone());
        let rep = id.bootstrap(Some("old-pw")).unwrap();
        let rows: Vec<_> = store
            .load("identity")
            .unwrap()
            .rows
            .into_iter()
            .filter(|r| r.kind != "fernet_key")
            .collect();
        (rows, rep.admin_project_id)
    };
    drop(scratch);

    let dir = tempfile::tempdir().unwrap();
    let keys = legacy_dir(dir.path(), 41, &rows);
    let store = test_store(dir.path());
    let id = open(dir.path(), store.clone());
    let s = id.snapshot();
    // Imported at revision 41, then one write stored the imported keys.
    assert_eq!(s.revision, 42);
    assert_eq!(s.users.len(), 1);
    assert_eq!(s.keys.indexes(), [0, 1, 2]);
    assert_eq!(s.fernet_keys.get(&2), Some(&keys[2]));
    let admin = s.user_by_name("default", "admin").unwrap().id.clone();

    // The old password still logs in ...
    let req = AuthRequest {
        password: Some(PasswordAuth {
            user: UserRef {
                name: Some("admin".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            },
            password: "old-pw".into(),
        }),
        scope: ScopeRequest::Project {
            id: Some(admin_project.clone()),
            name: None,
            domain_id: None,
            domain_name: None,
        },
        ..Default::default()
    };
    assert!(id.issue_token(&req).is_ok());
    // ... and a token the old process sealed with its primary key validates.
    let old_keys: imbl::OrdMap<u64, String> = keys
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, k)| (i as u64, k))
        .collect();
    let now = weft_identity::service::now_micros();
    let old_token = KeySet::new(&old_keys, 0)
        .unwrap()
        .seal(&Payload {
            user_id: admin.clone(),
            methods: METHOD_PASSWORD,
            scope: TokenScope::Project(admin_project),
            app_cred_id: None,
            issued_at: now,
            expires_at: now + 3_600_000_000,
            audit_ids: vec![[1; 16]],
            audience: None,
        })
        .unwrap();
    assert_eq!(id.validate_token(&old_token).unwrap().user_id, admin);

    // Opening again imports nothing more: the store is the state now.
    let rev = id.revision();
    id.write(|tx| {
        tx.del_region("RegionOne");
        Ok(())
    })
    .unwrap();
    drop(id);
    let again = open(dir.path(), store);
    assert_eq!(again.revision(), rev + 1);
    assert!(!again.snapshot().regions.contains_key("RegionOne"));
}

#[test]
fn a_store_that_holds_identity_ignores_an_old_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let id = open(dir.path(), store.clone());
    id.bootstrap(Some("pw")).unwrap();
    let (rev, keys) = (id.revision(), id.snapshot().fernet_keys.clone());
    drop(id);
    legacy_dir(dir.path(), 500, &[]);
    let id = open(dir.path(), store);
    assert_eq!(id.revision(), rev);
    assert_eq!(id.snapshot().fernet_keys, keys);
    assert_eq!(id.snapshot().users.len(), 1);
}
