//! `POST /reshaper` (1.30): inventories and allocations replaced in one
//! commit, so a compute host can move its VCPU from the root provider to
//! new NUMA children (inventory and the allocations using it) without a
//! moment where either is missing or counted twice.
//!
//! The new inventories apply first, to a copy of the state, without the
//! "still in use" refusal a plain inventory write makes: the allocations
//! moving off them come in the same request. The allocations are then
//! written on that copy with every check of an ordinary write (capacity,
//! units, consumer generations). Only what is left in use on an inventory
//! the reshape removed is refused, as Placement does.

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
    let mut changes = Vec::with_capacity(inventories.len());
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
        changes.push(Change::Provider(bumped(p, &env.now, |x| {
            x.inventories = next
        })));
    }
    let mut after = st.clone();
    after.apply_changes(&changes);
    let ((), moved) = allocations::write(&after, env, ctx, writes)?;
    after.apply_changes(&moved);
    for uuid in inventories.keys() {
        let p = &after.providers[uuid];
        for (rc, used) in after.usages_of(uuid).into_iter().flatten() {
            let gone = !p.inventories.contains_key(rc);
            if *used > 0 && gone {
                return Err(PlacementError::conflict(
                    Code::InventoryInUse,
                    format!(
                        "update conflict: Inventory for '{rc}' on resource provider \
                         '{uuid}' in use."
                    ),
                ));
            }
            if !gone && *used > p.inventories[rc].capacity() {
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
    }
    // A provider both re-inventoried and allocated against is written once,
    // as the allocation write left it (new inventories, generation moved).
    let rewritten: BTreeSet<String> = moved
        .iter()
        .filter_map(|c| match c {
            Change::Provider(p) => Some(p.uuid.clone()),
            _ => None,
        })
        .collect();
    changes.retain(|c| !matches!(c, Change::Provider(p) if rewritten.contains(&p.uuid)));
    changes.extend(moved);
    Ok(((), changes))
}
