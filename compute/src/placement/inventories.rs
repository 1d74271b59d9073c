//! Inventories: how much of each resource class a provider has. Every write
//! carries the provider generation the writer read; an inventory still
//! used by allocations cannot be removed.

use super::catalog;
use super::error::{Code, PlacementError, PlacementResult};
use super::model::{Inventory, Provider, MAX_INT};
use super::query::known_class;
use super::service::{bumped, check_generation, provider, Ctx, Env, Write};
use super::state::{Change, State};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One inventory as a request gives it; unset fields take Placement's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryReq {
    /// Units there are (1..=2^31-1). Numbers are read signed so a
    /// negative one is refused as "less than the minimum", as Placement's
    /// schema words it.
    pub total: i64,
    /// Default 0.
    #[serde(default)]
    pub reserved: Option<i64>,
    /// Default 1.
    #[serde(default)]
    pub min_unit: Option<i64>,
    /// Default 2^31-1.
    #[serde(default)]
    pub max_unit: Option<i64>,
    /// Default 1.
    #[serde(default)]
    pub step_size: Option<i64>,
    /// Default 1.0.
    #[serde(default)]
    pub allocation_ratio: Option<f64>,
}

/// `PUT /resource_providers/{uuid}/inventories`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetInventories {
    /// The generation the writer read.
    pub resource_provider_generation: u64,
    /// Class -> inventory: the provider's whole inventory after the write.
    pub inventories: BTreeMap<String, InventoryReq>,
}

/// `PUT /resource_providers/{uuid}/inventories/{rc}` (and `POST` with a class).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetInventory {
    /// The generation the writer read: required by `PUT`, checked when
    /// given to `POST` (whose schema does not require it).
    #[serde(default)]
    pub resource_provider_generation: Option<u64>,
    /// Only in `POST`: the class to add.
    #[serde(default)]
    pub resource_class: Option<String>,
    /// See [`InventoryReq`].
    pub total: i64,
    /// See [`InventoryReq`].
    #[serde(default)]
    pub reserved: Option<i64>,
    /// See [`InventoryReq`].
    #[serde(default)]
    pub min_unit: Option<i64>,
    /// See [`InventoryReq`].
    #[serde(default)]
    pub max_unit: Option<i64>,
    /// See [`InventoryReq`].
    #[serde(default)]
    pub step_size: Option<i64>,
    /// See [`InventoryReq`].
    #[serde(default)]
    pub allocation_ratio: Option<f64>,
}

impl SetInventory {
    /// The inventory part.
    pub fn inventory(&self) -> InventoryReq {
        InventoryReq {
            total: self.total,
            reserved: self.reserved,
            min_unit: self.min_unit,
            max_unit: self.max_unit,
            step_size: self.step_size,
            allocation_ratio: self.allocation_ratio,
        }
    }
}

/// A value outside the schema's range, in jsonschema's words (`-1 is less
/// than the minimum of 1`, then which rule of which field failed).
fn schema(field: &str, value: impl std::fmt::Display, rule: &str) -> PlacementError {
    let validator = if rule.starts_with("less") {
        "minimum"
    } else {
        "maximum"
    };
    PlacementError::bad(format!(
        "JSON does not validate: {value} is {rule}\n\nFailed validating '{validator}' in \
         schema['properties']['{field}']"
    ))
}

/// Checks one inventory against Placement's schema and rules.
pub fn validate(
    st: &State,
    ctx: &Ctx,
    p: &Provider,
    rc: &str,
    r: &InventoryReq,
    verb: &str,
) -> PlacementResult<Inventory> {
    if !known_class(st, rc) {
        return Err(PlacementError::bad(format!(
            "Unknown resource class in inventory for resource provider {}: No such resource \
             class {rc}.",
            p.uuid
        )));
    }
    let max = MAX_INT as i64;
    let fields = [
        ("total", r.total, 1),
        ("reserved", r.reserved.unwrap_or(0), 0),
        ("min_unit", r.min_unit.unwrap_or(1), 1),
        ("max_unit", r.max_unit.unwrap_or(max), 1),
        ("step_size", r.step_size.unwrap_or(1), 1),
    ];
    for (field, v, min) in fields {
        if v < min {
            return Err(schema(field, v, &format!("less than the minimum of {min}")));
        }
        if v > max {
            return Err(schema(
                field,
                v,
                &format!("greater than the maximum of {max}"),
            ));
        }
    }
    // In range 0..=2^31-1 now, so the casts are exact.
    let [total, reserved, min_unit, max_unit, step_size] = fields.map(|(_, v, _)| v as u64);
    let inv = Inventory {
        total,
        reserved,
        min_unit,
        max_unit,
        step_size,
        allocation_ratio: r.allocation_ratio.unwrap_or(1.0),
    };
    let ratio = inv.allocation_ratio;
    if !(ratio.is_finite() && ratio > 0.0 && ratio <= f32::MAX as f64) {
        return Err(schema(
            "allocation_ratio",
            ratio,
            "not a number greater than 0 and at most 3.40282e+38",
        ));
    }
    // 1.26 allows reserving everything (a host taken out of service).
    let too_much = if ctx.version.at_least(26) {
        inv.reserved > inv.total
    } else {
        inv.reserved >= inv.total
    };
    if too_much {
        return Err(PlacementError::bad(format!(
            "Unable to {verb} inventory for resource provider {}: Invalid inventory for \
             '{rc}' on resource provider '{}'. The reserved value is greater than {}total.",
            p.uuid,
            p.uuid,
            if ctx.version.at_least(26) {
                ""
            } else {
                "or equal to "
            }
        )));
    }
    Ok(inv)
}

