//! The validation cache at unit level: an entry answers only while the state
//! revision, the key generation and its own expiry all still hold. A planted
//! entry shows the cache really is consulted, so each invalidation below is
//! what stops a stale answer.

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    id: Identity,
    token: String,
    project: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = weft_store::SqliteStore::in_memory().unwrap();
    let mut id =
        Identity::open(IdentityConfig::new(dir.path(), "http://t"), Arc::new(store)).unwrap();
    id.set_bcrypt_cost(4);
    let rep = id.bootstrap(Some("pw")).unwrap();
    let req = AuthRequest {
        password: Some(PasswordAuth {
            user: UserRef {
                name: Some("admin".into()),
                domain_id: Some(DEFAULT_DOMAIN_ID.into()),
                ..Default::default()
            },
            password: "pw".into(),
        }),
        scope: ScopeRequest::Project {
            id: Some(rep.admin_project_id.clone()),
            name: None,
            domain_id: None,
            domain_name: None,
        },
        ..Default::default()
    };
    let (token, _) = id.issue_token(&req).unwrap();
    Fixture {
        _dir: dir,
        id,
        token,
        project: rep.admin_project_id,
    }
}

/// Replaces the cached context of `token` with one naming another user, so
/// a validation answered from the cache is told apart from a fresh one.
fn plant(id: &Identity, token: &str) {
    let mut e = id
        .validated
        .get_mut(token)
        .expect("validated once, so cached");
    e.ctx.user_name = "planted".into();
}

fn user_name(id: &Identity, token: &str) -> String {
    id.validate_token(token).unwrap().user_name
}

#[test]
fn an_entry_answers_while_nothing_changed() {
    let f = fixture();
    assert_eq!(user_name(&f.id, &f.token), "admin");
    plant(&f.id, &f.token);
    assert_eq!(user_name(&f.id, &f.token), "planted");
}

#[test]
fn any_write_invalidates_entries() {
    let f = fixture();
    f.id.validate_token(&f.token).unwrap();
    plant(&f.id, &f.token);
    // An unrelated write: the revision moves, the entry is not used.
    f.id.register_service("network", "neutron", "http://t/networking")
        .unwrap();
    assert_eq!(user_name(&f.id, &f.token), "admin");
    // A write that matters: the project is disabled, the token stops at once.
    let pid = f.project.clone();
    f.id.write(|tx| {
        let mut p = tx.state.projects.get(&pid).cloned().unwrap();
        p.enabled = false;
        tx.put_project(p);
        Ok(())
    })
    .unwrap();
    assert!(f.id.validate_token(&f.token).is_err());
}

#[test]
fn a_key_change_invalidates_entries() {
    let f = fixture();
    f.id.validate_token(&f.token).unwrap();
    plant(&f.id, &f.token);
    f.id.rotate_keys(3).unwrap();
    // Still signed by a key in the set: validates afresh, not from the entry.
    assert_eq!(user_name(&f.id, &f.token), "admin");
    plant(&f.id, &f.token);
    // Rotate until the signing key is gone: the token no longer validates,
    // even though it was cached a moment ago.
    for _ in 0..3 {
        f.id.rotate_keys(3).unwrap();
    }
    assert!(f.id.validate_token(&f.token).is_err());
}

#[test]
fn an_expired_entry_is_not_used() {
    let f = fixture();
    f.id.validate_token(&f.token).unwrap();
    plant(&f.id, &f.token);
    f.id.validated.get_mut(&f.token).unwrap().valid_until = now_micros() - 1;
    assert_eq!(user_name(&f.id, &f.token), "admin");
}
