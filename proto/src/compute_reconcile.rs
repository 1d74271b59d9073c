//! A remote compute host's reconcile at start (`weft agent --compute-driver`):
//!
//! ```text
//!   agent ── POST /compute/agent/v1/hosts/{host}/reconcile  HostDomains ─► ctrl
//!         ◄─────────────────────────────────────────────── Reconciled ──  (records fixed)
//!   agent: destroys each orphan domain (its server is gone or elsewhere)
//! ```
//!
//! The host says what its driver runs; ctrl puts its records right by the
//! same rules as its in-process host (a build cut off goes ERROR, a domain
//! found stopped makes the server SHUTOFF, one gone makes it ERROR) and
//! answers which domains no server of the host owns. Nothing running is
//! started again: the domains ctrl expects are left alone.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A domain's state as the host's driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    /// Running guest code.
    Running,
    /// Defined, not running (or crashed).
    Shutoff,
    /// Paused in memory.
    Paused,
    /// Saved to disk.
    Suspended,
}

/// Every weft domain on the host, by server id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDomains {
    /// Server id -> its domain's state.
    pub domains: BTreeMap<String, DomainState>,
}

/// ctrl's answer: the domains to destroy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// Server ids whose domains no server of this host owns.
    pub orphans: Vec<String>,
}
