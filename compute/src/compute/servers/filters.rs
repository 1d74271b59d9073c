//! The `GET /servers` filters that need more than equality: `name` as a
//! regular expression (Nova's), and the `changes-since` /
//! `changes-before` (2.66) window on the server's last update, compared
//! as instants whatever zone the client wrote them in.

use super::record::Server;
use super::ListQuery;
use crate::compute::error::{ComputeError, ComputeResult};
use chrono::{DateTime, NaiveDateTime, Utc};

/// The checked filters of one list request.
pub struct Compiled {
    name: Option<regex::Regex>,
    since: Option<NaiveDateTime>,
    before: Option<NaiveDateTime>,
}

/// An ISO 8601 time as a UTC instant: with a zone (`Z`, `+01:00`) or
/// without one (taken as UTC, as Nova does).
pub fn instant(t: &str) -> Option<NaiveDateTime> {
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc).naive_utc());
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(&format!("{t}T00:00:00"), "%Y-%m-%dT%H:%M:%S"))
        .ok()
}

fn time(key: &str, v: &Option<String>) -> ComputeResult<Option<NaiveDateTime>> {
    v.as_deref()
        .map(|t| {
            instant(t).ok_or_else(|| {
                ComputeError::BadRequest(format!(
                    "Invalid input for query parameters {key}. Value: {t}. '{t}' is not a 'date-time'"
                ))
            })
        })
        .transpose()
}

impl Compiled {
    /// Checks `q`: a bad regular expression or time is a 400, and so is a
    /// window that ends before it starts.
    pub fn new(q: &ListQuery) -> ComputeResult<Compiled> {
        let name = q
            .name
            .as_deref()
            .map(|n| {
                regex::Regex::new(n).map_err(|_| {
                    ComputeError::BadRequest(format!(
                        "Invalid input for query parameters name. Value: {n}. not a regular expression"
                    ))
                })
            })
            .transpose()?;
        let since = time("changes-since", &q.changes_since)?;
        let before = time("changes-before", &q.changes_before)?;
        if let (Some(a), Some(b)) = (since, before) {
            if a > b {
                return Err(ComputeError::BadRequest(
                    "The value of changes-since must be less than or equal to changes-before."
                        .into(),
                ));
            }
        }
        Ok(Compiled {
            name,
            since,
            before,
        })
    }

    /// Whether `s` passes these filters.
    pub fn matches(&self, s: &Server) -> bool {
        let updated = instant(&s.updated);
        self.name.as_ref().is_none_or(|r| r.is_match(&s.name))
            && self.since.is_none_or(|t| updated.is_some_and(|u| u >= t))
            && self.before.is_none_or(|t| updated.is_some_and(|u| u <= t))
    }
}
