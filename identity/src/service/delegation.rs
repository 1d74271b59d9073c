//! Delegation for work done after the user's request has returned (a
//! server's build): the compute service user, the trust a user gives it on
//! their project, the short-lived step tokens the build asks for with that
//! trust, each bound to one service, and the check every API makes of a
//! token's binding.
//!
//! ```text
//!  server create (user token) ─► create_build_trust(user -> compute, project, roles)
//!  each build step            ─► step_token(trust, audience) ─► 5-minute token, one service
//!  every API                  ─► check_audience(ctx, service): refused (enforce) or recorded
//! ```

use super::{new_id, now_micros, AuthContext, AuthRequest, Identity, PasswordAuth, ScopeRequest};
use super::{TokenBinding, UserRef, DEFAULT_DOMAIN_ID};
use crate::error::IdentityError;
use crate::model::*;
use crate::policy::{Record, Scope as RecordScope};
use crate::state::{Scope, State, Tx};
use crate::token::Audience;
use std::path::Path;
use std::time::Duration;

/// How long a build step's token lives: long enough for one step, short
/// enough that one taken from a host is soon worthless.
pub const STEP_TOKEN_TTL: Duration = Duration::from_secs(300);

/// A service user of this deployment (Keystone's `nova` in project
/// `service`): its ids, and the password it authenticates with.
#[derive(Clone)]
pub struct ServiceUser {
    /// The user's id.
    pub user_id: String,
    /// Its name.
    pub name: String,
    /// The `service` project it holds its roles on.
    pub project_id: String,
    password: String,
}

impl std::fmt::Debug for ServiceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceUser")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// The trust a build acts through: from the user who asked for it to the
/// service user, on the server's project, with the roles the build needs.
#[derive(Debug, Clone)]
pub struct BuildTrust {
    /// The user who created the server.
    pub trustor_user_id: String,
    /// The service user.
    pub trustee_user_id: String,
    /// The server's project.
    pub project_id: String,
    /// Role names the build's steps need (from the policy workplan).
    pub roles: Vec<String>,
}

/// The id of the global role `name`, made when missing.
fn global_role(tx: &mut Tx, name: &str) -> String {
    if let Some(r) = tx
        .state
        .roles
        .values()
        .find(|r| r.name == name && r.domain_id.is_none())
    {
        return r.id.clone();
    }
    let id = new_id();
    tx.put_role(Role {
        id: id.clone(),
        name: name.into(),
        domain_id: None,
        description: None,
        options: Default::default(),
    });
    id
}

fn role_names(state: &State, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter_map(|r| state.roles.get(r).map(|r| r.name.clone()))
        .collect()
}

