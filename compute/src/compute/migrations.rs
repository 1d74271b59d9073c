//! Migration records and `GET /os-migrations` (admin only).
//!
//! A resize keeps its open state on the server (`Server::migration`: the
//! placement consumer, the flavors), and clears it when confirmed,
//! reverted or failed. Nova keeps a migration record for the history;
//! weft derives it: [`follow`] looks at every write's server changes
//! against the state they replace and writes the record the transition
//! means, in the same commit, so no code path that moves a resize (the
//! API, the in-process build loop, a remote agent's report) can forget it.
//!
//! ```text
//!  resize ─► pre-migrating ─► migrating (allocations moved) ─► finished (VERIFY_RESIZE)
//!  finished ─► confirming ─► confirmed      finished ─► reverting ─► reverted
//!  cleared before finished (no room, host failed) ─► error
//!  server deleted: finished ─► confirmed (Nova confirms on delete), else error
//! ```
//!
//! The list: Nova's filters (`host` = source or destination,
//! `source_compute`, `status`, `instance_uuid`, `migration_type`,
//! `hidden`), from 2.59 paging (`limit`, `marker` = a migration uuid)
//! and `changes-since` on the last update, newest first, unknown
//! parameters refused; 2.66 `changes-before`; 2.80 `user_id`/`project_id`
//! filters and fields.

use super::error::{ComputeError, ComputeResult};
use super::model::migration::MigrationRecord;
use super::model::server::{vm_state, Server};
use super::servers::filters::instant;
use super::service::{Ctx, Env};
use super::state::{Change, State};
use chrono::NaiveDateTime;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The status an open resize of `s` is at, from its task and vm state;
/// `None` where the server says nothing new (keep the record's).
fn open_status(s: &Server) -> Option<&'static str> {
    let m = s.migration.as_ref()?;
    Some(match (s.task_state.as_deref(), s.vm_state.as_str()) {
        (Some("resize_prep"), _) if m.moved => "migrating",
        (Some("resize_prep"), _) => "pre-migrating",
        (Some("resize_migrating"), _) => "migrating",
        (Some("resize_finish"), _) => "post-migrating",
        (Some("resize_confirming"), _) => "confirming",
        (Some("resize_reverting"), _) => "reverting",
        (None, vm_state::RESIZED) => "finished",
        _ => return None,
    })
}

/// How a resize that `before` had open ended, once it is cleared.
fn closed_status(before: &Server, deleted: bool) -> &'static str {
    match before.task_state.as_deref() {
        Some("resize_confirming") => "confirmed",
        Some("resize_reverting") => "reverted",
        _ if deleted && before.vm_state == vm_state::RESIZED => "confirmed",
        _ => "error",
    }
}

/// A new record for the resize `s` just opened.
fn opened(st: &State, s: &Server, id: u64, status: &str, now: &str) -> Option<MigrationRecord> {
    let m = s.migration.as_ref()?;
    let dest_host = s
        .host
        .as_deref()
        .and_then(|h| st.hosts.get(h))
        .map(|h| h.host_ip.clone());
    Some(MigrationRecord {
        id,
        uuid: m.id.clone(),
        server_id: s.id.clone(),
        project_id: s.project_id.clone(),
        user_id: s.user_id.clone(),
        source_compute: s.host.clone(),
        dest_compute: s.host.clone(),
        dest_host,
        old_flavor_id: m.old_flavor.id.clone(),
        new_flavor_id: m.new_flavor.id.clone(),
        migration_type: "resize".into(),
        status: status.into(),
        created_at: now.into(),
        updated_at: None,
    })
}

