//! Simple tenant usage (`GET /os-simple-tenant-usage[/{tenant_id}]`):
//! what each project's servers used over a period, in hours, vCPU-hours,
//! MiB-hours and GiB-hours, as Nova computes it.
//!
//! A server counts from its launch (`launched_at`; one that never went
//! active counts nothing) to its delete (its tombstone's time, see
//! [`super::servers::tombstone`]) or the period's end, cut to the period;
//! its flavor is the one it has now (Nova bills a resized server at its
//! current flavor for the whole period). Pure: the clock is an argument,
//! so tests run it on fixed times.
//!
//! Paging (2.40): servers in creation order, `limit` (at most
//! [`MAX_LIMIT`], Nova's `max_limit`; also the cut before 2.40) and
//! `marker` (a server id); the page's servers make the totals.
//!
//! Deviation: tombstones are kept [`super::servers::tombstone::KEEP_DAYS`]
//! days, so a server deleted before that is missing from older periods
//! (Nova keeps its soft-deleted rows until an operator archives them).

use super::error::{ComputeError, ComputeResult};
use super::model::server::{vm_state, Server};
use super::servers::filters::instant;
use chrono::NaiveDateTime;
use serde::Serialize;

/// Nova's `[api] max_limit`: the most servers one answer covers.
pub const MAX_LIMIT: usize = 1000;

/// The checked query of a usage request.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// The period's start.
    pub start: NaiveDateTime,
    /// Its end, no later than now.
    pub stop: NaiveDateTime,
    /// `detailed=1`: each project's `server_usages` too (the index).
    pub detailed: bool,
    /// Servers per answer.
    pub limit: usize,
    /// The last server of the previous page (2.40).
    pub marker: Option<String>,
}

/// One server's usage in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerUsage {
    /// The server's id.
    pub instance_id: String,
    /// Its name.
    pub name: String,
    /// Its project.
    pub tenant_id: String,
    /// Its flavor's name.
    pub flavor: String,
    /// Hours it ran within the period.
    pub hours: f64,
    /// Its flavor's RAM, MiB.
    pub memory_mb: u64,
    /// Its flavor's root plus ephemeral disk, GiB.
    pub local_gb: u64,
    /// Its flavor's vCPUs.
    pub vcpus: u32,
    /// When it launched.
    pub started_at: String,
    /// When it was deleted, if it was.
    pub ended_at: Option<String>,
    /// `terminated` once deleted, else its vm_state.
    pub state: String,
    /// Seconds from launch to delete, or to now.
    pub uptime: i64,
}

/// A project's usage in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantUsage {
    /// The project.
    pub tenant_id: String,
    /// Its servers (detailed answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_usages: Option<Vec<ServerUsage>>,
    /// Sum of local_gb x hours.
    pub total_local_gb_usage: f64,
    /// Sum of vcpus x hours.
    pub total_vcpus_usage: f64,
    /// Sum of memory_mb x hours.
    pub total_memory_mb_usage: f64,
    /// Sum of hours.
    pub total_hours: f64,
    /// The period's start.
    pub start: String,
    /// The period's end.
    pub stop: String,
}

/// Times as Nova shows them (UTC, no zone, microseconds).
pub fn show_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn bad_time(v: &str) -> ComputeError {
    ComputeError::BadRequest(format!(
        "Invalid datetime string: {v} is not a date-time (e.g. 2012-01-20T00:00:00)"
    ))
}

