//! Allocations, keyed by consumer, and the usages they add up to.
//!
//! A write replaces the allocations of one or more consumers in one commit.
//! It is checked on the state it commits on: capacity
//! (`(total - reserved) * allocation_ratio`), min/max/step per allocation,
//! the consumer generation the writer read (1.28). The providers allocated
//! against move their generation (as in Placement). Because the store
//! commits only on the revision the
//! check read (and reruns the check on newer state otherwise), two writers
//! never both fit into the same free capacity.

use super::error::{Code, PlacementError, PlacementResult};
use super::model::Consumer;
use super::query::known_class;
use super::service::{bumped, canonical_uuid, Ctx, Env, Write};
use super::state::{Change, State};
use std::collections::{BTreeMap, BTreeSet};

/// Provider uuid -> class -> amount.
pub type Allocs = BTreeMap<String, BTreeMap<String, u64>>;

/// The new allocations of one consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerWrite {
    /// The consumer.
    pub consumer: String,
    /// Its whole allocations after the write (empty: it holds nothing).
    pub allocations: Allocs,
    /// Project it counts against (required from 1.8).
    pub project_id: Option<String>,
    /// User it counts against (required from 1.8).
    pub user_id: Option<String>,
    /// The consumer generation the writer read, `None` for "new consumer"
    /// (checked from 1.28).
    pub consumer_generation: Option<u64>,
    /// `INSTANCE`, `MIGRATION`... (1.38).
    pub consumer_type: Option<String>,
}

/// The project and user Placement records for consumers written before 1.8
/// said who they were for (its `incomplete_consumer_project_id`).
pub const INCOMPLETE: &str = "00000000-0000-0000-0000-000000000000";

fn generation_conflict(
    ctx: &Ctx,
    c: &ConsumerWrite,
    existing: Option<&Consumer>,
) -> PlacementResult<()> {
    if !ctx.version.at_least(28) {
        return Ok(());
    }
    let current = existing.map(|x| x.generation);
    if current != c.consumer_generation {
        let show = |g: Option<u64>| g.map_or("null".to_string(), |g| g.to_string());
        return Err(PlacementError::stale(format!(
            "consumer generation conflict - expected {} but got {} (consumer {})",
            show(current),
            show(c.consumer_generation),
            c.consumer
        )));
    }
    Ok(())
}

/// Writes the allocations of every consumer in `writes` together: all or none.
pub fn write(st: &State, env: &mut Env, ctx: &Ctx, writes: &[ConsumerWrite]) -> Write<()> {
    let mut seen = BTreeSet::new();
    // What the write adds and what it takes back, per provider and class:
    // usage after it is `used - removed + added`.
    let mut added: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut removed: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    let mut changes = Vec::new();
    for c in writes {
        if canonical_uuid(&c.consumer).as_deref() != Some(c.consumer.as_str()) {
            return Err(PlacementError::bad(format!(
                "Malformed consumer_uuid: {}",
                c.consumer
            )));
        }
        if !seen.insert(c.consumer.as_str()) {
            return Err(PlacementError::bad(format!(
                "Consumer {} is given twice",
                c.consumer
            )));
        }
        let existing = st.consumers.get(&c.consumer);
        generation_conflict(ctx, c, existing)?;
        for (rp, resources) in &c.allocations {
            let p = st.providers.get(rp).ok_or_else(|| {
                PlacementError::bad(format!(
                    "Allocation for resource provider '{rp}' that does not exist."
                ))
            })?;
            if resources.is_empty() {
                return Err(PlacementError::bad(format!(
                    "JSON does not validate: resources for provider {rp} does not have enough \
                     properties"
                )));
            }
            touched.insert(&p.uuid);
            for (rc, n) in resources {
                if !known_class(st, rc) {
                    return Err(PlacementError::bad(format!(
                        "Unable to allocate inventory for consumer {}: No such resource class \
                         {rc}.",
                        c.consumer
                    )));
                }
                if *n == 0 {
                    return Err(PlacementError::bad(format!(
                        "JSON does not validate: 0 is less than the minimum of 1\n\nFailed \
                         validating 'minimum' in schema (resources of {rp}: {rc})"
                    )));
                }
                let inv = p.inventories.get(rc).ok_or_else(|| {
                    PlacementError::conflict(
                        Code::Undefined,
                        format!(
                            "Unable to allocate inventory: Inventory for '{rc}' on resource \
                             provider '{rp}' invalid."
                        ),
                    )
                })?;
                if !inv.fits_unit(*n) {
                    return Err(PlacementError::conflict(
                        Code::Undefined,
                        format!(
                            "Unable to allocate inventory: Unable to create allocation for \
                             '{rc}' on resource provider '{rp}'. The requested amount would \
                             violate inventory constraints."
                        ),
                    ));
                }
                *added.entry((rp.as_str(), rc.as_str())).or_default() += n;
            }
        }
        if let Some(old) = existing {
            for (rp, resources) in &old.allocations {
                // Placement moves the generation of the providers a write
                // allocates against, and of the old ones only when the
                // consumer gives up everything (its "used=0" rows).
                if c.allocations.is_empty() {
                    touched.insert(rp.as_str());
                }
                for (rc, n) in resources {
                    *removed.entry((rp.as_str(), rc.as_str())).or_default() += n;
                }
            }
        }
        let (project_id, user_id) = match (&c.project_id, &c.user_id, existing) {
            (Some(p), Some(u), _) => (p.clone(), u.clone()),
            (_, _, Some(old)) => (old.project_id.clone(), old.user_id.clone()),
            _ => (INCOMPLETE.to_string(), INCOMPLETE.to_string()),
        };
        changes.push(if c.allocations.is_empty() {
            if existing.is_none() {
                continue;
            }
            Change::DeleteConsumer(c.consumer.clone())
        } else {
            Change::Consumer(Consumer {
                uuid: c.consumer.clone(),
                project_id,
                user_id,
                generation: existing.map_or(1, |x| x.generation + 1),
                consumer_type: c
                    .consumer_type
                    .clone()
                    .or_else(|| existing.and_then(|x| x.consumer_type.clone())),
                allocations: c.allocations.clone(),
                created_at: existing.map_or_else(|| env.now.clone(), |x| x.created_at.clone()),
                updated_at: env.now.clone(),
            })
        });
    }
    for ((rp, rc), n) in &added {
        // Every class written is held to capacity as Placement does, even
        // one the consumer shrinks: usage after the write must fit.
        let inv = &st.providers[*rp].inventories[*rc];
        let back = removed.get(&(*rp, *rc)).copied().unwrap_or(0);
        let after = st.used(rp, rc).saturating_sub(back) + n;
        if after > inv.capacity() {
            return Err(PlacementError::conflict(
                Code::Undefined,
                format!(
                    "Unable to allocate inventory: Unable to create allocation for '{rc}' on \
                     resource provider '{rp}'. The requested amount would exceed the capacity."
                ),
            ));
        }
    }
    for rp in touched {
        if let Some(p) = st.providers.get(rp) {
            changes.push(Change::Provider(bumped(p, &env.now, |_| {})));
        }
    }
    Ok(((), changes))
}

