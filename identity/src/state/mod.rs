//! The whole identity state in memory, its indexes, and role resolution.
//!
//! Every read (token validation included) works on an immutable `Arc<State>`
//! snapshot from the service's [`weft_store::Replica`], so the hot path never
//! touches the database. A write runs on a [`Tx`] over a copy of the snapshot
//! and yields the [`Change`]s to commit; the replica then moves its states
//! with [`State::apply`] (as it does for commits followed from other replicas).
//!
//! The maps are persistent (`imbl`): a copy shares every node with the
//! snapshot, so starting a `Tx` costs a few reference counts rather than a
//! copy of every record, and a write costs the nodes it changes. `apply`
//! keeps the indexes current for the records a commit touches instead of
//! rebuilding them.

mod load;
mod roles;
mod tx;

use crate::model::*;
use crate::token::KeySet;
use imbl::{HashMap as PMap, OrdMap, OrdSet};
pub use load::LoadError;
pub use roles::{AssignmentRow, TokenFacts};
pub use tx::Tx;

/// The store's name for identity's records.
pub const SERVICE: &str = "identity";

/// Record kinds as stored.
pub mod kind {
    /// A [`Domain`].
    pub const DOMAIN: &str = "domain";
    /// A [`Project`].
    pub const PROJECT: &str = "project";
    /// A [`User`].
    pub const USER: &str = "user";
    /// A [`Group`].
    pub const GROUP: &str = "group";
    /// A [`Role`].
    pub const ROLE: &str = "role";
    /// A [`Region`].
    pub const REGION: &str = "region";
    /// A catalog [`Service`].
    pub const SERVICE: &str = "service";
    /// An [`Endpoint`].
    pub const ENDPOINT: &str = "endpoint";
    /// An [`AppCred`].
    pub const APP_CRED: &str = "app_cred";
    /// A [`Trust`].
    pub const TRUST: &str = "trust";
    /// A [`RevocationEvent`].
    pub const REVOCATION: &str = "revocation";
    /// An [`Assignment`], keyed by [`Assignment::key`].
    pub const ASSIGNMENT: &str = "assignment";
    /// A group membership, keyed `group_id|user_id`.
    pub const MEMBERSHIP: &str = "membership";
    /// An implied-role rule, keyed `prior|implied`.
    pub const IMPLIED: &str = "implied";
    /// A Fernet key: id is its index (0 staged, the highest primary), body
    /// the key as a JSON string. Shared by every replica on the database.
    pub const FERNET_KEY: &str = "fernet_key";
}

/// Every identity record at one store revision: an immutable snapshot readers share.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The store revision it reflects: caches keyed by it are current while it is.
    pub revision: u64,
    /// By id.
    pub domains: OrdMap<String, Domain>,
    /// By id.
    pub projects: OrdMap<String, Project>,
    /// By id.
    pub users: OrdMap<String, User>,
    /// By id.
    pub groups: OrdMap<String, Group>,
    /// (group_id, user_id)
    pub memberships: OrdSet<(String, String)>,
    /// By id.
    pub roles: OrdMap<String, Role>,
    /// (prior_role_id, implied_role_id)
    pub implied: OrdSet<(String, String)>,
    /// By [`Assignment::key`].
    pub assignments: OrdMap<String, Assignment>,
    /// By id.
    pub regions: OrdMap<String, Region>,
    /// By id.
    pub services: OrdMap<String, Service>,
    /// By id.
    pub endpoints: OrdMap<String, Endpoint>,
    /// By id.
    pub app_creds: OrdMap<String, AppCred>,
    /// By id.
    pub trusts: OrdMap<String, Trust>,
    /// By id.
    pub revocations: OrdMap<String, RevocationEvent>,
    /// Fernet keys by index (0 staged, the highest primary).
    pub fernet_keys: OrdMap<u64, String>,
    /// `fernet_keys`, ready to seal and open tokens.
    pub keys: KeySet,
    /// Derived lookups, so that validating a token walks no whole map.
    pub index: Index,
}

