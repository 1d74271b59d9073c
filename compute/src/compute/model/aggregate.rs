//! Host aggregates (os-aggregates): named sets of compute hosts with
//! metadata. The scheduler reads them twice: an aggregate's
//! `availability_zone` key puts its hosts in that zone, and its other keys
//! are what `aggregate_instance_extra_specs:` flavor specs must match.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The metadata key that makes an aggregate an availability zone.
pub const ZONE_KEY: &str = "availability_zone";

/// A host aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Nova's integer id (the URL's `{aggregate_id}`), never reused.
    pub id: u64,
    /// Shown from 2.41.
    pub uuid: String,
    /// Unique among aggregates.
    pub name: String,
    /// Member host names.
    pub hosts: BTreeSet<String>,
    /// Key -> value; [`ZONE_KEY`] among them when it is a zone.
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once changed.
    pub updated_at: Option<String>,
}

impl Aggregate {
    /// The zone it makes of its hosts, if any.
    pub fn zone(&self) -> Option<&str> {
        self.metadata.get(ZONE_KEY).map(String::as_str)
    }
}
