//! Instance actions (os-instance-actions): one record per request that
//! acted on a server (create, delete, the power actions, lock...), with
//! the events of the work it caused (the build's steps). Records outlive
//! their server: from 2.21 a deleted server's actions are still shown.

use serde::{Deserialize, Serialize};

/// An event of an action: one step of the work, timed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// Nova's event names (`compute__do_build_and_run_instance`, ...).
    pub event: String,
    /// When the step began.
    pub start_time: String,
    /// When it ended (`None` while running).
    pub finish_time: Option<String>,
    /// `Success` or `Error` once ended.
    pub result: Option<String>,
    /// What went wrong (shown to admins only, as Nova's traceback).
    pub traceback: Option<String>,
    /// The compute host the step ran on.
    pub host: Option<String>,
    /// Nova's `details` of a failed step (the fault message).
    pub details: Option<String>,
}

/// An action on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAction {
    /// The server acted on.
    pub server_id: String,
    /// The request's `x-openstack-request-id`.
    pub request_id: String,
    /// `create`, `delete`, `start`, `stop`, `reboot`, ...
    pub action: String,
    /// Who asked.
    pub user_id: String,
    /// The server's project (visibility of the record).
    pub project_id: String,
    /// When it was asked.
    pub start_time: String,
    /// Last change (2.58 `updated_at`).
    pub updated_at: String,
    /// `Error` once an event failed, as Nova sets it.
    pub message: Option<String>,
    /// The steps, in order.
    pub events: Vec<ActionEvent>,
}
