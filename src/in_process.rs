//! The agent's [`Ctrl`] over the in-process networking service, for `weft serve`.
//! It lives in the root package, where the agent and ctrl meet, so that neither
//! crate depends on the other.

use std::sync::Arc;
use std::time::Duration;
use weft_agent::{AgentError, Ctrl};
use weft_ctrl::networking::{HostState, NetResult, Networking};

/// The in-process protocol of `weft serve`: the agent's calls made directly on the
/// networking service.
pub struct LocalCtrl {
    pub net: Arc<Networking>,
    pub host: String,
    /// This host's tunnel endpoint, registered at start.
    pub tunnel_ip: Option<String>,
}

impl LocalCtrl {
    /// Runs a blocking service call (a commit) off the async workers.
    async fn blocking(
        &self,
        f: impl FnOnce(&Networking) -> NetResult<()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let net = self.net.clone();
        match tokio::task::spawn_blocking(move || f(&net)).await {
            Ok(r) => r.map_err(|e| AgentError::Local(e.to_string())),
            Err(e) => Err(AgentError::Local(format!("blocking task failed: {e}"))),
        }
    }
}

impl Ctrl for LocalCtrl {
    async fn register(&self) -> Result<(), AgentError> {
        let (host, ip) = (self.host.clone(), self.tunnel_ip.clone());
        self.blocking(move |net| net.register_tunnel(&host, ip.as_deref()))
            .await
    }

    async fn state(&self, since: u64, wait: Duration) -> Result<HostState, AgentError> {
        Ok(self.net.wait_host_state(&self.host, since, wait).await)
    }

    async fn report(&self, statuses: &[(String, String)]) -> Result<(), AgentError> {
        let (host, statuses) = (self.host.clone(), statuses.to_vec());
        self.blocking(move |net| net.report_status(&host, &statuses))
            .await
    }
}
