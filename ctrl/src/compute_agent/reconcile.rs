//! `POST /compute/agent/v1/hosts/{host}/reconcile`: a remote compute host
//! back from a restart says which domains its driver runs; ctrl fixes its
//! records by the rules of its in-process host
//! (`weft_compute::compute::build::reconcile`) and answers the orphans,
//! the domains whose server was deleted (or moved) while the host was down,
//! for the host to destroy. The wire types are in
//! `weft_proto::compute_reconcile`.

use super::{agent_only, blocking, AgentApi};
use axum::extract::{Path, State};
use axum::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_compute::compute::build::{reconcile, Observed};
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_proto::compute_reconcile::{DomainState, HostDomains, Reconciled};

fn observed(s: DomainState) -> Observed {
    match s {
        DomainState::Running => Observed::Running,
        DomainState::Shutoff => Observed::Shutoff,
        DomainState::Paused => Observed::Paused,
        DomainState::Suspended => Observed::Suspended,
    }
}

/// The handler: 404 for a host ctrl does not know (it registers first; a
/// host ctrl never knew has no domain ctrl could call an orphan).
pub(crate) async fn reconcile_h(
    State(api): State<Arc<AgentApi>>,
    caller: super::Caller,
    Path(host): Path<String>,
    Json(d): Json<HostDomains>,
) -> ComputeResult<Json<Reconciled>> {
    agent_only(&caller)?;
    blocking(move || {
        if !api.compute.snapshot().hosts.contains_key(&host) {
            return Err(ComputeError::NotFound(format!(
                "Compute host {host} could not be found."
            )));
        }
        if api.compute.builds().spawner(&host).is_some() {
            return Err(ComputeError::Conflict(format!(
                "Compute host {host} is run by the controller itself."
            )));
        }
        let seen: BTreeMap<String, Observed> = d
            .domains
            .into_iter()
            .map(|(id, s)| (id, observed(s)))
            .collect();
        let orphans = reconcile::reconcile(&api.compute, &host, &seen);
        for o in &orphans {
            tracing::warn!(server = %o, %host, "reconcile: a domain no server of the host owns");
        }
        // ERROR servers and teardowns the fixes made wait for the loop.
        api.compute.builds().kick();
        Ok(Json(Reconciled { orphans }))
    })
    .await
}
