//! A remote host back from a restart (even kill -9) reconciles before it
//! takes work: it lists its driver's weft domains, ctrl fixes its records
//! by them and answers the orphans (servers deleted while the host was
//! down: ctrl deleted them alone), and the host destroys those, disks and
//! all. A domain ctrl still expects is left as it is: never started again,
//! never redefined. A server whose domain is gone is ctrl's to report
//! (ERROR), as for its in-process host. Downloads the stop cut off leave
//! temporary files in the image cache; those go first.

use super::{bad, RemoteCompute};
use crate::client::AgentError;
use hyper::Method;
use weft_hypervisor::PowerState;
use weft_proto::compute_reconcile::{DomainState, HostDomains, Reconciled};

/// The wire state of a listed domain (a crashed guest is a stopped one to
/// ctrl, as in-process); None for one that went between list and look.
fn domain_state(p: PowerState) -> Option<DomainState> {
    match p {
        PowerState::Running => Some(DomainState::Running),
        PowerState::Shutoff | PowerState::Crashed => Some(DomainState::Shutoff),
        PowerState::Paused => Some(DomainState::Paused),
        PowerState::Suspended => Some(DomainState::Suspended),
        PowerState::Absent => None,
    }
}

impl RemoteCompute {
    /// One reconcile: Ok(the orphans destroyed). An orphan that would not
    /// go is an error, so the whole reconcile is tried again.
    pub(super) async fn reconcile(&self) -> Result<Vec<String>, AgentError> {
        // Nothing is being fetched yet: a temporary file is a dead one's.
        let compute = self.compute.clone();
        match tokio::task::spawn_blocking(move || compute.sweep_image_cache()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(files = n, "removed cut-off image downloads"),
            Ok(Err(e)) => tracing::warn!(error = %e, "image cache not swept"),
            Err(e) => tracing::warn!(error = %e, "image cache not swept"),
        }
        let compute = self.compute.clone();
        let listed = tokio::task::spawn_blocking(move || compute.driver().list())
            .await
            .map_err(|e| AgentError::Local(e.to_string()))?
            .map_err(|e| AgentError::Local(format!("list domains: {e}")))?;
        let domains = HostDomains {
            domains: listed
                .into_iter()
                .filter_map(|(u, p)| Some((u.to_string(), domain_state(p)?)))
                .collect(),
        };
        let body = serde_json::to_value(&domains).map_err(|e| bad("reconcile", e))?;
        let r = self
            .ctrl
            .call(
                Method::POST,
                &self.path("/reconcile"),
                Some(body),
                "reconcile",
            )
            .await?;
        let ans: Reconciled = serde_json::from_slice(&r.body).map_err(|e| bad("reconcile", e))?;
        for id in &ans.orphans {
            if !domains.domains.contains_key(id) {
                // ctrl names only what it was told of; anything else is
                // not this host's to destroy.
                continue;
            }
            tracing::warn!(server = %id, "reconcile: destroying a domain no server owns");
            let (compute, sid) = (self.compute.clone(), id.clone());
            tokio::task::spawn_blocking(move || compute.destroy(&sid))
                .await
                .map_err(|e| AgentError::Local(e.to_string()))?
                .map_err(|e| AgentError::Local(format!("orphan {id} not destroyed: {e}")))?;
        }
        tracing::info!(
            domains = domains.domains.len(),
            orphans = ans.orphans.len(),
            "compute host reconciled"
        );
        Ok(ans.orphans)
    }
}
