//! Resource classes: the standard ones and operators' `CUSTOM_*` ones.

use super::catalog::{self, STANDARD_CLASSES};
use super::error::{Code, PlacementError};
use super::schema;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};

/// A name the schema refuses, in jsonschema's words: too long (255), or
/// not `CUSTOM_...`.
fn invalid(name: &str) -> PlacementError {
    let v = serde_json::Value::String(name.to_string());
    schema::length(name, 1, 255, &["name"]).unwrap_or_else(|| {
        schema::invalid(
            &format!("{} does not match '^CUSTOM_[A-Z0-9_]+$'", schema::py(&v)),
            "pattern",
            &["name"],
        )
    })
}

/// Every class: standard ones first in their order, then custom ones.
pub fn list(st: &State) -> Vec<String> {
    STANDARD_CLASSES
        .iter()
        .map(|s| s.to_string())
        .chain(st.classes.iter().cloned())
        .collect()
}

/// `POST /resource_classes` (1.2): 409 if it exists.
pub fn create(st: &State, _env: &mut Env, _ctx: &Ctx, name: &str) -> Write<()> {
    if !catalog::is_custom_name(name) {
        return Err(invalid(name));
    }
    if st.classes.contains(name) {
        return Err(PlacementError::conflict(
            Code::DuplicateName,
            format!("Conflicting resource class already exists: {name}"),
        ));
    }
    Ok(((), vec![Change::Class(name.to_string())]))
}

/// `PUT /resource_classes/{name}` (1.7): whether it was created.
/// A standard class is refused by the name's pattern, as Placement's.
pub fn ensure(st: &State, _env: &mut Env, _ctx: &Ctx, name: &str) -> Write<bool> {
    if !catalog::is_custom_name(name) {
        return Err(invalid(name));
    }
    if st.classes.contains(name) {
        return Ok((false, Vec::new()));
    }
    Ok((true, vec![Change::Class(name.to_string())]))
}

/// `DELETE /resource_classes/{name}`: custom and without inventory only.
pub fn delete(st: &State, _env: &mut Env, _ctx: &Ctx, name: &str) -> Write<()> {
    if catalog::is_standard_class(name) {
        return Err(PlacementError::bad(format!(
            "Cannot delete standard resource class {name}: Standard resource classes are \
             not deletable."
        )));
    }
    if !st.classes.contains(name) {
        return Err(PlacementError::not_found(format!(
            "No such resource class {name}."
        )));
    }
    if st.class_in_use(name) {
        return Err(PlacementError::conflict(
            Code::Undefined,
            format!(
                "Error in delete resource class: Unable to delete resource class {name}: \
                 Class is in use in inventory"
            ),
        ));
    }
    Ok(((), vec![Change::DeleteClass(name.to_string())]))
}

/// `PUT /resource_classes/{name}` with `{"name": new}` (1.2 to 1.6): renames
/// a custom class everywhere it is used. Placement keys inventories and
/// allocations by the class's id, so a rename moves no generation; here
/// they are keyed by name, so every provider and consumer using it is
/// rewritten in the same commit.
pub fn rename(st: &State, env: &mut Env, _ctx: &Ctx, old: &str, new: &str) -> Write<()> {
    // The body (the new name) is checked first, as Placement's schema.
    if !catalog::is_custom_name(new) {
        return Err(invalid(new));
    }
    if catalog::is_standard_class(old) {
        return Err(PlacementError::bad(format!(
            "Cannot update standard resource class {old}"
        )));
    }
    if !st.classes.contains(old) {
        return Err(PlacementError::not_found(format!(
            "No such resource class {old}."
        )));
    }
    if st.classes.contains(new) {
        return Err(PlacementError::conflict(
            Code::DuplicateName,
            format!("Resource class already exists: {new}"),
        ));
    }
    let mut changes = vec![Change::Class(new.to_string())];
    for p in st.providers.values() {
        if let Some(inv) = p.inventories.get(old) {
            let mut p = p.clone();
            p.inventories.remove(old);
            p.inventories.insert(new.to_string(), inv.clone());
            p.updated_at = env.now.clone();
            changes.push(Change::Provider(p));
        }
    }
    for c in st.consumers.values() {
        if c.allocations.values().any(|r| r.contains_key(old)) {
            let mut c = c.clone();
            for r in c.allocations.values_mut() {
                if let Some(n) = r.remove(old) {
                    r.insert(new.to_string(), n);
                }
            }
            changes.push(Change::Consumer(c));
        }
    }
    changes.push(Change::DeleteClass(old.to_string()));
    Ok(((), changes))
}
