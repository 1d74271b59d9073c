//! Pure changes over a write transaction: cascades and revocation events.

use crate::model::*;
use crate::state::Tx;

/// Revokes every token of the user (a revocation event).
pub fn revoke_user(tx: &mut Tx, user_id: &str, now: Micros) {
    tx.put_revocation(RevocationEvent {
        id: new_id(),
        user_id: Some(user_id.into()),
        issued_before: now,
        ..Default::default()
    });
}

/// Revokes every token issued under the trust and under trusts redelegated from it.
pub fn revoke_trust(tx: &mut Tx, trust_id: &str, now: Micros) {
    tx.put_revocation(RevocationEvent {
        id: new_id(),
        trust_id: Some(trust_id.into()),
        issued_before: now,
        ..Default::default()
    });
}

fn drop_assignments(tx: &mut Tx, pred: impl Fn(&Assignment) -> bool) {
    let keys: Vec<String> = tx
        .state
        .assignments
        .iter()
        .filter(|(_, a)| pred(a))
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        tx.del_assignment(&k);
    }
}

fn drop_trusts(tx: &mut Tx, pred: impl Fn(&Trust) -> bool, now: Micros) {
    let ids: Vec<String> = tx
        .state
        .trusts
        .values()
        .filter(|t| pred(t))
        .map(|t| t.id.clone())
        .collect();
    for id in ids {
        tx.del_trust(&id);
        revoke_trust(tx, &id, now);
    }
}

/// Deletes the user with what hangs on it: assignments, memberships, credentials, trusts; its tokens are revoked.
pub fn delete_user(tx: &mut Tx, user_id: &str, now: Micros) {
    let groups: Vec<String> = tx
        .state
        .memberships
        .iter()
        .filter(|(_, u)| u == user_id)
        .map(|(g, _)| g.clone())
        .collect();
    for g in groups {
        tx.remove_membership(&g, user_id);
    }
    drop_assignments(tx, |a| a.actor == Actor::User(user_id.into()));
    let creds: Vec<String> = tx
        .state
        .app_creds
        .values()
        .filter(|c| c.user_id == user_id)
        .map(|c| c.id.clone())
        .collect();
    for c in creds {
        tx.del_app_cred(&c);
    }
    drop_trusts(
        tx,
        |t| t.trustor_user_id == user_id || t.trustee_user_id == user_id,
        now,
    );
    tx.del_user(user_id);
    revoke_user(tx, user_id, now);
}

/// Deletes the group with its assignments and memberships.
pub fn delete_group(tx: &mut Tx, group_id: &str) {
    let users: Vec<String> = tx
        .state
        .memberships
        .iter()
        .filter(|(g, _)| g == group_id)
        .map(|(_, u)| u.clone())
        .collect();
    for u in users {
        tx.remove_membership(group_id, &u);
    }
    drop_assignments(tx, |a| a.actor == Actor::Group(group_id.into()));
    tx.del_group(group_id);
}

/// Deletes the project with its assignments; its tokens are revoked.
pub fn delete_project(tx: &mut Tx, project_id: &str, now: Micros) {
    drop_assignments(tx, |a| a.target == Target::Project(project_id.into()));
    let creds: Vec<String> = tx
        .state
        .app_creds
        .values()
        .filter(|c| c.project_id == project_id)
        .map(|c| c.id.clone())
        .collect();
    for c in creds {
        tx.del_app_cred(&c);
    }
    drop_trusts(tx, |t| t.project_id.as_deref() == Some(project_id), now);
    tx.del_project(project_id);
}

/// Deletes the domain with everything in it; its tokens are revoked.
pub fn delete_domain(tx: &mut Tx, domain_id: &str, now: Micros) {
    // Children before parents so no project is left pointing at a deleted one.
    loop {
        let leaf = tx
            .state
            .projects
            .values()
            .find(|p| {
                p.domain_id == domain_id
                    && !tx
                        .state
                        .projects
                        .values()
                        .any(|c| c.parent_id.as_deref() == Some(&p.id))
            })
            .map(|p| p.id.clone());
        match leaf {
            Some(p) => delete_project(tx, &p, now),
            None => break,
        }
    }
    let users: Vec<String> = tx
        .state
        .users
        .values()
        .filter(|u| u.domain_id == domain_id)
        .map(|u| u.id.clone())
        .collect();
    for u in users {
        delete_user(tx, &u, now);
    }
    let groups: Vec<String> = tx
        .state
        .groups
        .values()
        .filter(|g| g.domain_id == domain_id)
        .map(|g| g.id.clone())
        .collect();
    for g in groups {
        delete_group(tx, &g);
    }
    let roles: Vec<String> = tx
        .state
        .roles
        .values()
        .filter(|r| r.domain_id.as_deref() == Some(domain_id))
        .map(|r| r.id.clone())
        .collect();
    for r in roles {
        delete_role(tx, &r);
    }
    drop_assignments(tx, |a| a.target == Target::Domain(domain_id.into()));
    tx.del_domain(domain_id);
}

/// Deletes the role with its assignments and implications.
pub fn delete_role(tx: &mut Tx, role_id: &str) {
    drop_assignments(tx, |a| a.role_id == role_id);
    let rules: Vec<(String, String)> = tx
        .state
        .implied
        .iter()
        .filter(|(p, i)| p == role_id || i == role_id)
        .cloned()
        .collect();
    for (p, i) in rules {
        tx.remove_implied(&p, &i);
    }
    tx.del_role(role_id);
}
