//! A provider's aggregates. Before 1.19 the body is a bare list and no
//! generation guards it; from 1.19 it carries the provider generation.

use super::error::PlacementError;
use super::model::Provider;
use super::service::{bumped, canonical_uuid, check_generation, provider, Ctx, Env, Write};
use super::state::{Change, State};
use std::collections::BTreeSet;

/// Replaces a provider's aggregates; `generation` is required from 1.19.
pub fn set(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    uuid: &str,
    aggregates: &[String],
    generation: Option<u64>,
) -> Write<Provider> {
    let p = provider(st, uuid)?;
    if ctx.version.at_least(19) {
        let g = generation.ok_or_else(|| {
            PlacementError::bad(
                "JSON does not validate: 'resource_provider_generation' is a required property",
            )
        })?;
        check_generation(p, g)?;
    }
    let mut set = BTreeSet::new();
    for a in aggregates {
        let u = canonical_uuid(a).ok_or_else(|| {
            PlacementError::bad(format!("JSON does not validate: '{a}' is not a 'uuid'"))
        })?;
        if !set.insert(u) {
            return Err(PlacementError::bad(format!(
                "JSON does not validate: aggregates has non-unique elements ({a})"
            )));
        }
    }
    let p = bumped(p, &env.now, |x| x.aggregates = set);
    Ok((p.clone(), vec![Change::Provider(p)]))
}
