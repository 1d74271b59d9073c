//! Builds act through trusts: at `server create` the caller gives the
//! compute service user a trust on the server's project, with the roles
//! the build's steps need; the trust id travels with the server record
//! (its routing slip), each step asks for a short-lived token bound to one
//! service with it, and the trust goes when the last server made with it
//! does. The user's own token is never used after create, so it may expire
//! or be revoked mid-build; removing the user's role stops the build.
//!
//! ```text
//!  POST /servers ─► Delegation::create_trust(caller) ─► Server{trust_id} (one write)
//!  build step    ─► Delegation::token(trust_id, audience) ─► the service's own checks
//!  record gone   ─► Delegation::delete_trust (no other server holds it)
//! ```

use crate::compute::servers::record::Server;
use crate::compute::service::{Env, Write};
use crate::compute::state::{Change, State};
use crate::compute::{Compute, ComputeError, ComputeResult, Ctx};
use std::sync::Arc;
use weft_identity::policy::Credentials;
use weft_identity::token::Audience;

/// Identity, as builds use it (`weft serve` implements it over its own
/// identity service and compute service user).
pub trait Delegation: Send + Sync {
    /// Records a trust from `trustor` to the compute service user on the
    /// trustor's project, with the build's roles; its id. `Err` says why
    /// (the trustor lacks a role), for a 403.
    fn create_trust(&self, trustor: &Credentials) -> Result<String, String>;
    /// Deletes the trust (and revokes its tokens); gone already is fine.
    fn delete_trust(&self, trust_id: &str) -> Result<(), String>;
    /// A short-lived token bound to `audience`: trust-scoped with `trust`
    /// (work on the user's behalf), or the compute service's own with `None`
    /// (its own work: port binding, placement claims).
    fn token(&self, trust: Option<&str>, audience: Audience) -> Result<String, String>;
}

/// Runs `create` (server create's write) with a trust from the caller
/// recorded first and stamped on every server it makes, in the same write:
/// the build loop never sees a server without its trust. Without
/// delegation (a compute service alone, in tests) servers carry none. A
/// failed write deletes the trust again.
pub async fn create_with_trust(
    c: &Arc<Compute>,
    ctx: &Ctx,
    mut create: impl FnMut(&State, &mut Env) -> Write<Vec<Server>> + Send + 'static,
) -> ComputeResult<Vec<Server>> {
    let trust = match c.delegation() {
        Some(d) => {
            let creds = ctx.creds.clone();
            let t = tokio::task::spawn_blocking(move || d.create_trust(&creds))
                .await
                .map_err(|e| ComputeError::Internal(e.to_string()))?;
            Some(t.map_err(ComputeError::Forbidden)?)
        }
        None => None,
    };
    let stamp = trust.clone();
    let made = c
        .write_async(move |st, env| {
            let (mut made, mut changes) = create(st, env)?;
            for s in &mut made {
                s.trust_id.clone_from(&stamp);
            }
            // The servers' own changes carry the stamp; any other change
            // the create makes passes as it is.
            for ch in &mut changes {
                if let Change::Server(s) = ch {
                    s.trust_id.clone_from(&stamp);
                }
            }
            Ok((made, changes))
        })
        .await;
    if made.is_err() {
        if let (Some(d), Some(t)) = (c.delegation(), trust) {
            let _ = tokio::task::spawn_blocking(move || d.delete_trust(&t)).await;
        }
    }
    made
}

/// After `gone`'s record is removed: its trust is deleted unless another
/// server made by the same request still holds it. Blocking.
pub fn release(c: &Compute, gone: &Server) {
    let (Some(d), Some(t)) = (c.delegation(), gone.trust_id.as_deref()) else {
        return;
    };
    let shared = c
        .snapshot()
        .servers
        .values()
        .any(|s| s.id != gone.id && s.trust_id.as_deref() == Some(t));
    if shared {
        return;
    }
    if let Err(why) = d.delete_trust(t) {
        tracing::warn!(server = %gone.id, trust = t, %why, "trust not deleted");
    }
}
