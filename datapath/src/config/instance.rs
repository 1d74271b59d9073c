//! `[port.metadata]`: what the switch's metadata service knows of the instance behind a
//! port. A config type (the metadata service reads it; the config owns it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the metadata service knows of the instance behind a port: `[port.metadata]` in the
/// switch config, filled by the agent from what ctrl sends (today the port's device_id and
/// name; key, user data and metadata once compute sets them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceMetadata {
    /// The instance's id (Nova's uuid; the port's device_id until compute exists). Also the
    /// EC2 `instance-id`.
    pub uuid: String,
    /// Its display name.
    #[serde(default)]
    pub name: String,
    /// Its host name.
    #[serde(default)]
    pub hostname: String,
    /// Availability zone; empty: `nova`, Nova's default.
    #[serde(default)]
    pub availability_zone: String,
    /// Owning project.
    #[serde(default)]
    pub project_id: String,
    /// Index of the instance within a multi-instance boot.
    #[serde(default)]
    pub launch_index: u32,
    /// Key pair name -> OpenSSH public key (`public_keys`, EC2 `public-keys/`).
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// Server metadata (`meta`).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// User data, base64 as Nova takes it; None: `user_data` is 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}
