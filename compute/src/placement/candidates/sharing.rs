//! Sharing providers: a provider with the trait `MISC_SHARES_VIA_AGGREGATE`
//! lends its inventory (shared storage's DISK_GB, a routed network's
//! IPV4_ADDRESS) to every tree it shares an aggregate with.
//!
//! Placement calls those trees the sharing provider's *anchors*: the roots
//! of every provider in one of its aggregates. A candidate is built per
//! anchor tree, so a compute node without local disk becomes a candidate
//! with its DISK_GB drawn from the shared pool, and only on trees the pool
//! is aggregated with. A sharing provider in no aggregate shares with no
//! one (it still serves its own tree like any other provider).

use crate::placement::model::Provider;
use crate::placement::state::State;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The trait that marks a provider whose inventory is shared by aggregate.
pub const SHARES_VIA_AGGREGATE: &str = "MISC_SHARES_VIA_AGGREGATE";

/// The sharing providers of one snapshot, by the anchor trees they serve.
#[derive(Debug, Default)]
pub struct Sharing<'s> {
    /// Anchor root -> sharing providers from *other* trees that serve it
    /// (a sharing provider is already a member of its own tree).
    by_anchor: HashMap<&'s str, Vec<&'s Provider>>,
}

impl<'s> Sharing<'s> {
    /// Finds the sharing providers of `st` and their anchors: one pass over
    /// the providers, and nothing more when none shares (the common case,
    /// which keeps a request at thousands of hosts as fast as before).
    pub fn of(st: &'s State) -> Sharing<'s> {
        let sharers: Vec<&Provider> = st
            .providers
            .values()
            .filter(|p| p.traits.contains(SHARES_VIA_AGGREGATE) && !p.aggregates.is_empty())
            .collect();
        if sharers.is_empty() {
            return Sharing::default();
        }
        let wanted: HashSet<&str> = sharers
            .iter()
            .flat_map(|s| s.aggregates.iter().map(String::as_str))
            .collect();
        // Aggregate -> the roots of the trees with a provider in it.
        let mut roots_in: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for p in st.providers.values() {
            for a in &p.aggregates {
                if wanted.contains(a.as_str()) {
                    roots_in.entry(a.as_str()).or_default().insert(&p.root);
                }
            }
        }
        let mut by_anchor: HashMap<&str, Vec<&Provider>> = HashMap::new();
        for s in sharers {
            let anchors: BTreeSet<&str> = s
                .aggregates
                .iter()
                .filter_map(|a| roots_in.get(a.as_str()))
                .flatten()
                .copied()
                .collect();
            for root in anchors {
                if root != s.root {
                    by_anchor.entry(root).or_default().push(s);
                }
            }
        }
        Sharing { by_anchor }
    }

    /// Whether any provider shares with a tree other than its own.
    pub fn is_empty(&self) -> bool {
        self.by_anchor.is_empty()
    }

    /// The sharing providers outside the tree rooted at `root` that may
    /// serve it.
    pub fn serving(&self, root: &str) -> &[&'s Provider] {
        self.by_anchor.get(root).map_or(&[], Vec::as_slice)
    }
}
