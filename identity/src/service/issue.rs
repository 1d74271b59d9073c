//! Authentication: checking a password or application credential and issuing a token.

use super::validate::context_from_payload;
use super::{
    ct_eq, new_id, now_micros, secret_hash, unauthorized, AppCredAuth, AuthContext, AuthRequest,
    Identity, PasswordAuth, ScopeRequest, UserRef,
};
use crate::error::IdentityError;
use crate::model::*;
use crate::state::{Scope, State};
use crate::token::{self, Payload, TokenScope};

/// What a token request's methods proved, before its scope is resolved.
struct Proof {
    /// The methods used (`token::METHOD_*` bits).
    methods: u8,
    /// The user they agree on.
    user_id: Option<String>,
    /// The token's expiry, capped by what it derives from.
    expires_at: Micros,
    /// A rescoped token's audit id, chained into the new token's.
    audit_chain: Option<[u8; 16]>,
    /// The application credential authenticated with.
    app_cred: Option<AppCred>,
    /// The scope asked for (an application credential fixes its own).
    scope_req: ScopeRequest,
}

impl Identity {
    /// Authenticate and issue a token: `(token id, its context)`.
    pub fn issue_token(&self, req: &AuthRequest) -> Result<(String, AuthContext), IdentityError> {
        self.issue(req, None)
    }

    /// [`Identity::issue_token`], the token bound to `audience` when one is
    /// given: a build step's token (trust-scoped, or the compute service's
    /// own project token), which lives at most [`super::STEP_TOKEN_TTL`].
    pub(crate) fn issue(
        &self,
        req: &AuthRequest,
        audience: Option<token::Audience>,
    ) -> Result<(String, AuthContext), IdentityError> {
        let now = now_micros();
        let state = self.snapshot();
        let mut proof = Proof {
            methods: 0,
            user_id: None,
            expires_at: now + i64::try_from(self.cfg.token_ttl.as_micros()).unwrap_or(i64::MAX / 2),
            audit_chain: None,
            app_cred: None,
            scope_req: req.scope.clone(),
        };

        if let Some(pw) = &req.password {
            let user_id = self.password_method(&state, pw, now)?;
            proof.methods |= token::METHOD_PASSWORD;
            proof.user_id = Some(user_id);
        }
        if let Some(t) = &req.token {
            self.token_method(t, &mut proof)?;
        }
        if let Some(ac) = &req.app_cred {
            app_cred_method(&state, ac, now, &mut proof)?;
        }
        let user_id = proof.user_id.ok_or_else(|| {
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

        let scope = resolve_scope(
            &state,
            &proof.scope_req,
            &user_id,
            user,
            now,
            &mut proof.expires_at,
        )?;
        if audience.is_some() {
            if !matches!(scope, TokenScope::Trust(_) | TokenScope::Project(_)) {
                return Err(IdentityError::bad(
                    "Only a trust- or project-scoped token can be bound to one service.",
                ));
            }
            let step = i64::try_from(super::STEP_TOKEN_TTL.as_micros()).unwrap_or(i64::MAX / 2);
            proof.expires_at = proof.expires_at.min(now + step);
        }
        let payload = Payload {
            user_id: user_id.clone(),
            methods: proof.methods,
            scope,
            app_cred_id: proof.app_cred.map(|c| c.id),
            issued_at: now,
            expires_at: proof.expires_at,
            audit_ids: {
                let mut v = vec![rand::random::<[u8; 16]>()];
                v.extend(proof.audit_chain);
                v
            },
            audience,
        };
        // Resolve before counting a trust use, so a refused token costs nothing.
        let ctx = context_from_payload(&state, payload.clone(), now)?;
        if let TokenScope::Trust(tid) = &payload.scope {
            self.use_trust(tid)?;
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

    /// The `password` method: the user it names, if the password is theirs
    /// and not expired. An unknown user costs the same bcrypt time.
    fn password_method(
        &self,
        state: &State,
        pw: &PasswordAuth,
        now: Micros,
    ) -> Result<String, IdentityError> {
        let u = find_user(state, &pw.user);
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
        Ok(u.id.clone())
    }

    /// The `token` method (rescoping): a valid token, neither trust- nor
    /// application-credential-scoped, of the same user as the other methods.
    fn token_method(&self, t: &str, proof: &mut Proof) -> Result<(), IdentityError> {
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
        if proof.user_id.as_deref().is_some_and(|u| u != ctx.user_id) {
            return Err(unauthorized());
        }
        proof.methods |= ctx.payload.methods | token::METHOD_TOKEN;
        proof.expires_at = proof.expires_at.min(ctx.expires_at);
        proof.audit_chain = ctx.payload.audit_ids.last().copied();
        proof.user_id = Some(ctx.user_id.clone());
        Ok(())
    }

    /// Counts one use of trust `tid` (refused once none are left).
    fn use_trust(&self, tid: &str) -> Result<(), IdentityError> {
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
        })
    }
}

/// The `application_credential` method: the secret matches, the credential
/// has not expired, and its project is the only scope it may have.
fn app_cred_method(
    state: &State,
    ac: &AppCredAuth,
    now: Micros,
    proof: &mut Proof,
) -> Result<(), IdentityError> {
    let cred = find_app_cred(state, ac).ok_or_else(unauthorized)?;
    if !ct_eq(
        secret_hash(&ac.secret).as_bytes(),
        cred.secret_hash.as_bytes(),
    ) {
        return Err(unauthorized());
    }
    if cred.expires_at.is_some_and(|e| e <= now) {
        return Err(unauthorized());
    }
    if proof.user_id.as_deref().is_some_and(|u| u != cred.user_id) {
        return Err(unauthorized());
    }
    match &proof.scope_req {
        ScopeRequest::Unscoped => {}
        ScopeRequest::Project { id: Some(p), .. } if *p == cred.project_id => {}
        _ => {
            return Err(IdentityError::Unauthorized(
                "Application credentials cannot request a scope.".into(),
            ))
        }
    }
    proof.scope_req = ScopeRequest::Project {
        id: Some(cred.project_id.clone()),
        name: None,
        domain_id: None,
        domain_name: None,
    };
    proof.methods |= token::METHOD_APP_CRED;
    proof.user_id = Some(cred.user_id.clone());
    if let Some(e) = cred.expires_at {
        proof.expires_at = proof.expires_at.min(e);
    }
    proof.app_cred = Some(cred.clone());
    Ok(())
}

/// The token's scope for `scope_req`: an unscoped request gets the user's
/// default project when they hold a role there; a trust caps `expires_at`.
fn resolve_scope(
    state: &State,
    scope_req: &ScopeRequest,
    user_id: &str,
    user: &User,
    now: Micros,
    expires_at: &mut Micros,
) -> Result<TokenScope, IdentityError> {
    Ok(match scope_req {
        ScopeRequest::Unscoped => match &user.default_project_id {
            Some(p)
                if state.projects.get(p).is_some_and(|p| p.enabled)
                    && !state
                        .effective_role_ids(user_id, &Scope::Project(p.clone()))
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
                *expires_at = (*expires_at).min(e);
            }
            TokenScope::Trust(tid.clone())
        }
    })
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
