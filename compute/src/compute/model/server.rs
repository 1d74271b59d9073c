//! A server as stored: what was asked for, where it runs, and its states.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nova's `vm_state` values a server of weft passes through.
pub mod vm_state {
    /// Being built (scheduled, claimed, spawned).
    pub const BUILDING: &str = "building";
    /// Running.
    pub const ACTIVE: &str = "active";
    /// Powered off.
    pub const STOPPED: &str = "stopped";
    /// Failed; `fault` says why.
    pub const ERROR: &str = "error";
    /// Resized, waiting for confirm or revert (status VERIFY_RESIZE).
    pub const RESIZED: &str = "resized";
    /// Deleted: only tombstones have it (status DELETED).
    pub const DELETED: &str = "deleted";
}

/// The flavor as it was when the server was created (Nova keeps a copy: a
/// later flavor change or delete does not resize running servers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlavorCopy {
    /// The flavor's id then.
    pub id: String,
    /// Its name (`original_name` from 2.47).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// MiB.
    pub ram: u64,
    /// Root disk GiB.
    pub disk: u64,
    /// Ephemeral GiB.
    pub ephemeral: u64,
    /// Swap MiB.
    pub swap: u64,
    /// Its extra specs then.
    pub extra_specs: BTreeMap<String, String>,
}

/// One network the create request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRequest {
    /// `uuid`: a network to make a port on.
    pub network: Option<String>,
    /// `port`: an existing port to use.
    pub port: Option<String>,
    /// `fixed_ip`: the v4 or v6 address wanted on `network`.
    pub fixed_ip: Option<String>,
}

/// Why a server is in ERROR (Nova's `fault`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// HTTP-like code: 500 for build failures (as Nova), 400s for bad asks.
    pub code: u16,
    /// E.g. "No valid host was found. ...".
    pub message: String,
    /// When.
    pub created: String,
}

/// A server record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Display name (not unique).
    pub name: String,
    /// Owner project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// The flavor copy.
    pub flavor: FlavorCopy,
    /// The image it boots from.
    pub image_ref: String,
    /// Key pair name, and the public key then (what metadata serves).
    pub key_name: Option<String>,
    /// The key pair's public key at create time.
    pub public_key: Option<String>,
    /// Base64 user data, as given.
    pub user_data: Option<String>,
    /// Free key/value metadata.
    pub metadata: BTreeMap<String, String>,
    /// Security group names asked for.
    pub security_groups: Vec<String>,
    /// Networks asked for (`networks: "auto"` / `"none"` become empty with
    /// the choice kept in `auto_network`).
    pub nics: Vec<NicRequest>,
    /// `networks: "auto"` (or none given before 2.37): one network of the
    /// project is picked at build time.
    pub auto_network: bool,
    /// Availability zone asked for, or where it landed.
    pub availability_zone: Option<String>,
    /// The host an admin named in `zone:host` (Nova's forced host): the
    /// scheduler considers no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_host: Option<String>,
    /// Server group from the `group` scheduler hint.
    pub server_group: Option<String>,
    /// Position in a multi-create (`OS-EXT-SRV-ATTR:launch_index`).
    pub launch_index: u32,
    /// Shared by the servers of one multi-create.
    pub reservation_id: String,
    /// Nova's vm_state (see [`vm_state`]).
    pub vm_state: String,
    /// Nova's task_state (`scheduling`, `spawning`, `deleting`, ...).
    pub task_state: Option<String>,
    /// 0 no state, 1 running, 3 paused, 4 shutdown, 7 suspended.
    pub power_state: u8,
    /// The compute host once scheduled.
    pub host: Option<String>,
    /// The placement consumer holding its allocation (its own id).
    pub allocated: bool,
    /// Set with vm_state error.
    pub fault: Option<Fault>,
    /// Port ids the build uses (made by compute or given).
    pub ports: Vec<String>,
    /// Ports compute made itself, deleted with the server.
    pub created_ports: Vec<String>,
    /// `addresses` as shown: network name -> [(addr, version, mac)].
    pub addresses: BTreeMap<String, Vec<(String, u8, String)>>,
    /// Created, updated, launched (RFC 3339).
    pub created: String,
    /// Last change.
    pub updated: String,
    /// When it first went active.
    pub launched_at: Option<String>,
    /// Tags (2.26).
    pub tags: Vec<String>,
    /// Free text (2.19).
    pub description: Option<String>,
    /// Locked against non-admin actions.
    pub locked: bool,
    /// The libvirt domain name on the host (`OS-EXT-SRV-ATTR:instance_name`).
    pub instance_name: String,
    /// Hostname the guest gets (`OS-EXT-SRV-ATTR:hostname`, 2.3).
    pub hostname: String,
    /// The trust its build acts through (the routing slip, see
    /// `build::trusts`); `None` for a server made without delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_id: Option<String>,
    /// A resize waiting to be confirmed or reverted (absent in records
    /// written before resize existed).
    #[serde(default)]
    pub migration: Option<Migration>,
    /// The image a `createImage` in progress uploads to.
    #[serde(default)]
    pub pending_image: Option<String>,
}

/// A resize in progress (Nova's migration record, same-host only): the
/// placement consumer that holds the old flavor's resources until the
/// resize is confirmed, and the state to go back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The migration's uuid: its placement consumer.
    pub id: String,
    /// The flavor before the resize (what revert restores).
    pub old_flavor: FlavorCopy,
    /// The flavor asked for.
    pub new_flavor: FlavorCopy,
    /// vm_state before (active or stopped): where confirm and revert end.
    pub prior_vm_state: String,
    /// Whether the old flavor's resources are held by the migration consumer yet.
    pub moved: bool,
}

impl Server {
    /// Nova's status, derived from vm_state and task_state as Nova does.
    pub fn status(&self) -> &'static str {
        match self.task_state.as_deref() {
            Some("rebuilding") if self.vm_state != vm_state::ERROR => return "REBUILD",
            Some("resize_prep" | "resize_migrating" | "resize_finish") => return "RESIZE",
            Some("resize_reverting") => return "REVERT_RESIZE",
            _ => {}
        }
        match self.vm_state.as_str() {
            vm_state::BUILDING => "BUILD",
            vm_state::ACTIVE => match self.task_state.as_deref() {
                Some("rebooting") => "REBOOT",
                Some("rebooting_hard") => "HARD_REBOOT",
                Some("rebuilding") => "REBUILD",
                _ => "ACTIVE",
            },
            vm_state::STOPPED => "SHUTOFF",
            "paused" => "PAUSED",
            "suspended" => "SUSPENDED",
            vm_state::RESIZED => "VERIFY_RESIZE",
            vm_state::ERROR => "ERROR",
            vm_state::DELETED => "DELETED",
            _ => "UNKNOWN",
        }
    }
}
