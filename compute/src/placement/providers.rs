//! Resource providers: create, update (rename, re-parent), delete, and the
//! list filters of `GET /resource_providers`.

use super::error::{Code, PlacementError, PlacementResult};
use super::model::Provider;
use super::query::{AggFilter, TraitFilter};
use super::schema;
use super::service::{canonical_uuid, provider, Ctx, Env, Write};
use super::state::{Change, State};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `POST /resource_providers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Unique, 1-200 characters.
    pub name: String,
    /// Chosen by the caller, or drawn.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The provider to nest under (1.14).
    #[serde(default)]
    pub parent_provider_uuid: Option<String>,
}

/// `PUT /resource_providers/{uuid}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    /// The new name.
    pub name: String,
    /// The new parent (1.14); absent leaves it, `null` un-parents (1.37).
    #[serde(default, deserialize_with = "present")]
    pub parent_provider_uuid: Option<Option<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_name(name: &str) -> PlacementResult<()> {
    match schema::length(name, 1, 200, &["name"]) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn name_taken(st: &State, name: &str, except: &str) -> PlacementResult<()> {
    match st.provider_named(name) {
        Some(p) if p.uuid != except => Err(PlacementError::conflict(
            Code::DuplicateName,
            format!("Conflicting resource provider name: {name} already exists."),
        )),
        _ => Ok(()),
    }
}

fn parent_uuid(ctx: &Ctx, p: &str) -> PlacementResult<String> {
    if !ctx.version.at_least(14) {
        return Err(PlacementError::bad(
            "JSON does not validate: Additional properties are not allowed \
             ('parent_provider_uuid' was unexpected)",
        ));
    }
    canonical_uuid(p).ok_or_else(|| {
        schema::invalid(
            &format!("'{p}' is not a 'uuid'"),
            "format",
            &["parent_provider_uuid"],
        )
    })
}

/// Creates a provider, a root or nested under an existing one.
pub fn create(st: &State, env: &mut Env, ctx: &Ctx, req: &CreateProvider) -> Write<Provider> {
    check_name(&req.name)?;
    let uuid = match &req.uuid {
        Some(u) => canonical_uuid(u).ok_or_else(|| {
            schema::invalid(&format!("'{u}' is not a 'uuid'"), "format", &["uuid"])
        })?,
        None => (env.new_uuid)(),
    };
    if st.providers.contains_key(&uuid) {
        return Err(PlacementError::conflict(
            Code::DuplicateName,
            format!("Conflicting resource provider uuid: {uuid} already exists."),
        ));
    }
    name_taken(st, &req.name, &uuid)?;
    let (parent, root) = match &req.parent_provider_uuid {
        None => (None, uuid.clone()),
        Some(p) => {
            let p = parent_uuid(ctx, p)?;
            if p == uuid {
                return Err(PlacementError::bad(format!(
                    "Unable to create resource provider \"{}\", {uuid}: parent provider UUID \
                     cannot be same as UUID. Please specify a parent provider UUID that is \
                     different from the UUID of the resource provider.",
                    req.name
                )));
            }
            let parent = st.providers.get(&p).ok_or_else(|| {
                PlacementError::bad(format!("parent provider UUID does not exist: {p}"))
            })?;
            (Some(p), parent.root.clone())
        }
    };
    let p = Provider {
        uuid,
        name: req.name.clone(),
        generation: 0,
        parent,
        root,
        inventories: BTreeMap::new(),
        traits: Default::default(),
        aggregates: Default::default(),
        created_at: env.now.clone(),
        updated_at: env.now.clone(),
    };
    Ok((p.clone(), vec![Change::Provider(p)]))
}

/// Whether `candidate` is `uuid` or below it.
fn in_subtree(st: &State, uuid: &str, candidate: &str) -> bool {
    let mut at = Some(candidate.to_string());
    while let Some(u) = at {
        if u == uuid {
            return true;
        }
        at = st.providers.get(&u).and_then(|p| p.parent.clone());
    }
    false
}

/// Every provider below `uuid`, depth first.
pub fn descendants(st: &State, uuid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![uuid.to_string()];
    while let Some(u) = stack.pop() {
        for c in st.children_of(&u) {
            out.push(c.to_string());
            stack.push(c.to_string());
        }
    }
    out
}

/// Renames a provider and, at 1.14+, sets its parent: before 1.37 only a
/// root may gain a parent; from 1.37 a provider may move or become a root.
/// A move re-roots its whole subtree.
pub fn update(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    uuid: &str,
    req: &UpdateProvider,
) -> Write<Provider> {
    let old = provider(st, uuid)?;
    check_name(&req.name)?;
    name_taken(st, &req.name, uuid)?;
    let new_parent = match &req.parent_provider_uuid {
        None => old.parent.clone(),
        Some(None) if !ctx.version.at_least(14) => old.parent.clone(),
        Some(None) => {
            if old.parent.is_some() && !ctx.version.at_least(37) {
                return Err(PlacementError::bad(
                    "Unable to unset the parent provider: un-parenting a provider is not currently \
                     allowed (before microversion 1.37).",
                ));
            }
            None
        }
        Some(Some(p)) => Some(parent_uuid(ctx, p)?),
    };
    let mut changes = Vec::new();
    let mut root = old.root.clone();
    if new_parent != old.parent {
        if old.parent.is_some() && !ctx.version.at_least(37) {
            return Err(PlacementError::bad(
                "re-parenting a provider is not currently allowed (before microversion 1.37).",
            ));
        }
        root = match &new_parent {
            None => uuid.to_string(),
            Some(p) => {
                let parent = st.providers.get(p).ok_or_else(|| {
                    PlacementError::bad(format!("parent provider UUID does not exist: {p}"))
                })?;
                if in_subtree(st, uuid, p) {
                    return Err(PlacementError::bad(
                        "creating loop in the provider tree is not allowed.",
                    ));
                }
                parent.root.clone()
            }
        };
        if root != old.root {
            for d in descendants(st, uuid) {
                let mut dp = provider(st, &d)?.clone();
                dp.root = root.clone();
                dp.updated_at = env.now.clone();
                changes.push(Change::Provider(dp));
            }
        }
    }
    // Placement moves the generation for what the provider holds
    // (inventory, traits, aggregates, allocations), not for its name or place.
    let mut p = old.clone();
    p.name = req.name.clone();
    p.parent = new_parent;
    p.root = root;
    p.updated_at = env.now.clone();
    changes.insert(0, Change::Provider(p.clone()));
    Ok((p, changes))
}

/// Deletes a provider with no children and no allocations against it.
pub fn delete(st: &State, _env: &mut Env, _ctx: &Ctx, uuid: &str) -> Write<()> {
    if !st.providers.contains_key(uuid) {
        return Err(PlacementError::not_found(format!(
            "No resource provider with uuid {uuid} found for delete"
        )));
    }
    if st.children_of(uuid).next().is_some() {
        return Err(PlacementError::conflict(
            Code::CannotDeleteParent,
            format!(
                "Unable to delete parent resource provider {uuid}: It has child resource \
                 providers."
            ),
        ));
    }
    if st.consumers_of(uuid).next().is_some() {
        return Err(PlacementError::conflict(
            Code::ProviderInUse,
            format!(
                "Unable to delete resource provider {uuid}: Resource provider has allocations."
            ),
        ));
    }
    Ok(((), vec![Change::DeleteProvider(uuid.to_string())]))
}

/// The filters of `GET /resource_providers`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact uuid.
    pub uuid: Option<String>,
    /// Only providers in the tree of this one (1.14).
    pub in_tree: Option<String>,
    /// Aggregate membership (1.3).
    pub member_of: AggFilter,
    /// Traits (1.18).
    pub required: TraitFilter,
    /// Class -> amount the provider must still have room for (1.4).
    pub resources: BTreeMap<String, u64>,
}

/// The providers passing `f`, by uuid.
pub fn list<'s>(st: &'s State, f: &ListFilter) -> Vec<&'s Provider> {
    let tree_root = match &f.in_tree {
        Some(t) => match st.providers.get(t) {
            Some(p) => Some(p.root.as_str()),
            None => return Vec::new(),
        },
        None => None,
    };
    st.providers
        .values()
        .filter(|p| f.name.as_deref().is_none_or(|n| p.name == n))
        .filter(|p| f.uuid.as_deref().is_none_or(|u| p.uuid == u))
        .filter(|p| tree_root.is_none_or(|r| p.root == r))
        .filter(|p| f.member_of.matches(&p.aggregates))
        .filter(|p| f.required.matches(&p.traits))
        .filter(|p| {
            f.resources.iter().all(|(rc, n)| {
                p.inventories.get(rc).is_some_and(|inv| {
                    // Units first (max_unit bounds the sum below), as
                    // Placement filters: min_unit, max_unit, step_size.
                    inv.fits_unit(*n) && inv.capacity() >= st.used(&p.uuid, rc).saturating_add(*n)
                })
            })
        })
        .collect()
}
