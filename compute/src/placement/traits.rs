//! Traits: the standard ones, operators' `CUSTOM_*` ones, and the set each
//! provider carries (written with its generation).

use super::catalog::{self, STANDARD_TRAITS};
use super::error::{PlacementError, PlacementResult};
use super::model::Provider;
use super::service::{bumped, check_generation, provider, Ctx, Env, Write};
use super::state::{Change, State};
use serde::Deserialize;
use std::collections::BTreeSet;

fn invalid(name: &str) -> PlacementError {
    PlacementError::bad(format!(
        "The trait is invalid. A valid trait must be no longer than 255 characters, start \
         with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" \
         and \"_\" (got {name:?})"
    ))
}

/// Whether trait `name` exists.
pub fn exists(st: &State, name: &str) -> bool {
    catalog::is_standard_trait(name) || st.traits.contains(name)
}

/// `GET /traits?name=in:A,B|startswith:X&associated=true|false`, sorted.
pub fn list(
    st: &State,
    name: Option<&str>,
    associated: Option<&str>,
) -> PlacementResult<Vec<String>> {
    enum By {
        All,
        In(BTreeSet<String>),
        Prefix(String),
    }
    let by = match name {
        None => By::All,
        Some(n) => {
            if let Some(list) = n.strip_prefix("in:") {
                By::In(list.split(',').map(|s| s.trim().to_string()).collect())
            } else if let Some(p) = n.strip_prefix("startswith:") {
                By::Prefix(p.to_string())
            } else {
                return Err(PlacementError::bad(format!(
                    "Badly formatted name parameter. Expected name query string parameter in \
                     form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{n}\""
                )));
            }
        }
    };
    let assoc = match associated {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return Err(PlacementError::bad(format!(
                "The query parameter \"associated\" only accepts \"true\" or \"false\" (got {v:?})"
            )))
        }
    };
    let used: Option<BTreeSet<&str>> = assoc.map(|_| {
        st.providers
            .values()
            .flat_map(|p| p.traits.iter().map(String::as_str))
            .collect()
    });
    let mut out: Vec<String> = STANDARD_TRAITS
        .iter()
        .copied()
        .chain(st.traits.iter().map(String::as_str))
        .filter(|t| match &by {
            By::All => true,
            By::In(set) => set.contains(*t),
            By::Prefix(p) => t.starts_with(p.as_str()),
        })
        .filter(|t| match (&assoc, &used) {
            (Some(want), Some(used)) => used.contains(t) == *want,
            _ => true,
        })
        .map(str::to_string)
        .collect();
    out.sort();
    Ok(out)
}

/// `PUT /traits/{name}`: whether it was created (false: it existed).
pub fn create(st: &State, _env: &mut Env, _ctx: &Ctx, name: &str) -> Write<bool> {
    if !catalog::is_custom_name(name) {
        return Err(invalid(name));
    }
    if st.traits.contains(name) {
        return Ok((false, Vec::new()));
    }
    Ok((true, vec![Change::Trait(name.to_string())]))
}

/// `DELETE /traits/{name}`: custom and unused only.
pub fn delete(st: &State, _env: &mut Env, _ctx: &Ctx, name: &str) -> Write<()> {
    if catalog::is_standard_trait(name) {
        return Err(PlacementError::bad(format!(
            "Cannot delete standard trait {name}."
        )));
    }
    if !st.traits.contains(name) {
        return Err(PlacementError::not_found(format!(
            "No such trait(s): {name}"
        )));
    }
    if st.trait_in_use(name) {
        return Err(PlacementError::conflict(
            super::error::Code::Undefined,
            format!("The trait {name} is in use by a resource provider."),
        ));
    }
    Ok(((), vec![Change::DeleteTrait(name.to_string())]))
}

/// `PUT /resource_providers/{uuid}/traits`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTraits {
    /// The provider's whole trait set after the write.
    pub traits: Vec<String>,
    /// The generation the writer read.
    pub resource_provider_generation: u64,
}

/// Replaces a provider's traits; every one must exist.
pub fn set_provider(
    st: &State,
    env: &mut Env,
    _ctx: &Ctx,
    uuid: &str,
    req: &SetTraits,
) -> Write<Provider> {
    let p = provider(st, uuid)?;
    check_generation(p, req.resource_provider_generation)?;
    let missing: Vec<&str> = req
        .traits
        .iter()
        .map(String::as_str)
        .filter(|t| !exists(st, t))
        .collect();
    if !missing.is_empty() {
        return Err(PlacementError::bad(format!(
            "No such trait(s): {}",
            missing.join(", ")
        )));
    }
    let p = bumped(p, &env.now, |x| {
        x.traits = req.traits.iter().cloned().collect()
    });
    Ok((p.clone(), vec![Change::Provider(p)]))
}

/// `DELETE /resource_providers/{uuid}/traits`.
pub fn clear_provider(st: &State, env: &mut Env, _ctx: &Ctx, uuid: &str) -> Write<()> {
    let p = provider(st, uuid)?;
    let p = bumped(p, &env.now, |x| x.traits.clear());
    Ok(((), vec![Change::Provider(p)]))
}
