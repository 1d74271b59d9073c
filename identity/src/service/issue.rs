//! Authentication: checking a password or application credential and issuing a token.

use super::validate::context_from_payload;
use super::{
    ct_eq, new_id, now_micros, secret_hash, unauthorized, AppCredAuth, AuthContext, AuthRequest,
    Identity, ScopeRequest, UserRef,
};
use crate::error::IdentityError;
use crate::model::*;
use crate::state::{Scope, State};
use crate::token::{self, Payload, TokenScope};

impl Identity {
    /// Authenticate and issue a token: `(token id, its context)`.
    pub fn issue_token(&self, req: &AuthRequest) -> Result<(String, AuthContext), IdentityError> {
        let now = now_micros();
        let state = self.snapshot();
        let mut methods = 0u8;
        let mut user_id: Option<String> = None;
        let mut expires_at =
            now + i64::try_from(self.cfg.token_ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let mut audit_chain: Option<[u8; 16]> = None;
        let mut app_cred: Option<AppCred> = None;
        let mut scope_req = req.scope.clone();

        if let Some(pw) = &req.password {
            let u = find_user(&state, &pw.user);
            let ok = match u.and_then(|u| u.password_hash.as_deref()) {
                Some(h) => bcrypt::verify(&pw.password, h).unwrap_or(false),
                None => {
                    // Spend the same time as a real check so unknown users don't show.
                    let _ = bcrypt::verify(&pw.password, dummy_hash(self.bcrypt_cost));
                    false
                }
            };
            let u = u.filter(|_| ok).ok_or_else(unauthorized)?;
            if let Some(exp) = u.password_expires_at {
                if exp <= now {
                    return Err(IdentityError::Unauthorized(format!(
                        "The password is expired and needs to be changed for user: {}.",
                        u.id
                    )));
                }
            }
            methods |= token::METHOD_PASSWORD;
            user_id = Some(u.id.clone());
        }
        if let Some(t) = &req.token {
            let ctx = self.validate_token(t)?;
            if ctx.trust.is_some() {
                return Err(IdentityError::Forbidden(
                    "Trust-scoped tokens cannot be rescoped.".into(),
                ));
            }
            if ctx.app_cred_id.is_some() {
                return Err(IdentityError::Forbidden(
                    "Application credential tokens cannot be rescoped.".into(),
                ));
            }
            if user_id.as_deref().is_some_and(|u| u != ctx.user_id) {
                return Err(unauthorized());
            }
            methods |= ctx.payload.methods | token::METHOD_TOKEN;
            expires_at = expires_at.min(ctx.expires_at);
            audit_chain = ctx.payload.audit_ids.last().copied();
            user_id = Some(ctx.user_id.clone());
        }
        if let Some(ac) = &req.app_cred {
            let cred = find_app_cred(&state, ac).ok_or_else(unauthorized)?;
            if !ct_eq(
                secret_hash(&ac.secret).as_bytes(),
                cred.secret_hash.as_bytes(),
            ) {
                return Err(unauthorized());
            }
            if cred.expires_at.is_some_and(|e| e <= now) {
                return Err(unauthorized());
            }
            if user_id.as_deref().is_some_and(|u| u != cred.user_id) {
                return Err(unauthorized());
            }
            match &scope_req {
                ScopeRequest::Unscoped => {}
                ScopeRequest::Project { id: Some(p), .. } if *p == cred.project_id => {}
                _ => {
                    return Err(IdentityError::Unauthorized(
                        "Application credentials cannot request a scope.".into(),
                    ))
                }
            }
            scope_req = ScopeRequest::Project {
                id: Some(cred.project_id.clone()),
                name: None,
                domain_id: None,
                domain_name: None,
            };
            methods |= token::METHOD_APP_CRED;
            user_id = Some(cred.user_id.clone());
            if let Some(e) = cred.expires_at {
                expires_at = expires_at.min(e);
            }
            app_cred = Some(cred.clone());
        }
        let user_id = user_id.ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'identity/methods': no method given.")
        })?;
        let user = state.users.get(&user_id).ok_or_else(unauthorized)?;
        if !user.enabled
            || !state
                .domains
                .get(&user.domain_id)
                .is_some_and(|d| d.enabled)
        {
            return Err(unauthorized());
        }

