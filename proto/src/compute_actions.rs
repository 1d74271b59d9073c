//! Actions on a remote host's running servers (power, rebuild, resize,
//! createImage, os-interface) and its console output, as its agent reads
//! them from `ComputeWork` and reports them:
//!
//! ```text
//!   agent ── GET  .../work ◄── ComputeWork{actions, consoles, interfaces}   (from task states)
//!   agent ── POST .../servers/{id}/acted       ActionReport ─────► ctrl runs the finish code
//!   agent ── POST .../consoles/{request}       ConsoleReport ────► ctrl stores the answer
//!   agent ── POST .../interfaces/{request}     InterfaceReport ──► ctrl records the attachment
//! ```
//!
//! Every item is derived from stored state (the server's task state, a
//! stored console or interface request), so any ctrl replica hands it out
//! and any replica takes the report; the agent keeps no queue of its own.

use serde::{Deserialize, Serialize};

/// What the host's driver must do for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostAction {
    /// A power action, named by Nova's task state (`powering-off`, ...).
    Power,
    /// A fresh root disk from `image_id`, booted again; powered off again
    /// when the server was stopped.
    Rebuild {
        /// The image now.
        image_id: String,
        /// Root disk GiB of its flavor.
        root_gb: u64,
        /// Stopped before the rebuild.
        stopped: bool,
    },
    /// The domain redefined with these sizes (resize, or revert).
    Resize {
        /// vCPUs.
        vcpus: u32,
        /// MiB.
        memory_mb: u64,
        /// GiB the root disk grows to (never shrinks; 0: as it is).
        #[serde(default)]
        root_gb: u64,
    },
    /// The root disk flattened and uploaded (as the user, with a step
    /// token through the trust) as the data of queued image `image_id`.
    Snapshot {
        /// The image made by the API.
        image_id: String,
    },
}

/// An action ctrl recorded for a server of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOrder {
    /// The server.
    pub server_id: String,
    /// Its task state: the report names it, so a late report of an earlier
    /// action cannot finish a later one.
    pub task_state: String,
    /// The driver's part.
    pub action: HostAction,
}

/// How the host's part of an action ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    /// The task state of the order carried out.
    pub task_state: String,
    /// None: done; else why it failed.
    pub fault: Option<String>,
}

/// A console output request (`os-getConsoleOutput`) for a server of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOrder {
    /// The request's id (the report's path).
    pub request_id: String,
    /// The server.
    pub server_id: String,
    /// The last `lines` lines; all with None.
    pub lines: Option<usize>,
}

/// The host's answer to a [`ConsoleOrder`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleReport {
    /// The output, or
    pub output: Option<String>,
    /// why there is none.
    pub fault: Option<String>,
}

/// An os-interface attach or detach for a server of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceOrder {
    /// The request's id (the report's path).
    pub request_id: String,
    /// The server.
    pub server_id: String,
    /// Its project (a port made here is the project's).
    pub project_id: String,
    /// Its hostname (a port made here is named after it).
    pub hostname: String,
    /// True: attach; false: detach `port_id`.
    pub attach: bool,
    /// The port to take (attach) or let go (detach).
    pub port_id: Option<String>,
    /// The network to make a port on (attach).
    pub network_id: Option<String>,
    /// The address wanted on it.
    pub fixed_ip: Option<String>,
    /// Security group ids of a port made here (None: the project's default).
    pub security_groups: Option<Vec<String>>,
    /// The port's MAC (detach: the NIC to unplug).
    pub mac: Option<String>,
}

/// The host's answer to an [`InterfaceOrder`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceReport {
    /// The port attached (attach).
    pub port_id: Option<String>,
    /// Made for this attach (deleted with the server).
    pub created: bool,
    /// Why it failed (409 to the caller, as Nova's).
    pub fault: Option<String>,
}