/// A `start`/`end` value: Nova's forms (`2012-01-20T10:00:00`, with
/// `.ffffff`, or with a space before the time) and ISO 8601 with a zone.
fn parse_time(v: &str) -> ComputeResult<NaiveDateTime> {
    instant(v)
        .or_else(|| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").ok())
        .ok_or_else(|| bad_time(v))
}

impl UsageQuery {
    /// Parses the query string at `now`: a missing `start` or `end` is now
    /// (so one without `start` is refused, as Nova's), the end is cut to
    /// now, and the start must come before it; `limit`/`marker` from 2.40.
    pub fn parse(q: &str, mv: (u32, u32), now: NaiveDateTime) -> ComputeResult<UsageQuery> {
        let (mut start, mut stop, mut detailed) = (now, now, false);
        let (mut limit, mut marker) = (MAX_LIMIT, None);
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "start" => start = parse_time(&v)?,
                "end" => stop = parse_time(&v)?,
                // Nova takes `1`; the SDK behind `openstack usage list`
                // sends `True`, taken the same.
                "detailed" => detailed = v == "1" || v.eq_ignore_ascii_case("true"),
                "limit" if mv >= (2, 40) => {
                    let n: i64 = v.parse().map_err(|_| {
                        ComputeError::BadRequest("limit param must be an integer".into())
                    })?;
                    if n < 0 {
                        return Err(ComputeError::BadRequest(
                            "limit param must be positive".into(),
                        ));
                    }
                    limit = usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
                }
                "marker" if mv >= (2, 40) => marker = Some(v.to_string()),
                _ => {}
            }
        }
        if start >= stop {
            return Err(ComputeError::BadRequest(
                "Invalid start time. The start time cannot occur after the end time.".into(),
            ));
        }
        Ok(UsageQuery {
            start,
            stop: stop.min(now),
            detailed,
            limit,
            marker,
        })
    }
}

/// Hours of `[launched, terminated)` within `[start, stop]` (Nova's
/// `_hours_for`): nothing for a server never launched.
pub fn hours(
    launched: Option<NaiveDateTime>,
    terminated: Option<NaiveDateTime>,
    start: NaiveDateTime,
    stop: NaiveDateTime,
) -> f64 {
    let Some(launched) = launched else {
        return 0.0;
    };
    if terminated.is_some_and(|t| t < start) || launched > stop {
        return 0.0;
    }
    let from = launched.max(start);
    let to = terminated.map_or(stop, |t| t.min(stop));
    (to - from).num_microseconds().unwrap_or(0) as f64 / 3_600_000_000.0
}

/// A server's launch and delete times (`None` delete while it lives).
fn lifetime(s: &Server) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
    let launched = s.launched_at.as_deref().and_then(instant);
    let ended = (s.vm_state == vm_state::DELETED)
        .then(|| instant(&s.updated))
        .flatten();
    (launched, ended)
}

fn server_usage(s: &Server, q: &UsageQuery, now: NaiveDateTime) -> Option<ServerUsage> {
    let (launched, ended) = lifetime(s);
    let started = launched?;
    let state = if ended.is_some() {
        "terminated".to_string()
    } else {
        s.vm_state.clone()
    };
    Some(ServerUsage {
        instance_id: s.id.clone(),
        name: s.name.clone(),
        tenant_id: s.project_id.clone(),
        flavor: s.flavor.name.clone(),
        hours: hours(launched, ended, q.start, q.stop),
        memory_mb: s.flavor.ram,
        local_gb: s.flavor.disk + s.flavor.ephemeral,
        vcpus: s.flavor.vcpus,
        started_at: show_time(started),
        ended_at: ended.map(show_time),
        state,
        uptime: (ended.unwrap_or(now) - started).num_seconds(),
    })
}