/// The migration record changes a write's `changes` mean (see the module
/// doc), to commit with them. Pure: `st` is the state they replace.
pub fn follow(st: &State, changes: &[Change], now: &str) -> Vec<Change> {
    let mut out: BTreeMap<String, MigrationRecord> = BTreeMap::new();
    // Found only when a resize opens: every write of the service runs
    // through here, and most touch no server.
    let mut next_id: Option<u64> = None;
    let set = |out: &mut BTreeMap<String, MigrationRecord>, uuid: &str, status: &str| {
        let Some(r) = out.get(uuid).or_else(|| st.migrations.get(uuid)) else {
            return;
        };
        if r.ended() || r.status == status {
            return;
        }
        let mut r = r.clone();
        r.status = status.into();
        r.updated_at = Some(now.into());
        out.insert(r.uuid.clone(), r);
    };
    for c in changes {
        let (before, after) = match c {
            Change::Server(s) => (st.servers.get(&s.id), Some(&**s)),
            Change::DeleteServer(id) => (st.servers.get(id), None),
            _ => continue,
        };
        let open = after.and_then(|s| s.migration.as_ref());
        // A resize that `before` had open and `after` no longer has.
        if let Some(b) = before.and_then(|b| b.migration.as_ref().map(|m| (b, m))) {
            if open.is_none_or(|m| m.id != b.1.id) {
                set(&mut out, &b.1.id, closed_status(b.0, after.is_none()));
            }
        }
        let (Some(s), Some(m)) = (after, open) else {
            continue;
        };
        let known = out.contains_key(&m.id) || st.migrations.contains_key(&m.id);
        match open_status(s) {
            Some(status) if known => set(&mut out, &m.id, status),
            status if !known => {
                let id = *next_id.get_or_insert_with(|| {
                    st.migrations.values().map(|m| m.id).max().unwrap_or(0) + 1
                });
                if let Some(r) = opened(st, s, id, status.unwrap_or("pre-migrating"), now) {
                    next_id = Some(id + 1);
                    out.insert(r.uuid.clone(), r);
                }
            }
            _ => {}
        }
    }
    out.into_values()
        .map(|r| Change::Migration(Box::new(r)))
        .collect()
}

/// The checked query of `GET /os-migrations`.
#[derive(Debug, Clone, Default)]
pub struct MigrationQuery {
    /// Equality filters: (field, value) over `host` (source or
    /// destination), `source_compute`, `status`, `instance_uuid`,
    /// `migration_type`, `user_id`, `project_id`.
    pub equal: Vec<(String, String)>,
    /// `hidden=true`: weft hides no migration, so none match.
    pub hidden: bool,
    /// Page size (2.59).
    pub limit: Option<usize>,
    /// Uuid of the last migration of the previous page (2.59).
    pub marker: Option<String>,
    /// Only updated at or after (2.59).
    pub changes_since: Option<NaiveDateTime>,
    /// Only updated at or before (2.66).
    pub changes_before: Option<NaiveDateTime>,
}

fn bad(key: &str, v: &str, why: &str) -> ComputeError {
    ComputeError::BadRequest(format!(
        "Invalid input for query parameters {key}. Value: {v}. {why}"
    ))
}