/// `DELETE /allocations/{consumer}`. As in Placement, the providers'
/// generations stay: freeing capacity cannot invalidate a writer's view.
pub fn delete(st: &State, _env: &mut Env, _ctx: &Ctx, consumer: &str) -> Write<()> {
    if !st.consumers.contains_key(consumer) {
        return Err(PlacementError::not_found(format!(
            "No allocations for consumer '{consumer}'"
        )));
    }
    Ok(((), vec![Change::DeleteConsumer(consumer.to_string())]))
}

/// `GET /resource_providers/{uuid}/usages`: every inventory class, used or not.
pub fn provider_usages(st: &State, uuid: &str) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = st
        .providers
        .get(uuid)
        .map(|p| p.inventories.keys().map(|rc| (rc.clone(), 0)).collect())
        .unwrap_or_default();
    if let Some(used) = st.usages_of(uuid) {
        for (rc, n) in used {
            out.insert(rc.clone(), *n);
        }
    }
    out
}

/// One consumer type's share of `GET /usages` (1.38).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeUsage {
    /// How many consumers.
    pub consumer_count: u64,
    /// Class -> units.
    pub usages: BTreeMap<String, u64>,
}

/// `GET /usages?project_id=&user_id=&consumer_type=`: per consumer type
/// (`unknown` for consumers written without one; `all`: one sum, `all`).
pub fn usages(
    st: &State,
    project_id: &str,
    user_id: Option<&str>,
    consumer_type: Option<&str>,
) -> BTreeMap<String, TypeUsage> {
    let mut out: BTreeMap<String, TypeUsage> = BTreeMap::new();
    for c in st.consumers.values() {
        if c.project_id != project_id || user_id.is_some_and(|u| c.user_id != u) {
            continue;
        }
        let ty = match consumer_type {
            // `all` sums every type into one entry named `all`.
            Some("all") => "all",
            _ => c.consumer_type.as_deref().unwrap_or("unknown"),
        };
        match consumer_type {
            Some("all") | None => {}
            Some("unknown") if c.consumer_type.is_none() => {}
            Some(t) if t == ty => {}
            Some(_) => continue,
        }
        let e = out.entry(ty.to_string()).or_default();
        e.consumer_count += 1;
        for resources in c.allocations.values() {
            for (rc, n) in resources {
                *e.usages.entry(rc.clone()).or_default() += n;
            }
        }
    }
    out
}