/// The usage of `servers` (live ones and tombstones) in `q`'s period, for
/// one project or all: per project (first seen first), and the page's
/// server usages in order (the last one is the next page's marker).
pub fn usages<'a>(
    servers: impl IntoIterator<Item = &'a Server>,
    tenant: Option<&str>,
    q: &UsageQuery,
    now: NaiveDateTime,
) -> ComputeResult<(Vec<TenantUsage>, Vec<ServerUsage>)> {
    // Nova's window: launched before the end, not deleted before the start.
    let mut active: Vec<&Server> = servers
        .into_iter()
        .filter(|s| tenant.is_none_or(|t| s.project_id == t))
        .filter(|s| {
            let (launched, ended) = lifetime(s);
            launched.is_some_and(|l| l < q.stop) && ended.is_none_or(|e| e > q.start)
        })
        .collect();
    active.sort_by(|a, b| {
        instant(&a.created)
            .cmp(&instant(&b.created))
            .then(a.id.cmp(&b.id))
    });
    if let Some(m) = &q.marker {
        let at = active
            .iter()
            .position(|s| &s.id == m)
            .ok_or_else(|| ComputeError::BadRequest(format!("Marker {m} could not be found.")))?;
        active.drain(..=at);
    }
    active.truncate(q.limit);
    let page: Vec<ServerUsage> = active
        .iter()
        .filter_map(|s| server_usage(s, q, now))
        .collect();
    let mut tenants: Vec<TenantUsage> = Vec::new();
    for u in &page {
        let i = match tenants.iter().position(|t| t.tenant_id == u.tenant_id) {
            Some(i) => i,
            None => {
                tenants.push(TenantUsage {
                    tenant_id: u.tenant_id.clone(),
                    server_usages: q.detailed.then(Vec::new),
                    total_local_gb_usage: 0.0,
                    total_vcpus_usage: 0.0,
                    total_memory_mb_usage: 0.0,
                    total_hours: 0.0,
                    start: show_time(q.start),
                    stop: show_time(q.stop),
                });
                tenants.len() - 1
            }
        };
        let t = &mut tenants[i];
        t.total_local_gb_usage += u.local_gb as f64 * u.hours;
        t.total_vcpus_usage += f64::from(u.vcpus) * u.hours;
        t.total_memory_mb_usage += u.memory_mb as f64 * u.hours;
        t.total_hours += u.hours;
        if let Some(list) = &mut t.server_usages {
            list.push(u.clone());
        }
    }
    Ok((tenants, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        instant(s).unwrap()
    }

    #[test]
    fn hours_are_cut_to_the_period_and_the_servers_life() {
        let (a, b) = (t("2026-01-01T00:00:00"), t("2026-01-02T00:00:00"));
        // Ran the whole day.
        assert_eq!(hours(Some(t("2025-12-01T00:00:00")), None, a, b), 24.0);
        // Launched at 06:00, deleted at 18:30.
        let h = hours(
            Some(t("2026-01-01T06:00:00")),
            Some(t("2026-01-01T18:30:00")),
            a,
            b,
        );
        assert_eq!(h, 12.5);
        // Deleted before, launched after, never launched: nothing.
        assert_eq!(
            hours(
                Some(t("2025-12-01T00:00:00")),
                Some(t("2025-12-31T00:00:00")),
                a,
                b
            ),
            0.0
        );
        assert_eq!(hours(Some(t("2026-01-03T00:00:00")), None, a, b), 0.0);
        assert_eq!(hours(None, None, a, b), 0.0);
        // Fractions of a second count.
        let h = hours(Some(t("2026-01-01T23:59:59.100000")), None, a, b);
        assert!((h - 0.9 / 3600.0).abs() < 1e-12, "{h}");
    }

    #[test]
    fn the_query_needs_a_start_before_the_end_and_cuts_the_end_to_now() {
        let now = t("2026-06-01T12:00:00");
        let q = UsageQuery::parse(
            "start=2026-05-01T00:00:00&end=2026-07-01%2000:00:00.000000&detailed=1",
            (2, 1),
            now,
        )
        .unwrap();
        assert_eq!(
            (q.start, q.stop, q.detailed),
            (t("2026-05-01T00:00:00"), now, true)
        );
        assert_eq!(q.limit, MAX_LIMIT);
        // No start: start is now, so the end must come later (then cut to now).
        assert!(UsageQuery::parse("end=2026-05-01T00:00:00", (2, 1), now).is_err());
        assert!(UsageQuery::parse("", (2, 1), now).is_err());
        let q = UsageQuery::parse("end=2026-07-01T00:00:00", (2, 1), now).unwrap();
        assert_eq!((q.start, q.stop), (now, now));
        assert!(UsageQuery::parse("start=yesterday", (2, 1), now).is_err());
        assert!(UsageQuery::parse(
            "start=2026-05-02T00:00:00&end=2026-05-01T00:00:00",
            (2, 1),
            now
        )
        .is_err());
        // Paging only from 2.40.
        let s = "start=2026-05-01T00:00:00&limit=2&marker=x";
        assert_eq!(UsageQuery::parse(s, (2, 39), now).unwrap().limit, MAX_LIMIT);
        let q = UsageQuery::parse(s, (2, 40), now).unwrap();
        assert_eq!((q.limit, q.marker.as_deref()), (2, Some("x")));
        for bad in ["limit=-1", "limit=x"] {
            let s = format!("start=2026-05-01T00:00:00&{bad}");
            assert!(UsageQuery::parse(&s, (2, 40), now).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> NaiveDateTime {
        instant(s).unwrap()
    }

    /// A server of `project` with 2 vCPUs, 512 MiB, 10+5 GiB.
    fn srv(
        id: &str,
        project: &str,
        created: &str,
        launched: Option<&str>,
        deleted: Option<&str>,
    ) -> Server {
        serde_json::from_value(json!({
            "id": id, "name": format!("n-{id}"), "project_id": project, "user_id": "u",
            "flavor": {"id": "f", "name": "small", "vcpus": 2, "ram": 512, "disk": 10,
                       "ephemeral": 5, "swap": 0, "extra_specs": {}},
            "image_ref": "img", "metadata": {}, "security_groups": [], "nics": [],
            "auto_network": false, "launch_index": 0, "reservation_id": "r",
            "vm_state": if deleted.is_some() { "deleted" } else { "active" },
            "power_state": 1, "allocated": true, "ports": [], "created_ports": [],
            "addresses": {}, "created": created, "updated": deleted.unwrap_or(created),
            "launched_at": launched, "tags": [], "locked": false,
            "instance_name": "i", "hostname": "h",
        }))
        .unwrap()
    }

    #[test]
    fn usages_per_project_over_live_and_deleted_servers_with_paging() {
        let now = t("2026-01-03T00:00:00");
        let servers = [
            srv(
                "a",
                "p1",
                "2025-12-31T00:00:00",
                Some("2025-12-31T00:00:00"),
                None,
            ),
            srv(
                "b",
                "p1",
                "2026-01-01T06:00:00",
                Some("2026-01-01T06:00:00"),
                Some("2026-01-01T18:00:00"),
            ),
            srv(
                "c",
                "p2",
                "2026-01-01T12:00:00",
                Some("2026-01-01T12:00:00"),
                None,
            ),
            // Never launched, deleted before the period: not counted.
            srv("d", "p2", "2026-01-01T00:00:00", None, None),
            srv(
                "e",
                "p2",
                "2025-12-01T00:00:00",
                Some("2025-12-01T00:00:00"),
                Some("2025-12-02T00:00:00"),
            ),
        ];
        let q = UsageQuery::parse(
            "start=2026-01-01T00:00:00&end=2026-01-02T00:00:00&detailed=1",
            (2, 40),
            now,
        )
        .unwrap();
        let (tenants, page) = usages(&servers, None, &q, now).unwrap();
        let ids: Vec<&str> = page.iter().map(|u| u.instance_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(tenants.len(), 2);
        let p1 = &tenants[0];
        assert_eq!(p1.tenant_id, "p1");
        assert_eq!(p1.total_hours, 36.0);
        assert_eq!(p1.total_vcpus_usage, 72.0);
        assert_eq!(p1.total_memory_mb_usage, 512.0 * 36.0);
        assert_eq!(p1.total_local_gb_usage, 15.0 * 36.0);
        assert_eq!(
            (p1.start.as_str(), p1.stop.as_str()),
            ("2026-01-01T00:00:00.000000", "2026-01-02T00:00:00.000000")
        );
        let b = &p1.server_usages.as_ref().unwrap()[1];
        assert_eq!(
            (b.state.as_str(), b.hours, b.uptime),
            ("terminated", 12.0, 12 * 3600)
        );
        assert_eq!(b.ended_at.as_deref(), Some("2026-01-01T18:00:00.000000"));
        let a = &p1.server_usages.as_ref().unwrap()[0];
        assert_eq!(
            (a.state.as_str(), a.ended_at.as_deref(), a.uptime),
            ("active", None, 3 * 86400)
        );
        assert_eq!(tenants[1].total_hours, 12.0);

        // One project, not detailed.
        let q2 = UsageQuery {
            detailed: false,
            ..q.clone()
        };
        let (tenants, _) = usages(&servers, Some("p2"), &q2, now).unwrap();
        assert_eq!(tenants.len(), 1);
        assert!(tenants[0].server_usages.is_none());

        // Pages of two: the marker is the last server of the page.
        let q3 = UsageQuery {
            limit: 2,
            ..q.clone()
        };
        let (_, page) = usages(&servers, None, &q3, now).unwrap();
        assert_eq!(page.len(), 2);
        let q4 = UsageQuery {
            marker: Some(page[1].instance_id.clone()),
            ..q3.clone()
        };
        let (tenants, page) = usages(&servers, None, &q4, now).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(tenants[0].tenant_id, "p2");
        let q5 = UsageQuery {
            marker: Some("nope".into()),
            ..q3
        };
        assert!(usages(&servers, None, &q5, now).is_err());
    }
}
