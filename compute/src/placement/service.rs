//! What every pure placement function takes: the clock and id source
//! (`Env`, deterministic in tests) and the request's context (`Ctx`).
//! Each resource's logic lives in its own module (providers, inventories,
//! traits, classes, aggregates, allocations, candidates) as
//! `fn(&State, &mut Env, &Ctx, Req) -> Result<(T, Vec<Change>), PlacementError>`.

use super::error::{PlacementError, PlacementResult};
use super::microversion::Version;
use super::model::Provider;
use super::state::{Change, State};

/// Time and ids, passed in so the logic stays pure.
pub struct Env<'a> {
    /// Now, RFC 3339.
    pub now: String,
    /// Draws a fresh uuid (hyphenated, lowercase).
    pub new_uuid: &'a mut dyn FnMut() -> String,
}

/// The request as the logic needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The microversion the request speaks.
    pub version: Version,
}

/// A write's result and the changes to commit.
pub type Write<T> = PlacementResult<(T, Vec<Change>)>;

/// A uuid in Placement's canonical form (hyphenated, lowercase), or `None`
/// when `s` is not a uuid.
pub fn canonical_uuid(s: &str) -> Option<String> {
    uuid::Uuid::parse_str(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The provider `uuid`, or Placement's 404.
pub fn provider<'s>(st: &'s State, uuid: &str) -> PlacementResult<&'s Provider> {
    st.providers
        .get(uuid)
        .ok_or_else(|| PlacementError::no_provider(uuid))
}

/// Checks the generation a writer read against the provider's.
pub fn check_generation(p: &Provider, sent: u64) -> PlacementResult<()> {
    if p.generation != sent {
        return Err(PlacementError::stale(format!(
            "resource provider generation conflict: Resource provider's generation already \
             changed. Please update the generation and try again. (provider {} is at \
             generation {}, the request was made at {sent})",
            p.uuid, p.generation
        )));
    }
    Ok(())
}

/// The provider as changed by `f`, with its generation moved on.
pub fn bumped(p: &Provider, now: &str, f: impl FnOnce(&mut Provider)) -> Provider {
    let mut next = p.clone();
    f(&mut next);
    next.generation += 1;
    next.updated_at = now.to_string();
    next
}
