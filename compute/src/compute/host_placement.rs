//! What a compute host's records mean in placement, kept in step by the
//! compute API as Nova's API keeps them:
//!
//! - `DELETE /os-services/{id}` deletes the host's resource provider
//!   before its record (Nova deletes the compute node's provider): a
//!   provider left behind would keep offering a host that is gone, and a
//!   host that comes back registers a fresh one.
//! - A host added to (removed from) a host aggregate has the aggregate's
//!   uuid added to (removed from) its provider's placement aggregates, so
//!   that `member_of` in allocation candidates and `openstack resource
//!   provider aggregate list` see it. As in Nova, a placement failure here
//!   is logged and does not undo the compute write (the next registration
//!   of the host puts the missing memberships right).
//!
//! These functions block (placement writes): handlers run them on a
//! blocking thread.

use super::error::{ComputeError, ComputeResult};
use super::{build::claims::ClaimError, build::claims::Claims, os_services, Compute, Ctx};

/// `DELETE /os-services/{id}`: the checks (404, 403, 409 for a host with
/// servers), the provider deleted (409 while it still holds allocations:
/// a build claimed on it a moment ago), then the host's record and its
/// aggregate memberships in one write.
pub fn delete_service(c: &Compute, ctx: &Ctx, id: &str, mv: (u32, u32)) -> ComputeResult<()> {
    let host = c.read_env(|st, env| os_services::deletable(st, env, ctx, id, mv))?;
    if let (Some(p), false) = (c.placement(), host.provider.is_empty()) {
        match p.unregister(&host.provider) {
            Ok(()) => {}
            Err(ClaimError::Conflict(why)) => {
                return Err(ComputeError::Conflict(format!(
                    "Unable to delete compute service {id}: its resource provider {} still has \
                     allocations ({why}).",
                    host.provider
                )))
            }
            Err(ClaimError::Failed(why)) => {
                return Err(ComputeError::Internal(format!(
                    "placement: resource provider {} not deleted: {why}",
                    host.provider
                )))
            }
        }
    }
    c.write(|st, env| os_services::delete(st, env, ctx, id, mv))
}

/// Mirrors host `host` joining (`member`) or leaving aggregate `uuid` into
/// its provider's placement aggregates; a failure is logged (Nova's
/// warning), the compute write stands.
pub fn mirror_membership(c: &Compute, host: &str, uuid: &str, member: bool) {
    let Some(p) = c.placement() else {
        return;
    };
    let Some(provider) = c.snapshot().hosts.get(host).map(|h| h.provider.clone()) else {
        return;
    };
    if provider.is_empty() {
        return;
    }
    if let Err(why) = p.set_member(&provider, uuid, member) {
        tracing::warn!(%host, aggregate = %uuid, member, %why,
            "placement aggregate of the host's provider not updated");
    }
}

/// Adds host `host`'s provider to the placement aggregates of every host
/// aggregate it is in (what `nova-manage placement sync_aggregates` does):
/// a registration puts right what a failed mirror or an older weft left.
pub fn sync_aggregates(c: &Compute, claims: &dyn Claims, host: &str) {
    let st = c.snapshot();
    let Some(provider) = st.hosts.get(host).map(|h| h.provider.clone()) else {
        return;
    };
    for a in st.aggregates.values().filter(|a| a.hosts.contains(host)) {
        if let Err(why) = claims.set_member(&provider, &a.uuid, true) {
            tracing::warn!(%host, aggregate = %a.uuid, %why,
                "placement aggregate of the host's provider not synced");
        }
    }
}
