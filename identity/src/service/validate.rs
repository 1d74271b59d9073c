//! Token validation (cached per state revision), revocation and policy checks.

use super::{
    new_id, now_micros, prune_revocations, unauthorized, AuthContext, Identity, RenderedBody,
    TrustInfo, Validated, DEFAULT_DOMAIN_ID, VALIDATION_CACHE_MAX,
};
use crate::error::IdentityError;
use crate::model::*;
use crate::state::{Scope, State, TokenFacts};
use crate::token::{self, Payload, TokenScope};
use axum::body::Bytes;

impl Identity {
    /// Validate a token (`X-Auth-Token` or `X-Subject-Token`): decrypt, check
    /// expiry and revocation events, and resolve the user, scope and effective
    /// roles from the in-memory state (no database access).
    ///
    /// A token already validated against the current state revision is
    /// answered from a cache (no decrypt, no role resolution): any write
    /// bumps the revision, so a removed role or a revocation still takes
    /// effect on the next request.
    pub fn validate_token(&self, token: &str) -> Result<AuthContext, IdentityError> {
        let now = now_micros();
        self.replica.read(|state| {
            let key_generation = state.keys.generation;
            if let Some(v) = self.validated.get(token) {
                if v.revision == state.revision
                    && v.key_generation == key_generation
                    && now < v.valid_until
                {
                    return Ok(v.ctx.clone());
                }
            }
            let payload = state.keys.open_token(token).ok_or_else(unauthorized)?;
            let ctx = context_from_payload(state, payload, now)?;
            if self.validated.len() >= VALIDATION_CACHE_MAX {
                self.validated.clear();
            }
            self.validated.insert(
                token.to_string(),
                Validated {
                    revision: state.revision,
                    key_generation,
                    valid_until: valid_until(state, &ctx),
                    ctx: ctx.clone(),
                },
            );
            Ok(ctx)
        })
    }

    /// The rendered token body for `token` at the current revision, made by
    /// `render` on a miss (`GET /auth/tokens` answers the same bytes until
    /// the state changes).
    pub fn rendered_token_body(
        &self,
        token: &str,
        ctx: &AuthContext,
        with_catalog: bool,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let now = now_micros();
        let state = self.replica.snapshot();
        let key = (token.to_string(), with_catalog);
        if let Some(b) = self.bodies.get(&key) {
            if b.revision == state.revision && now < b.valid_until {
                return b.body.clone();
            }
        }
        let body = render();
        if self.bodies.len() >= VALIDATION_CACHE_MAX {
            self.bodies.clear();
        }
        self.bodies.insert(
            key,
            RenderedBody {
                revision: state.revision,
                valid_until: valid_until(&state, ctx),
                body: body.clone(),
            },
        );
        body
    }
    /// Record a revocation event (written through, so it survives a restart).
    pub fn revoke(&self, ev: RevocationEvent) -> Result<(), IdentityError> {
        let ttl = i64::try_from(self.cfg.token_ttl.as_micros()).unwrap_or(i64::MAX / 4);
        let keep = ttl.max(86_400_000_000);
        let now = now_micros();
        self.write(|tx| {
            let mut ev = ev.clone();
            ev.id = new_id();
            if ev.issued_before == 0 {
                ev.issued_before = now;
            }
            tx.put_revocation(ev);
            prune_revocations(tx, now, keep);
            Ok(())
        })
    }

    /// `DELETE /auth/tokens`: revoke that token (by its audit id).
    pub fn revoke_token(&self, token: &str) -> Result<(), IdentityError> {
        let ctx = self.validate_token(token)?;
        self.revoke(RevocationEvent {
            audit_id: ctx.audit_ids.first().cloned(),
            issued_before: ctx.issued_at,
            ..Default::default()
        })
    }

    /// Check `action` against the caller's credentials and `target`.
    pub fn authorize(
        &self,
        ctx: &AuthContext,
        action: &str,
        target: &serde_json::Value,
    ) -> Result<(), IdentityError> {
        self.enforcer
            .authorize(action, target, &ctx.credentials())
            .map_err(|d| {
                IdentityError::Forbidden(format!(
                    "You are not authorized to perform the requested action: {}.",
                    d.action
                ))
            })
    }
}