/// Derived lookups, kept current by [`State::apply`] for the records each
/// commit touches (`implies`, a transitive closure over a handful of rules,
/// is recomputed when an implied-role rule changes).
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// user_id -> its groups.
    pub user_groups: PMap<String, Vec<String>>,
    /// (actor, target) -> [(role_id, inherited)]
    pub grants: PMap<(Actor, Target), Vec<(String, bool)>>,
    /// role_id -> every role it implies, transitively (not itself).
    pub implies: PMap<String, Vec<String>>,
    /// audit id -> the events revoking it
    pub revoked_audit: PMap<String, Vec<String>>,
    /// user_id -> the events revoking its tokens.
    pub revoke_by_user: PMap<String, Vec<String>>,
    /// trust_id -> the events revoking its tokens.
    pub revoke_by_trust: PMap<String, Vec<String>>,
    /// Events that name neither a user, a trust nor an audit id (checked against every token).
    pub revoke_other: OrdSet<String>,
    /// (domain_id, user name) -> user_id.
    pub user_by_name: PMap<(String, String), String>,
}

/// The scope a set of roles is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// On a project.
    Project(String),
    /// On a domain.
    Domain(String),
    /// System-wide.
    System,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weft_store::{Change, Row};

    fn project(id: &str, domain: &str, parent: Option<&str>) -> Project {
        Project {
            id: id.into(),
            name: id.into(),
            domain_id: domain.into(),
            parent_id: parent.map(String::from),
            description: String::new(),
            enabled: true,
            tags: vec![],
            extra: Default::default(),
        }
    }

    fn role(id: &str, domain_id: Option<&str>) -> Role {
        Role {
            id: id.into(),
            name: id.into(),
            domain_id: domain_id.map(Into::into),
            description: None,
            options: Default::default(),
        }
    }

    fn grant(actor: Actor, target: Target, role: &str, inherited: bool) -> Assignment {
        Assignment {
            actor,
            target,
            role_id: role.into(),
            inherited,
        }
    }

    /// d1: top -> mid -> leaf, plus other; roles admin -> member -> reader, auditor.
    fn world(assignments: Vec<Assignment>, members: &[(&str, &str)]) -> State {
        let mut s = State::default();
        for p in [
            project("top", "d1", None),
            project("mid", "d1", Some("top")),
            project("leaf", "d1", Some("mid")),
            project("other", "d1", None),
        ] {
            s.projects.insert(p.id.clone(), p);
        }
        for r in ["admin", "member", "reader", "auditor"] {
            s.roles.insert(r.into(), role(r, None));
        }
        s.implied.insert(("admin".into(), "member".into()));
        s.implied.insert(("member".into(), "reader".into()));
        for a in assignments {
            s.assignments.insert(a.key(), a);
        }
        for (g, u) in members {
            s.memberships.insert((g.to_string(), u.to_string()));
        }
        s.reindex();
        s
    }

    fn roles(s: &State, user: &str, scope: Scope) -> Vec<String> {
        s.effective_role_ids(user, &scope).into_iter().collect()
    }

    fn u(x: &str) -> Actor {
        Actor::User(x.into())
    }
    fn g(x: &str) -> Actor {
        Actor::Group(x.into())
    }
    fn p(x: &str) -> Target {
        Target::Project(x.into())
    }

    #[test]
    fn direct_and_implied() {
        let s = world(vec![grant(u("alice"), p("top"), "admin", false)], &[]);
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["admin", "member", "reader"]
        );
        assert!(
            roles(&s, "alice", Scope::Project("mid".into())).is_empty(),
            "not inherited"
        );
        assert!(roles(&s, "bob", Scope::Project("top".into())).is_empty());
    }

    #[test]
    fn groups_count_for_members_only() {
        let s = world(
            vec![grant(g("ops"), p("other"), "member", false)],
            &[("ops", "alice")],
        );
        assert_eq!(
            roles(&s, "alice", Scope::Project("other".into())),
            ["member", "reader"]
        );
        assert!(roles(&s, "bob", Scope::Project("other".into())).is_empty());
    }

    #[test]
    fn inheritance_reaches_the_subtree_not_the_target() {
        let s = world(
            vec![
                grant(u("alice"), p("top"), "reader", true),
                grant(g("ops"), Target::Domain("d1".into()), "member", true),
            ],
            &[("ops", "bob")],
        );
        assert!(roles(&s, "alice", Scope::Project("top".into())).is_empty());
        assert_eq!(roles(&s, "alice", Scope::Project("mid".into())), ["reader"]);
        assert_eq!(
            roles(&s, "alice", Scope::Project("leaf".into())),
            ["reader"]
        );
        assert!(roles(&s, "alice", Scope::Project("other".into())).is_empty());
        // domain-inherited: every project in the domain, not the domain itself
        for proj in ["top", "mid", "leaf", "other"] {
            assert_eq!(
                roles(&s, "bob", Scope::Project(proj.into())),
                ["member", "reader"],
                "{proj}"
            );
        }
        assert!(roles(&s, "bob", Scope::Domain("d1".into())).is_empty());
    }

    #[test]
    fn scopes_are_separate() {
        let s = world(
            vec![
                grant(u("alice"), Target::System, "reader", false),
                grant(u("alice"), Target::Domain("d1".into()), "admin", false),
            ],
            &[],
        );
        assert_eq!(roles(&s, "alice", Scope::System), ["reader"]);
        assert_eq!(
            roles(&s, "alice", Scope::Domain("d1".into())),
            ["admin", "member", "reader"]
        );
        assert!(
            roles(&s, "alice", Scope::Project("top".into())).is_empty(),
            "domain grant is not inherited"
        );
    }

    #[test]
    fn implication_cycles_terminate() {
        let mut s = world(vec![grant(u("alice"), p("top"), "reader", false)], &[]);
        s.implied.insert(("reader".into(), "admin".into()));
        s.reindex();
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["admin", "member", "reader"]
        );
    }

    #[test]
    fn effective_rows_expand_groups_inheritance_and_implications() {
        let s = world(
            vec![grant(g("ops"), p("mid"), "member", true)],
            &[("ops", "alice"), ("ops", "bob")],
        );
        let rows = s.assignment_rows(true);
        // 2 users x 1 project below mid (leaf) x {member, reader}
        assert_eq!(rows.len(), 4);
        assert!(rows
            .iter()
            .all(|r| r.target == p("leaf") && r.via_group.as_deref() == Some("ops")));
        assert_eq!(
            rows.iter()
                .filter(|r| r.prior_role.as_deref() == Some("member"))
                .count(),
            2
        );
        let raw = s.assignment_rows(false);
        assert_eq!(raw.len(), 1);
        assert!(raw[0].inherited);
    }

    #[test]
    fn domain_specific_roles_only_imply() {
        let mut s = world(vec![grant(u("alice"), p("top"), "d1-ops", false)], &[]);
        s.roles.insert("d1-ops".into(), role("d1-ops", Some("d1")));
        s.reindex();
        // alone it gives nothing effective, but a trustor still holds it
        assert!(roles(&s, "alice", Scope::Project("top".into())).is_empty());
        assert!(s.assignment_rows(true).is_empty());
        assert_eq!(s.assignment_rows(false).len(), 1);
        assert!(s
            .held_role_ids("alice", &Scope::Project("top".into()))
            .contains("d1-ops"));
        // implying member: member and reader are effective, d1-ops is not
        s.implied.insert(("d1-ops".into(), "member".into()));
        s.reindex();
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["member", "reader"]
        );
        let rows = s.assignment_rows(true);
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .all(|r| r.prior_role.as_deref() == Some("d1-ops")));
    }

    /// The indexes as sets, whatever order their lists were built in.
    fn index_view(s: &State) -> Vec<String> {
        fn sorted<K: std::fmt::Debug>(m: &PMap<K, Vec<String>>) -> Vec<String> {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, l)| {
                    let mut l = l.clone();
                    l.sort();
                    format!("{k:?}={l:?}")
                })
                .collect();
            v.sort();
            v
        }
        let mut grants: Vec<String> = s
            .index
            .grants
            .iter()
            .map(|(k, l)| {
                let mut l = l.clone();
                l.sort();
                format!("{k:?}={l:?}")
            })
            .collect();
        grants.sort();
        let mut by_name: Vec<String> = s
            .index
            .user_by_name
            .iter()
            .map(|(k, v)| format!("{k:?}={v}"))
            .collect();
        by_name.sort();
        let mut out = vec![format!("{:?}", s.index.revoke_other)];
        for part in [
            sorted(&s.index.user_groups),
            grants,
            sorted(&s.index.implies),
            sorted(&s.index.revoked_audit),
            sorted(&s.index.revoke_by_user),
            sorted(&s.index.revoke_by_trust),
            by_name,
        ] {
            out.push(part.join(";"));
        }
        out
    }

    fn user(id: &str, name: &str) -> User {
        User {
            id: id.into(),
            name: name.into(),
            domain_id: "d1".into(),
            enabled: true,
            password_hash: None,
            password_created_at: None,
            password_expires_at: None,
            default_project_id: None,
            description: None,
            options: Default::default(),
            extra: Default::default(),
        }
    }

    #[test]
    fn apply_keeps_the_indexes_equal_to_a_rebuild() {
        // Commits touching every indexed kind, with renames, re-puts,
        // deletes and two revocations of one audit id; after each, the
        // incrementally kept state must match one rebuilt from the records.
        type Step = Box<dyn Fn(&mut Tx)>;
        let ev = |id: &str, user: Option<&str>, trust: Option<&str>, audit: Option<&str>| {
            RevocationEvent {
                id: id.into(),
                user_id: user.map(Into::into),
                trust_id: trust.map(Into::into),
                audit_id: audit.map(Into::into),
                issued_before: 10,
                ..Default::default()
            }
        };
        let steps: Vec<Step> = vec![
            Box::new(|tx| {
                tx.put_user(user("u1", "alice"));
                tx.put_user(user("u2", "bob"));
                tx.add_membership("g1", "u1");
                tx.add_membership("g|2", "u1");
                tx.add_implied("admin", "member");
                tx.add_implied("member", "reader");
                tx.put_assignment(grant(u("u1"), p("top"), "admin", false));
                tx.put_assignment(grant(g("g1"), p("top"), "member", true));
            }),
            Box::new(move |tx| {
                tx.put_user(user("u1", "alice2")); // renamed
                tx.remove_membership("g|2", "u1");
                tx.add_membership("g1", "u2");
                tx.put_revocation(ev("e1", Some("u1"), None, None));
                tx.put_revocation(ev("e2", None, Some("t1"), None));
                tx.put_revocation(ev("e3", None, None, Some("A")));
                tx.put_revocation(ev("e4", None, None, Some("A")));
                tx.put_revocation(ev("e5", None, None, None));
            }),
            Box::new(|tx| {
                tx.del_assignment(&grant(u("u1"), p("top"), "admin", false).key());
                tx.put_assignment(grant(u("u1"), p("top"), "admin", true));
                tx.remove_implied("member", "reader");
                tx.add_implied("reader", "admin");
                tx.del_revocation("e3");
                tx.del_revocation("e5");
            }),
            Box::new(|tx| {
                tx.del_user("u2");
                tx.put_user(user("u3", "bob"));
                tx.del_revocation("e1");
                tx.put_fernet_key(0, crate::token::generate_key());
                tx.put_fernet_key(1, crate::token::generate_key());
            }),
            Box::new(|tx| {
                tx.del_fernet_key(1);
                tx.remove_membership("g1", "u1");
                tx.del_revocation("e4");
            }),
        ];
        let mut live = State::default();
        let mut records: BTreeMap<(String, String), String> = BTreeMap::new();
        for (n, step) in steps.iter().enumerate() {
            let mut tx = Tx::new(live.clone());
            step(&mut tx);
            let rev = n as u64 + 1;
            for c in &tx.changes {
                match c {
                    Change::Put { kind, id, body } => {
                        records.insert((kind.clone(), id.clone()), body.clone());
                    }
                    Change::Delete { kind, id } => {
                        records.remove(&(kind.clone(), id.clone()));
                    }
                }
            }
            live.apply_changes(rev, &tx.changes).unwrap();
            let rows = records
                .iter()
                .map(|((kind, id), body)| Row {
                    kind: kind.clone(),
                    id: id.clone(),
                    body: body.clone(),
                })
                .collect();
            let rebuilt = State::from_rows(rev, rows).unwrap();
            assert_eq!(live.revision, rev);
            assert_eq!(index_view(&live), index_view(&rebuilt), "after step {n}");
            assert_eq!(live.memberships, rebuilt.memberships, "after step {n}");
            assert_eq!(live.keys.indexes(), rebuilt.keys.indexes());
        }
        // Spot checks of what the steps left.
        assert!(live.user_by_name("d1", "alice").is_none(), "renamed away");
        assert_eq!(live.user_by_name("d1", "alice2").unwrap().id, "u1");
        assert_eq!(live.user_by_name("d1", "bob").unwrap().id, "u3");
        assert!(live.groups_of("u1").is_empty());
        assert!(live.index.revoked_audit.is_empty(), "both A events gone");
        assert_eq!(live.keys.indexes(), [0]);
        assert_eq!(
            live.keys.generation, 5,
            "the key set moved at the last commit"
        );
        // reader -> admin -> member (member -> reader was removed)
        let mut implied = live.index.implies.get("reader").unwrap().clone();
        implied.sort();
        assert_eq!(implied, ["admin", "member"]);
        assert!(!live.index.implies.contains_key("member"));
    }

    #[test]
    fn one_of_two_audit_events_pruned_keeps_the_token_revoked() {
        let mut s = State::default();
        let ev = |id: &str| RevocationEvent {
            id: id.into(),
            audit_id: Some("A".into()),
            issued_before: 100,
            ..Default::default()
        };
        let mut tx = Tx::new(s.clone());
        tx.put_revocation(ev("e1"));
        tx.put_revocation(ev("e2"));
        s.apply_changes(1, &tx.changes).unwrap();
        let mut tx = Tx::new(s.clone());
        tx.del_revocation("e1");
        s.apply_changes(2, &tx.changes).unwrap();
        let facts = TokenFacts {
            user_id: "bob",
            project_id: None,
            domain_id: None,
            trust_id: None,
            audit_ids: vec!["A"],
            issued_at: 5,
        };
        assert!(s.is_revoked(&facts));
    }

    #[test]
    fn revocation_events_match_by_field_and_time() {
        let mut s = world(vec![], &[]);
        let ev = RevocationEvent {
            id: "e1".into(),
            user_id: Some("alice".into()),
            issued_before: 100,
            ..Default::default()
        };
        s.revocations.insert(ev.id.clone(), ev);
        let ev = RevocationEvent {
            id: "e2".into(),
            audit_id: Some("A".into()),
            issued_before: 100,
            ..Default::default()
        };
        s.revocations.insert(ev.id.clone(), ev);
        s.reindex();
        let facts = |user: &'static str, audit: &'static str, at| TokenFacts {
            user_id: user,
            project_id: None,
            domain_id: None,
            trust_id: None,
            audit_ids: vec![audit],
            issued_at: at,
        };
        assert!(s.is_revoked(&facts("alice", "x", 99)));
        assert!(
            !s.is_revoked(&facts("alice", "x", 101)),
            "issued after the event"
        );
        assert!(!s.is_revoked(&facts("bob", "x", 99)));
        assert!(
            s.is_revoked(&facts("bob", "A", 500)),
            "audit events match any time"
        );
    }
}
