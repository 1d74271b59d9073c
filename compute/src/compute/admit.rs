//! The whole store write of `POST /servers`: the servers [`servers::create`]
//! makes within the project's stored quota, their server group's
//! admission (visible to the caller, room under `server_group_members`),
//! the `metadata_items` quota,
//! and a `create` instance action per server. One write on one revision:
//! concurrent creates are serialised by the store's conditional commit, so
//! together they never pass a quota.

use super::servers::record::Server;
use super::servers::request::CreateServer;
use super::servers::{self, Facts};
use crate::compute::groups;
use crate::compute::instance_actions;
use crate::compute::quotas;
use crate::compute::service::{Ctx, Env, Write};
use crate::compute::state::State;

/// Creates the servers `req` asks for, admitted and recorded.
pub fn create(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &CreateServer,
    facts: &Facts,
    request_id: &str,
) -> Write<Vec<Server>> {
    let project = ctx.project_id.clone().unwrap_or_default();
    quotas::check_metadata(st, &project, req.metadata.len())?;
    let quota = quotas::server_quota(st, &project);
    let (made, mut changes) = servers::create(st, env, ctx, req, facts, quota)?;
    if let Some(g) = &req.group {
        groups::admit(st, ctx, g, made.len() as u64)?;
    }
    changes.extend(
        made.iter()
            .map(|s| instance_actions::record(env, ctx, s, "create", request_id)),
    );
    Ok((made, changes))
}
