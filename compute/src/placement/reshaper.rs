//! `POST /reshaper` (1.30): inventories and allocations replaced in one
//! commit, so a compute host can move its VCPU from the root provider to
//! new NUMA children (inventory and the allocations using it) without a
//! moment where either is missing or counted twice.
//!
//! It runs in Placement's three steps, whose generation moves clients
//! (Nova's report client) count on: an interim inventory, the old one with
//! the new classes laid over it (the provider's generation moves once),
//! so allocations can move between classes the reshape keeps, adds or
//! drops; then the allocations, written on that interim state with every
//! check of an ordinary write (capacity, units, consumer generations; the
//! providers allocated against move again); then the final inventory,
//! exactly as sent (every provider in `inventories` moves once more). Only
//! usage left on a class the final inventory drops is refused (409
//! `placement.inventory.inuse`). All of it is one commit.

use super::allocations::{self, ConsumerWrite};
use super::error::{Code, PlacementError};
use super::inventories::{self, SetInventories};
use super::service::{bumped, Ctx, Env, Write};
use super::state::{Change, State};
use std::collections::{BTreeMap, BTreeSet};

/// Replaces the inventories of the providers in `inventories` and the
/// allocations of the consumers in `writes`, all or nothing.
pub fn reshape(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    inventories: &BTreeMap<String, SetInventories>,
    writes: &[ConsumerWrite],
) -> Write<()> {
    let mut interim = Vec::with_capacity(inventories.len());
    let mut finals = BTreeMap::new();
    for (uuid, req) in inventories {
        let p = st
            .providers
            .get(uuid)
            .ok_or_else(|| PlacementError::BadRequest {
                code: Code::ProviderNotFound,
                message: format!(
                    "Resource provider {uuid} in inventories not found: No resource provider \
                 with uuid {uuid} found"
                ),
            })?;
        if p.generation != req.resource_provider_generation {
            return Err(PlacementError::stale(format!(
                "resource provider generation conflict for provider {uuid}: actual: {}, \
                 given: {}",
                p.generation, req.resource_provider_generation
            )));
        }
        let mut next = BTreeMap::new();
        for (rc, r) in &req.inventories {
            next.insert(
                rc.clone(),
                inventories::validate(st, ctx, p, rc, r, "update")?,
            );
        }
        // Placement skips the interim step for an emptied provider.
        if !next.is_empty() {
            interim.push(Change::Provider(bumped(p, &env.now, |x| {
                x.inventories.extend(next.clone())
            })));
        }
        finals.insert(uuid.clone(), next);
    }
    let mut after = st.clone();
    after.apply_changes(&interim);
    let ((), moved) = allocations::write(&after, env, ctx, writes)?;
    after.apply_changes(&moved);
    let mut last = Vec::with_capacity(finals.len());
    for (uuid, next) in finals {
        let p = &after.providers[&uuid];
        for (rc, used) in after.usages_of(&uuid).into_iter().flatten() {
            let kept = next.get(rc);
            if *used > 0 && kept.is_none() {
                return Err(PlacementError::conflict(
                    Code::InventoryInUse,
                    format!(
                        "update conflict: Inventory for '{rc}' on resource provider \
                         '{uuid}' in use."
                    ),
                ));
            }
            if kept.is_some_and(|inv| *used > inv.capacity()) {
                return Err(PlacementError::conflict(
                    Code::Undefined,
                    format!(
                        "Unable to allocate inventory: Unable to create allocation for \
                         '{rc}' on resource provider '{uuid}'. The requested amount would \
                         exceed the capacity."
                    ),
                ));
            }
        }
        last.push(Change::Provider(bumped(p, &env.now, |x| {
            x.inventories = next
        })));
    }
    after.apply_changes(&last);
    // One record per provider, as the three steps left it.
    let providers: BTreeSet<String> = interim
        .iter()
        .chain(&moved)
        .chain(&last)
        .filter_map(|c| match c {
            Change::Provider(p) => Some(p.uuid.clone()),
            _ => None,
        })
        .collect();
    let mut changes: Vec<Change> = moved
        .into_iter()
        .filter(|c| !matches!(c, Change::Provider(_)))
        .collect();
    changes.extend(
        providers
            .iter()
            .map(|u| Change::Provider(after.providers[u].clone())),
    );
    Ok(((), changes))
}
