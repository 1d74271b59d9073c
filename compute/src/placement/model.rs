//! The records placement keeps: providers (with their inventories, traits
//! and aggregates, which all move the provider's generation), consumers
//! (with their allocations, which move the consumer's generation), and the
//! custom resource classes and traits operators add.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The largest integer Placement accepts for totals and units (its schema's
/// 32-bit signed maximum).
pub const MAX_INT: u64 = 2_147_483_647;

/// How much of one resource class a provider has, and how it may be cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Units there are.
    pub total: u64,
    /// Units held back from allocation (the host's own use).
    pub reserved: u64,
    /// The smallest allocation of this class.
    pub min_unit: u64,
    /// The largest allocation of this class.
    pub max_unit: u64,
    /// Allocations are multiples of this.
    pub step_size: u64,
    /// Overcommit: capacity is `(total - reserved) * allocation_ratio`.
    pub allocation_ratio: f64,
}

impl Inventory {
    /// An inventory of `total` with Placement's defaults for the rest.
    pub fn with_total(total: u64) -> Inventory {
        Inventory {
            total,
            reserved: 0,
            min_unit: 1,
            max_unit: MAX_INT,
            step_size: 1,
            allocation_ratio: 1.0,
        }
    }

    /// What allocations may add up to, as Placement computes it (truncated).
    pub fn capacity(&self) -> u64 {
        // f64 holds every u64 below 2^53 exactly; totals stop at 2^31.
        (self.total.saturating_sub(self.reserved) as f64 * self.allocation_ratio) as u64
    }

    /// Whether one allocation of `amount` respects min/max/step.
    // `u64::is_multiple_of` is newer than the workspace's rust-version (1.85).
    #[allow(clippy::manual_is_multiple_of)]
    pub fn fits_unit(&self, amount: u64) -> bool {
        amount >= self.min_unit
            && amount <= self.max_unit
            && self.step_size > 0
            && amount % self.step_size == 0
    }
}

/// A resource provider: a compute host, a NUMA node, a shared disk pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// Its id.
    pub uuid: String,
    /// Unique among providers.
    pub name: String,
    /// Moves on every change of the provider, its inventory, traits,
    /// aggregates or allocations against it: writers send the one they read.
    pub generation: u64,
    /// The provider this one is nested under, if any.
    pub parent: Option<String>,
    /// The top of its tree (itself when it has no parent).
    pub root: String,
    /// Resource class -> inventory.
    pub inventories: BTreeMap<String, Inventory>,
    /// Trait names.
    pub traits: BTreeSet<String>,
    /// Aggregate uuids.
    pub aggregates: BTreeSet<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Who holds allocations: an instance, a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// Its id (Nova's instance or migration uuid).
    pub uuid: String,
    /// The project it counts against.
    pub project_id: String,
    /// The user it counts against.
    pub user_id: String,
    /// Moves on every change of its allocations (microversion 1.28).
    pub generation: u64,
    /// `INSTANCE`, `MIGRATION`, ... (microversion 1.38); `None`: unknown.
    pub consumer_type: Option<String>,
    /// Provider uuid -> resource class -> amount.
    pub allocations: BTreeMap<String, BTreeMap<String, u64>>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}