/// The 409 for inventory still allocated: every class in use is named,
/// in the order Placement names them (its class ids: the standard classes
/// in their catalog order, then custom ones).
fn in_use<'a>(p: &Provider, classes: impl IntoIterator<Item = &'a String>) -> PlacementError {
    let mut classes: Vec<&str> = classes.into_iter().map(String::as_str).collect();
    classes.sort_by_key(|rc| catalog::class_rank(rc));
    PlacementError::conflict(
        Code::InventoryInUse,
        format!(
            "update conflict: Inventory for '{}' on resource provider '{}' in use.",
            classes.join(", "),
            p.uuid
        ),
    )
}

/// Replaces the provider's whole inventory.
pub fn set_all(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    uuid: &str,
    req: &SetInventories,
) -> Write<Provider> {
    let p = provider(st, uuid)?;
    // The body is checked before the generation, as Placement's schema and
    // classes are looked at before it saves.
    let mut next = BTreeMap::new();
    for (rc, r) in &req.inventories {
        next.insert(rc.clone(), validate(st, ctx, p, rc, r, "update")?);
    }
    check_generation(p, req.resource_provider_generation)?;
    let gone: Vec<&String> = p
        .inventories
        .keys()
        .filter(|rc| !next.contains_key(*rc) && st.used(uuid, rc) > 0)
        .collect();
    if !gone.is_empty() {
        return Err(in_use(p, gone));
    }
    let p = bumped(p, &env.now, |x| x.inventories = next);
    Ok((p.clone(), vec![Change::Provider(p)]))
}

/// Adds one class (`POST .../inventories`): 409 if it is there already.
pub fn create_one(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    uuid: &str,
    req: &SetInventory,
) -> Write<(String, Provider)> {
    let p = provider(st, uuid)?;
    let rc = req.resource_class.clone().ok_or_else(|| {
        PlacementError::bad("JSON does not validate: 'resource_class' is a required property")
    })?;
    let inv = validate(st, ctx, p, &rc, &req.inventory(), "create")?;
    if let Some(g) = req.resource_provider_generation {
        check_generation(p, g)?;
    }
    if p.inventories.contains_key(&rc) {
        return Err(PlacementError::conflict(
            Code::Undefined,
            format!(
                "Update conflict: Inventory for resource class {rc} already exists on \
                 resource provider {uuid}"
            ),
        ));
    }
    let p = bumped(p, &env.now, |x| {
        x.inventories.insert(rc.clone(), inv);
    });
    Ok(((rc, p.clone()), vec![Change::Provider(p)]))
}

/// Sets one class (`PUT .../inventories/{rc}`): it must exist already.
pub fn set_one(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    uuid: &str,
    rc: &str,
    req: &SetInventory,
) -> Write<Provider> {
    let p = provider(st, uuid)?;
    if req.resource_class.is_some() {
        return Err(PlacementError::bad(
            "JSON does not validate: Additional properties are not allowed \
             ('resource_class' was unexpected)",
        ));
    }
    let g = req.resource_provider_generation.ok_or_else(|| {
        PlacementError::bad(
            "JSON does not validate: 'resource_provider_generation' is a required property",
        )
    })?;
    let inv = validate(st, ctx, p, rc, &req.inventory(), "update")?;
    check_generation(p, g)?;
    if !p.inventories.contains_key(rc) {
        return Err(PlacementError::bad(format!(
            "No inventory record with resource class for resource provider {uuid}: {rc}"
        )));
    }
    let p = bumped(p, &env.now, |x| {
        x.inventories.insert(rc.to_string(), inv);
    });
    Ok((p.clone(), vec![Change::Provider(p)]))
}

/// Removes one class, if nothing uses it.
pub fn delete_one(st: &State, env: &mut Env, _ctx: &Ctx, uuid: &str, rc: &str) -> Write<()> {
    let p = provider(st, uuid)?;
    if !p.inventories.contains_key(rc) {
        return Err(PlacementError::not_found(format!(
            "No inventory of class {rc} found for delete"
        )));
    }
    if st.used(uuid, rc) > 0 {
        return Err(in_use(p, [&rc.to_string()]));
    }
    let p = bumped(p, &env.now, |x| {
        x.inventories.remove(rc);
    });
    Ok(((), vec![Change::Provider(p)]))
}

/// Removes every class (1.5), if nothing uses any.
pub fn delete_all(st: &State, env: &mut Env, _ctx: &Ctx, uuid: &str) -> Write<()> {
    let p = provider(st, uuid)?;
    let used: Vec<&String> = p
        .inventories
        .keys()
        .filter(|rc| st.used(uuid, rc) > 0)
        .collect();
    if !used.is_empty() {
        return Err(in_use(p, used));
    }
    let p = bumped(p, &env.now, |x| x.inventories.clear());
    Ok(((), vec![Change::Provider(p)]))
}