/// Until when a validation stays true if the state does not change: the
/// token's expiry, capped by its trust's and application credential's.
fn valid_until(state: &State, ctx: &AuthContext) -> Micros {
    let trust = ctx
        .trust
        .as_ref()
        .and_then(|t| state.trusts.get(&t.id))
        .and_then(|t| t.expires_at);
    let app_cred = ctx
        .app_cred_id
        .as_ref()
        .and_then(|a| state.app_creds.get(a))
        .and_then(|a| a.expires_at);
    [Some(ctx.expires_at), trust, app_cred]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(ctx.expires_at)
}

/// Resolve a decrypted payload against the state: the pure core of validation.
pub fn context_from_payload(
    state: &State,
    payload: Payload,
    now: Micros,
) -> Result<AuthContext, IdentityError> {
    if payload.expires_at <= now {
        return Err(unauthorized());
    }
    let audit_ids: Vec<String> = payload.audit_ids.iter().map(token::audit_str).collect();
    let (project_scope, domain_scope, trust_id) = match &payload.scope {
        TokenScope::Project(p) => (Some(p.clone()), None, None),
        TokenScope::Domain(d) => (None, Some(d.clone()), None),
        TokenScope::Trust(t) => (
            state.trusts.get(t).and_then(|t| t.project_id.clone()),
            None,
            Some(t.clone()),
        ),
        _ => (None, None, None),
    };
    let facts = TokenFacts {
        user_id: &payload.user_id,
        project_id: project_scope.as_deref(),
        domain_id: domain_scope.as_deref(),
        trust_id: trust_id.as_deref(),
        audit_ids: audit_ids.iter().map(String::as_str).collect(),
        issued_at: payload.issued_at,
    };
    if state.is_revoked(&facts) {
        return Err(unauthorized());
    }
    let authn_user = enabled_user(state, &payload.user_id).ok_or_else(unauthorized)?;
    let mut shown_user = authn_user;
    let mut trust_info = None;
    let role_ids: Vec<String> = match &payload.scope {
        TokenScope::Unscoped => vec![],
        TokenScope::System => state
            .effective_role_ids(&authn_user.id, &Scope::System)
            .into_iter()
            .collect(),
        TokenScope::Domain(d) => {
            if !state.domains.get(d).is_some_and(|d| d.enabled) {
                return Err(unauthorized());
            }
            state
                .effective_role_ids(&authn_user.id, &Scope::Domain(d.clone()))
                .into_iter()
                .collect()
        }
        TokenScope::Project(p) => {
            project_roles(state, authn_user, p, payload.app_cred_id.as_ref(), now)?
        }
        TokenScope::Trust(tid) => {
            let (roles, info, shown) = trust_roles(state, authn_user, tid, now)?;
            trust_info = Some(info);
            shown_user = shown;
            roles
        }
    };
    let scoped = !matches!(payload.scope, TokenScope::Unscoped);
    let mut roles: Vec<(String, String)> = role_ids
        .iter()
        .filter_map(|id| state.roles.get(id).map(|r| (r.name.clone(), r.id.clone())))
        .collect();
    roles.sort();
    if scoped && roles.is_empty() {
        return Err(IdentityError::Unauthorized(
            "User has no access to the requested scope.".into(),
        ));
    }
    let dom_name = |id: &str| {
        state
            .domains
            .get(id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    let project = project_scope.as_ref().and_then(|p| state.projects.get(p));
    Ok(AuthContext {
        user_id: shown_user.id.clone(),
        user_name: shown_user.name.clone(),
        user_domain_id: shown_user.domain_id.clone(),
        user_domain_name: dom_name(&shown_user.domain_id),
        project_id: project.map(|p| p.id.clone()),
        project_name: project.map(|p| p.name.clone()),
        project_domain_id: project.map(|p| p.domain_id.clone()),
        project_domain_name: project.map(|p| dom_name(&p.domain_id)),
        domain_id: domain_scope.clone(),
        domain_name: domain_scope.as_deref().map(dom_name),
        system_scope: payload.scope == TokenScope::System,
        is_admin_project: project
            .is_some_and(|p| p.name == "admin" && p.domain_id == DEFAULT_DOMAIN_ID),
        role_ids: roles.iter().map(|r| r.1.clone()).collect(),
        roles: roles.into_iter().map(|r| r.0).collect(),
        methods: token::method_names(payload.methods)
            .into_iter()
            .map(String::from)
            .collect(),
        issued_at: payload.issued_at,
        expires_at: payload.expires_at,
        audit_ids,
        trust: trust_info,
        app_cred_id: payload.app_cred_id.clone(),
        password_expires_at: shown_user.password_expires_at,
        audience: payload.audience,
        payload,
    })
}

/// The user `id`, if it and its domain are enabled.
fn enabled_user<'s>(state: &'s State, id: &str) -> Option<&'s User> {
    let u = state.users.get(id)?;
    (u.enabled && state.domains.get(&u.domain_id).is_some_and(|d| d.enabled)).then_some(u)
}