impl Identity {
    /// Makes sure service user `name` exists in project `service` of the
    /// default domain and holds `roles` there (Keystone deployments make
    /// `nova` so). Its password lives in `password_file` (mode 0600): made
    /// with the user, and made again (the user's password reset) when the
    /// file is gone. Idempotent. Blocking.
    pub fn ensure_service_user(
        &self,
        name: &str,
        roles: &[String],
        password_file: &Path,
    ) -> Result<ServiceUser, IdentityError> {
        let existing = self
            .snapshot()
            .user_by_name(DEFAULT_DOMAIN_ID, name)
            .map(|u| u.id.clone());
        let kept = std::fs::read_to_string(password_file)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        let (password, new_hash) = match (&existing, kept) {
            (Some(_), Some(p)) => (p, None),
            (_, kept) => {
                let pw = kept.unwrap_or_else(|| {
                    use rand::Rng;
                    rand::thread_rng()
                        .sample_iter(&rand::distributions::Alphanumeric)
                        .take(32)
                        .map(char::from)
                        .collect()
                });
                write_secret(password_file, &pw)?;
                let h = self.hash_password(&pw)?;
                (pw, Some(h))
            }
        };
        let now = now_micros();
        let (user_id, project_id) = self.write(|tx| {
            let project_id = match tx
                .state
                .projects
                .values()
                .find(|p| p.name == "service" && p.domain_id == DEFAULT_DOMAIN_ID)
            {
                Some(p) => p.id.clone(),
                None => {
                    let id = new_id();
                    tx.put_project(Project {
                        id: id.clone(),
                        name: "service".into(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        parent_id: None,
                        description: "Service users of this deployment.".into(),
                        enabled: true,
                        tags: vec![],
                        extra: Default::default(),
                    });
                    id
                }
            };
            let user = tx.state.user_by_name(DEFAULT_DOMAIN_ID, name).cloned();
            let user_id = match (user, &new_hash) {
                (Some(u), None) => u.id,
                (found, Some(h)) => {
                    let mut u = found.unwrap_or_else(|| User {
                        id: new_id(),
                        name: name.into(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        enabled: true,
                        password_hash: None,
                        password_created_at: None,
                        password_expires_at: None,
                        default_project_id: Some(project_id.clone()),
                        description: Some("weft's compute service".into()),
                        options: Default::default(),
                        extra: Default::default(),
                    });
                    u.password_hash = Some(h.clone());
                    u.password_created_at = Some(now);
                    let id = u.id.clone();
                    tx.put_user(u);
                    id
                }
                (None, None) => {
                    return Err(IdentityError::conflict(format!(
                        "the {name} user was deleted while it was being set up; start again"
                    )))
                }
            };
            for role in roles {
                let a = Assignment {
                    actor: Actor::User(user_id.clone()),
                    target: Target::Project(project_id.clone()),
                    role_id: global_role(tx, role),
                    inherited: false,
                };
                if !tx.state.assignments.contains_key(&a.key()) {
                    tx.put_assignment(a);
                }
            }
            Ok((user_id, project_id))
        })?;
        Ok(ServiceUser {
            user_id,
            name: name.into(),
            project_id,
            password,
        })
    }

    /// Records the trust a build acts through; its id. The trustor must
    /// hold every role on the project (else 403 naming the role).
    pub fn create_build_trust(&self, t: &BuildTrust) -> Result<String, IdentityError> {
        let id = new_id();
        self.write(|tx| {
            let held = tx
                .state
                .held_role_ids(&t.trustor_user_id, &Scope::Project(t.project_id.clone()));
            let mut role_ids = Vec::new();
            for name in &t.roles {
                let rid = tx
                    .state
                    .roles
                    .values()
                    .find(|r| r.name == *name && r.domain_id.is_none())
                    .filter(|r| held.contains(&r.id))
                    .map(|r| r.id.clone())
                    .ok_or_else(|| {
                        IdentityError::Forbidden(format!(
                            "Builds act through a trust to the compute service holding roles [{}] \
                             on project {}; user {} does not hold role {name} there.",
                            t.roles.join(", "),
                            t.project_id,
                            t.trustor_user_id
                        ))
                    })?;
                role_ids.push(rid);
            }
            tx.put_trust(Trust {
                id: id.clone(),
                trustor_user_id: t.trustor_user_id.clone(),
                trustee_user_id: t.trustee_user_id.clone(),
                project_id: Some(t.project_id.clone()),
                role_ids: role_ids.clone(),
                impersonation: false,
                expires_at: None,
                remaining_uses: None,
                allow_redelegation: false,
                redelegation_count: 0,
                redelegated_trust_id: None,
            });
            Ok(())
        })?;
        Ok(id)
    }

    /// Deletes trust `id` and revokes the tokens made with it; gone already is fine.
    pub fn delete_build_trust(&self, id: &str) -> Result<(), IdentityError> {
        let now = now_micros();
        self.write(|tx| {
            if tx.state.trusts.contains_key(id) {
                tx.del_trust(id);
                crate::ops::revoke_trust(tx, id, now);
            }
            Ok(())
        })
    }

    /// A build step's token for `user`, bound to `audience`: scoped to
    /// `trust` (work on a user's behalf), or to the service user's own
    /// project when `None`. The user authenticates with its password, as a
    /// remote agent would. A trust the trustor can no longer back is
    /// refused naming the trust and the role.
    pub fn step_token(
        &self,
        user: &ServiceUser,
        trust: Option<&str>,
        audience: Audience,
    ) -> Result<String, IdentityError> {
        if let Some(tid) = trust {
            self.check_build_trust(tid)?;
        }
        let req = AuthRequest {
            password: Some(PasswordAuth {
                user: UserRef {
                    id: Some(user.user_id.clone()),
                    ..UserRef::default()
                },
                password: user.password.clone(),
            }),
            scope: match trust {
                Some(t) => ScopeRequest::Trust(t.to_string()),
                None => ScopeRequest::Project {
                    id: Some(user.project_id.clone()),
                    name: None,
                    domain_id: None,
                    domain_name: None,
                },
            },
            ..AuthRequest::default()
        };
        let (token, _) = self.issue(&req, Some(audience))?;
        Ok(token)
    }

    /// Why trust `tid` can no longer be used, in words that name it and the
    /// role its trustor lost (a token request would only say 401).
    fn check_build_trust(&self, tid: &str) -> Result<(), IdentityError> {
        let state = self.snapshot();
        let t = state
            .trusts
            .get(tid)
            .ok_or_else(|| IdentityError::Unauthorized(format!("Trust {tid} no longer exists.")))?;
        let Some(p) = &t.project_id else {
            return Ok(());
        };
        let held = state.held_role_ids(&t.trustor_user_id, &Scope::Project(p.clone()));
        let lost: Vec<String> = role_names(
            &state,
            &t.role_ids
                .iter()
                .filter(|r| !held.contains(*r))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if lost.is_empty() {
            return Ok(());
        }
        Err(IdentityError::Unauthorized(format!(
            "Trust {tid} is no longer backed: its trustor {} no longer holds role {} on project {p}.",
            t.trustor_user_id,
            lost.join(", ")
        )))
    }

    /// Whether `ctx`'s token may be used on `service` (a catalog type:
    /// `identity`, `network`, `image`, ...). A token bound to another
    /// service is refused (401) under [`TokenBinding::Enforce`]; under
    /// [`TokenBinding::Permissive`] it passes and the refusal is recorded.
    pub fn check_audience(&self, ctx: &AuthContext, service: &str) -> Result<(), IdentityError> {
        let Some(aud) = ctx.audience else {
            return Ok(());
        };
        if aud.as_str() == service {
            return Ok(());
        }
        let trust = ctx.trust.as_ref().map(|t| t.id.as_str()).unwrap_or("-");
        if let (TokenBinding::Permissive, Some(rec)) =
            (self.cfg.token_binding, &self.binding_records)
        {
            let creds = ctx.credentials();
            rec.push(Record {
                action: format!("{service}:token_audience"),
                rule: format!("audience:{aud}"),
                user_id: ctx.user_id.clone(),
                user_domain_id: Some(ctx.user_domain_id.clone()),
                roles: ctx.roles.clone(),
                scope: RecordScope::of(&creds),
                target: [
                    ("audience".to_string(), aud.to_string()),
                    ("service".to_string(), service.to_string()),
                    ("trust_id".to_string(), trust.to_string()),
                ]
                .into(),
                would_satisfy: vec![],
                would_satisfy_system: vec![],
            });
            return Ok(());
        }
        Err(IdentityError::Unauthorized(format!(
            "This token is bound to the {aud} service (a build step's token, trust {trust}) \
             and cannot be used on the {service} API."
        )))
    }
}

/// Writes `secret` to `path`, readable by its owner only.
fn write_secret(path: &Path, secret: &str) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{secret}\n").as_bytes())?;
    Ok(())
}