        let scope = match &scope_req {
            ScopeRequest::Unscoped => match &user.default_project_id {
                Some(p)
                    if state.projects.get(p).is_some_and(|p| p.enabled)
                        && !state
                            .effective_role_ids(&user_id, &Scope::Project(p.clone()))
                            .is_empty() =>
                {
                    TokenScope::Project(p.clone())
                }
                _ => TokenScope::Unscoped,
            },
            ScopeRequest::System => TokenScope::System,
            ScopeRequest::Domain { id, name } => {
                let d = match (id, name) {
                    (Some(id), _) => state.domains.get(id),
                    (None, Some(n)) => state.domains.values().find(|d| &d.name == n),
                    _ => None,
                };
                TokenScope::Domain(d.ok_or_else(unauthorized)?.id.clone())
            }
            ScopeRequest::Project {
                id,
                name,
                domain_id,
                domain_name,
            } => {
                let p = match (id, name) {
                    (Some(id), _) => state.projects.get(id),
                    (None, Some(n)) => {
                        let did = match (domain_id, domain_name) {
                            (Some(d), _) => Some(d.clone()),
                            (None, Some(dn)) => state
                                .domains
                                .values()
                                .find(|d| &d.name == dn)
                                .map(|d| d.id.clone()),
                            _ => None,
                        };
                        did.and_then(|did| {
                            state
                                .projects
                                .values()
                                .find(|p| &p.name == n && p.domain_id == did)
                        })
                    }
                    _ => None,
                };
                TokenScope::Project(p.ok_or_else(unauthorized)?.id.clone())
            }
            ScopeRequest::Trust(tid) => {
                let t = state
                    .trusts
                    .get(tid)
                    .ok_or_else(|| IdentityError::not_found("trust", tid))?;
                if t.trustee_user_id != user_id {
                    return Err(IdentityError::Forbidden("User is not a trustee.".into()));
                }
                if t.remaining_uses == Some(0) || t.expires_at.is_some_and(|e| e <= now) {
                    return Err(IdentityError::not_found("trust", tid));
                }
                if let Some(e) = t.expires_at {
                    expires_at = expires_at.min(e);
                }
                TokenScope::Trust(tid.clone())
            }
        };
        let payload = Payload {
            user_id: user_id.clone(),
            methods,
            scope,
            app_cred_id: app_cred.map(|c| c.id),
            issued_at: now,
            expires_at,
            audit_ids: {
                let mut v = vec![rand::random::<[u8; 16]>()];
                v.extend(audit_chain);
                v
            },
        };
        // Resolve before counting a trust use, so a refused token costs nothing.
        let ctx = context_from_payload(&state, payload.clone(), now)?;
        if let TokenScope::Trust(tid) = &payload.scope {
            self.write(|tx| {
                let mut t = tx
                    .state
                    .trusts
                    .get(tid)
                    .cloned()
                    .ok_or_else(|| IdentityError::not_found("trust", tid))?;
                match t.remaining_uses {
                    Some(0) => return Err(IdentityError::not_found("trust", tid)),
                    Some(n) => {
                        t.remaining_uses = Some(n - 1);
                        tx.put_trust(t);
                    }
                    None => {}
                }
                Ok(())
            })?;
        }
        let token = state
            .keys
            .seal(&payload)
            .ok_or_else(|| IdentityError::Keys {
                path: self.cfg.state_dir.join("fernet-keys"),
                message: "no Fernet keys in the store".into(),
            })?;
        Ok((token, ctx))
    }
}

/// A bcrypt hash of a random password, checked when the user is unknown so
/// that "no such user" costs the same time as "wrong password".
fn dummy_hash(cost: u32) -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| bcrypt::hash(new_id(), cost).unwrap_or_default())
}

pub(crate) fn find_user<'a>(state: &'a State, r: &UserRef) -> Option<&'a User> {
    if let Some(id) = &r.id {
        return state.users.get(id);
    }
    let name = r.name.as_ref()?;
    let did = match (&r.domain_id, &r.domain_name) {
        (Some(d), _) => d.clone(),
        (None, Some(n)) => state.domains.values().find(|d| &d.name == n)?.id.clone(),
        _ => return None,
    };
    state.user_by_name(&did, name)
}

fn find_app_cred<'a>(state: &'a State, a: &AppCredAuth) -> Option<&'a AppCred> {
    if let Some(id) = &a.id {
        return state.app_creds.get(id);
    }
    let name = a.name.as_ref()?;
    let user = find_user(state, a.user.as_ref()?)?;
    state
        .app_creds
        .values()
        .find(|c| &c.name == name && c.user_id == user.id)
}