/// A project-scoped token's roles: what the user holds on enabled project
/// `p` of an enabled domain; through an application credential, only its
/// roles (and what they imply) that the user still holds.
fn project_roles(
    state: &State,
    authn_user: &User,
    p: &str,
    app_cred_id: Option<&String>,
    now: Micros,
) -> Result<Vec<String>, IdentityError> {
    let proj = state
        .projects
        .get(p)
        .filter(|p| p.enabled)
        .ok_or_else(unauthorized)?;
    if !state
        .domains
        .get(&proj.domain_id)
        .is_some_and(|d| d.enabled)
    {
        return Err(unauthorized());
    }
    let held = state.effective_role_ids(&authn_user.id, &Scope::Project(p.to_string()));
    Ok(match app_cred_id {
        None => held.into_iter().collect(),
        Some(acid) => {
            let ac = state.app_creds.get(acid).ok_or_else(unauthorized)?;
            if ac.user_id != authn_user.id || ac.expires_at.is_some_and(|e| e <= now) {
                return Err(unauthorized());
            }
            state
                .expand_implied(ac.role_ids.iter().cloned())
                .into_iter()
                .filter(|r| held.contains(r))
                .collect()
        }
    })
}

/// A trust-scoped token's roles, the trust as the token shows it, and the
/// user it acts as (the trustor when the trust impersonates). The trust must
/// be live, this user its trustee, and the trustor must still hold every
/// delegated role.
fn trust_roles<'s>(
    state: &'s State,
    authn_user: &'s User,
    tid: &str,
    now: Micros,
) -> Result<(Vec<String>, TrustInfo, &'s User), IdentityError> {
    let t = state.trusts.get(tid).ok_or_else(unauthorized)?;
    if t.expires_at.is_some_and(|e| e <= now) || t.trustee_user_id != authn_user.id {
        return Err(unauthorized());
    }
    let trustor = enabled_user(state, &t.trustor_user_id).ok_or_else(unauthorized)?;
    let held = match &t.project_id {
        Some(p) => {
            state
                .projects
                .get(p)
                .filter(|p| p.enabled)
                .ok_or_else(unauthorized)?;
            state.held_role_ids(&trustor.id, &Scope::Project(p.clone()))
        }
        None => Default::default(),
    };
    // The trustor must still hold every delegated role.
    if !t.role_ids.iter().all(|r| held.contains(r)) {
        return Err(unauthorized());
    }
    let info = TrustInfo {
        id: t.id.clone(),
        trustor_user_id: t.trustor_user_id.clone(),
        trustee_user_id: t.trustee_user_id.clone(),
        impersonation: t.impersonation,
    };
    let shown = if t.impersonation { trustor } else { authn_user };
    // Delegated roles and what they imply, global ones only (as
    // Keystone's trust tokens).
    let roles = state
        .global_roles(state.expand_implied(t.role_ids.iter().cloned()))
        .into_iter()
        .collect();
    Ok((roles, info, shown))
}