impl MigrationQuery {
    /// Parses the query string as Nova's schema for `mv` does: before 2.59
    /// unknown parameters (and paging) are ignored; from 2.59 they are a 400.
    pub fn parse(q: &str, mv: (u32, u32)) -> ComputeResult<MigrationQuery> {
        let mut out = MigrationQuery::default();
        let paged = mv >= (2, 59);
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let time = || instant(&v).ok_or_else(|| bad(&k, &v, "is not a 'date-time'"));
            match k.as_ref() {
                "host" | "source_compute" | "status" | "instance_uuid" | "migration_type" => {
                    out.equal.push((k.to_string(), v.to_string()))
                }
                "user_id" | "project_id" if mv >= (2, 80) => {
                    out.equal.push((k.to_string(), v.to_string()))
                }
                "hidden" => {
                    out.hidden = matches!(
                        v.to_ascii_lowercase().as_str(),
                        "1" | "true" | "yes" | "on" | "t" | "y"
                    )
                }
                "limit" if paged => {
                    out.limit = Some(
                        v.parse()
                            .map_err(|_| bad(&k, &v, "is not a non-negative integer"))?,
                    )
                }
                "marker" if paged => out.marker = Some(v.to_string()),
                "changes-since" if paged => out.changes_since = Some(time()?),
                "changes-before" if mv >= (2, 66) => out.changes_before = Some(time()?),
                _ if paged => {
                    return Err(ComputeError::BadRequest(format!(
                        "Invalid input for query parameters {k}. Additional properties are not \
                         allowed ('{k}' was unexpected)"
                    )))
                }
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (out.changes_since, out.changes_before) {
            if b < a {
                return Err(ComputeError::BadRequest(
                    "The value of changes-since must be less than or equal to changes-before."
                        .into(),
                ));
            }
        }
        Ok(out)
    }

    fn matches(&self, m: &MigrationRecord) -> bool {
        let equal = self.equal.iter().all(|(k, v)| match k.as_str() {
            "host" => {
                m.source_compute.as_deref() == Some(v) || m.dest_compute.as_deref() == Some(v)
            }
            "source_compute" => m.source_compute.as_deref() == Some(v),
            "status" => &m.status == v,
            "instance_uuid" => &m.server_id == v,
            "migration_type" => &m.migration_type == v,
            "user_id" => &m.user_id == v,
            "project_id" => &m.project_id == v,
            _ => true,
        });
        let at = instant(m.updated_at.as_deref().unwrap_or(&m.created_at));
        equal
            && !self.hidden
            && self
                .changes_since
                .is_none_or(|t| at.is_some_and(|u| u >= t))
            && self
                .changes_before
                .is_none_or(|t| at.is_some_and(|u| u <= t))
    }
}

/// `GET /os-migrations`: the page, newest first (created, then id), and
/// whether a full page was cut (the caller links the next one).
pub fn list<'a>(
    st: &'a State,
    env: &Env,
    ctx: &Ctx,
    q: &MigrationQuery,
) -> ComputeResult<(Vec<&'a MigrationRecord>, bool)> {
    env.authz
        .check(ctx, "os_compute_api:os-migrations:index", &json!({}))?;
    let mut rows: Vec<&MigrationRecord> = st.migrations.values().filter(|m| q.matches(m)).collect();
    rows.sort_by(|a, b| {
        instant(&b.created_at)
            .cmp(&instant(&a.created_at))
            .then(b.id.cmp(&a.id))
    });
    if let Some(marker) = &q.marker {
        let at = rows.iter().position(|m| &m.uuid == marker).ok_or_else(|| {
            ComputeError::BadRequest(format!("Marker {marker} could not be found."))
        })?;
        rows.drain(..=at);
    }
    let full = q.limit.is_some_and(|l| rows.len() >= l && l > 0);
    rows.truncate(q.limit.unwrap_or(usize::MAX));
    Ok((rows, full))
}

/// A flavor id as Nova's `*_instance_type_id` shows it: an integer where
/// it is one (Nova's are its internal integer ids), else the id.
fn flavor_ref(id: &str) -> Value {
    id.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(id))
}

