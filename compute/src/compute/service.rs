//! What every compute API write gets besides the state: the clock, ids and
//! the policy. The resources' pure functions live in their own files.

use super::error::ComputeResult;
use super::policy::Authz;
use super::state::Change;

pub use super::policy::Ctx;

/// Where new ids come from (random in the server, fixed in tests).
pub trait Ids: Send {
    /// A fresh UUID.
    fn uuid(&mut self) -> String;
}

/// Random v4 UUIDs.
pub struct RandomIds;

impl Ids for RandomIds {
    fn uuid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// Everything a write needs besides the state.
pub struct Env<'a> {
    /// The time of the write, as records show it.
    pub now: String,
    /// Where new ids come from.
    pub ids: &'a mut dyn Ids,
    /// The policy.
    pub authz: &'a dyn Authz,
}

/// A write's result and the changes to commit.
pub type Write<T> = ComputeResult<(T, Vec<Change>)>;