/// A record as Nova shows it at `mv`.
pub fn view(m: &MigrationRecord, mv: (u32, u32)) -> Value {
    let mut v = json!({
        "id": m.id,
        "instance_uuid": m.server_id,
        "source_compute": m.source_compute,
        "source_node": m.source_compute,
        "dest_compute": m.dest_compute,
        "dest_node": m.dest_compute,
        "dest_host": m.dest_host,
        "old_instance_type_id": flavor_ref(&m.old_flavor_id),
        "new_instance_type_id": flavor_ref(&m.new_flavor_id),
        "status": m.status,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    });
    if mv >= (2, 23) {
        v["migration_type"] = json!(m.migration_type);
    }
    if mv >= (2, 59) {
        v["uuid"] = json!(m.uuid);
    }
    if mv >= (2, 80) {
        v["user_id"] = json!(m.user_id);
        v["project_id"] = json!(m.project_id);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::model::server::Migration;

    fn flavor(id: &str, vcpus: u32) -> Value {
        json!({"id": id, "name": id, "vcpus": vcpus, "ram": 64, "disk": 1,
               "ephemeral": 0, "swap": 0, "extra_specs": {}})
    }

    fn server() -> Server {
        serde_json::from_value(json!({
            "id": "s", "name": "s", "project_id": "p", "user_id": "u",
            "flavor": flavor("1", 1), "image_ref": "img", "metadata": {},
            "security_groups": [], "nics": [], "auto_network": false, "launch_index": 0,
            "reservation_id": "r", "vm_state": "active", "power_state": 1, "host": "h1",
            "allocated": true, "ports": [], "created_ports": [], "addresses": {},
            "created": "t0", "updated": "t0", "tags": [], "locked": false,
            "instance_name": "i", "hostname": "h",
        }))
        .unwrap()
    }

    /// `st` after `c`, with the records `follow` made for it.
    fn step(st: &mut State, c: Change, now: &str) -> Vec<Change> {
        let more = follow(st, std::slice::from_ref(&c), now);
        st.apply_changes(&[c]);
        st.apply_changes(&more);
        more
    }

    fn status(st: &State) -> &str {
        st.migrations
            .values()
            .next()
            .map_or("", |m| m.status.as_str())
    }

    fn with(s: &Server, f: impl Fn(&mut Server)) -> Change {
        let mut s = s.clone();
        f(&mut s);
        Change::Server(Box::new(s))
    }

    #[test]
    fn a_resize_record_follows_the_server_to_confirmed_or_error() {
        let mut st = State::default();
        let s = server();
        st.apply_changes(&[Change::Server(Box::new(s.clone()))]);
        // Nothing about a resize: no record.
        assert!(step(&mut st, with(&s, |x| x.name = "n".into()), "t1").is_empty());
        let m = Migration {
            id: "m1".into(),
            old_flavor: serde_json::from_value(flavor("1", 1)).unwrap(),
            new_flavor: serde_json::from_value(flavor("2", 2)).unwrap(),
            prior_vm_state: "active".into(),
            moved: false,
        };
        let open = |x: &mut Server| {
            x.migration = Some(m.clone());
            x.task_state = Some("resize_prep".into());
        };
        step(&mut st, with(&s, open), "t2");
        let r = &st.migrations["m1"];
        assert_eq!(
            (r.id, r.status.as_str(), r.created_at.as_str()),
            (1, "pre-migrating", "t2")
        );
        assert_eq!(
            (r.old_flavor_id.as_str(), r.new_flavor_id.as_str()),
            ("1", "2")
        );
        assert_eq!(r.source_compute.as_deref(), Some("h1"));
        let s = st.servers["s"].clone();
        step(
            &mut st,
            with(&s, |x| x.migration.as_mut().unwrap().moved = true),
            "t3",
        );
        assert_eq!(status(&st), "migrating");
        let s = st.servers["s"].clone();
        step(
            &mut st,
            with(&s, |x| {
                x.task_state = None;
                x.vm_state = "resized".into();
            }),
            "t4",
        );
        assert_eq!(status(&st), "finished");
        // An unrelated write of the resized server changes nothing.
        let s = st.servers["s"].clone();
        assert!(step(&mut st, with(&s, |x| x.locked = true), "t5").is_empty());
        let s = st.servers["s"].clone();
        step(
            &mut st,
            with(&s, |x| x.task_state = Some("resize_confirming".into())),
            "t6",
        );
        assert_eq!(status(&st), "confirming");
        let s = st.servers["s"].clone();
        step(
            &mut st,
            with(&s, |x| {
                x.task_state = None;
                x.migration = None;
                x.vm_state = "active".into();
            }),
            "t7",
        );
        assert_eq!(status(&st), "confirmed");
        assert_eq!(st.migrations["m1"].updated_at.as_deref(), Some("t7"));

        // A second resize the host cannot take: cleared from resize_prep.
        let s = st.servers["s"].clone();
        let m2 = Migration {
            id: "m2".into(),
            ..m.clone()
        };
        step(
            &mut st,
            with(&s, |x| {
                x.migration = Some(m2.clone());
                x.task_state = Some("resize_prep".into());
            }),
            "t8",
        );
        assert_eq!(st.migrations["m2"].id, 2);
        let s = st.servers["s"].clone();
        step(
            &mut st,
            with(&s, |x| {
                x.migration = None;
                x.task_state = None;
            }),
            "t9",
        );
        assert_eq!(st.migrations["m2"].status, "error");
        assert_eq!(
            st.migrations["m1"].status, "confirmed",
            "an ended record stays"
        );

        // Deleted while resized: confirmed; while resizing: error.
        let s = st.servers["s"].clone();
        let m3 = Migration {
            id: "m3".into(),
            ..m
        };
        step(
            &mut st,
            with(&s, |x| {
                x.migration = Some(m3.clone());
                x.vm_state = "resized".into();
            }),
            "t10",
        );
        assert_eq!(st.migrations["m3"].status, "finished");
        step(&mut st, Change::DeleteServer("s".into()), "t11");
        assert_eq!(st.migrations["m3"].status, "confirmed");
    }
}
