//! `GET /allocation_candidates`: the query into a [`Request`], the pure
//! search (`candidates.rs`), and the answer serialized from borrowed structs.

use super::{since, Caller, Mv, S};
use crate::placement::candidates::{self, Group, Request};
use crate::placement::error::PlacementResult;
use crate::placement::error::{Code, PlacementError};
use crate::placement::microversion::Version;
use crate::placement::query::{self, Params};
use crate::placement::service::canonical_uuid;
use crate::placement::State;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

type R = PlacementResult<Response>;

/// Splits `resources1` into (`resources`, `1`) for the keys of a group.
fn split_key(k: &str) -> Option<(&'static str, &str)> {
    for base in ["resources", "required", "member_of", "in_tree"] {
        if let Some(s) = k.strip_prefix(base) {
            return Some((base, s));
        }
    }
    None
}

fn valid_suffix(v: Version, s: &str) -> bool {
    if v.at_least(33) {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    } else {
        // `[1-9][0-9]*`: `resources01` is no group.
        !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
    }
}

/// An unknown key, worded as Placement's JSON schema validator words it:
/// from 1.25 the group keys are patterns, and a key matching none of them
/// is listed against them.
fn bad_key(v: Version, k: &str) -> PlacementError {
    if !v.at_least(25) {
        return PlacementError::bad_query(format!(
            "Invalid query string parameters: Additional properties are not allowed ('{k}' was \
             unexpected)"
        ));
    }
    let suffix = if v.at_least(33) {
        "[a-zA-Z0-9_-]{1,64}"
    } else {
        "[1-9][0-9]*"
    };
    let bases: &[&str] = if v.at_least(31) {
        &["in_tree", "member_of", "required", "resources"]
    } else {
        &["member_of", "required", "resources"]
    };
    let patterns: Vec<String> = bases
        .iter()
        .map(|b| format!("'^{b}({suffix})?$'"))
        .collect();
    PlacementError::bad_query(format!(
        "Invalid query string parameters: '{k}' does not match any of the regexes: {}",
        patterns.join(", ")
    ))
}

/// The query of `GET /allocation_candidates` at `v`, as a [`Request`].
pub fn candidates_request(st: &State, v: Version, q: &Params) -> PlacementResult<Request> {
    let mut suffixes: BTreeSet<&str> = BTreeSet::new();
    // The groups given, unsuffixed included, in first-seen order.
    let mut present: Vec<&str> = Vec::new();
    for k in q.keys() {
        match k {
            "limit" if v.at_least(16) => continue,
            "group_policy" if v.at_least(25) => continue,
            "root_required" if v.at_least(35) => continue,
            "same_subtree" if v.at_least(36) => continue,
            _ => {}
        }
        let (base, suffix) = split_key(k).ok_or_else(|| bad_key(v, k))?;
        let from = match base {
            "resources" => 10,
            "required" => 17,
            "member_of" => 21,
            _ => 31,
        };
        if !v.at_least(from) {
            return Err(bad_key(v, k));
        }
        if !suffix.is_empty() {
            if !v.at_least(25) || !valid_suffix(v, suffix) {
                return Err(bad_key(v, k));
            }
            suffixes.insert(suffix);
        }
        if !present.contains(&suffix) {
            present.push(suffix);
        }
    }
    let same_subtree = same_subtrees(q)?;
    check_resources_given(v, q, &present, &same_subtree)?;
    let group = |suffix: &str| -> PlacementResult<Group> {
        let key = |b: &str| format!("{b}{suffix}");
        let rkey = key("resources");
        let in_tree = match q.one(&key("in_tree"))? {
            None => None,
            Some(u) => Some(canonical_uuid(u).ok_or_else(|| {
                PlacementError::bad_query(format!(
                    "Invalid query string parameters: Expected '{}' parameter to be a format of \
                     uuid. Got: {u}",
                    key("in_tree")
                ))
            })?),
        };
        Ok(Group {
            suffix: suffix.to_string(),
            resources: match q.one(&rkey)? {
                Some(r) => query::resources(st, &rkey, r)?,
                None => BTreeMap::new(),
            },
            // Before 1.39 a repeated `required` is one value, the last
            // given (Placement reads the query as a dict); from 1.39 each
            // is a further condition.
            required: if v.at_least(39) {
                query::required(st, v, &key("required"), q.all(&key("required")))?
            } else {
                query::required(st, v, &key("required"), q.all(&key("required")).last())?
            },
            member_of: query::member_of(v, q.all(&key("member_of")))?,
            in_tree,
        })
    };
    let unsuffixed = group("")?;
    let groups = suffixes
        .iter()
        .map(|s| group(s))
        .collect::<PlacementResult<Vec<_>>>()?;
    // A repeated `group_policy` or `limit` is read at its first value, as
    // Placement reads them.
    let isolate = match q.all("group_policy").next() {
        None if groups.len() > 1 => {
            return Err(PlacementError::bad_query(
                "The \"group_policy\" parameter is required when specifying more than one \
                 \"resources{N}\" parameter.",
            ))
        }
        None | Some("none") => false,
        Some("isolate") => true,
        Some(o) => {
            return Err(PlacementError::bad_query(format!(
                "Invalid query string parameters: '{o}' is not one of ['none', 'isolate']"
            )))
        }
    };
    let limit = match q.all("limit").next() {
        None => None,
        Some(l) => Some(l.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            PlacementError::bad_query(format!(
                "Invalid query string parameters: '{l}' does not match '^[1-9][0-9]*$'\n\n\
                 Failed validating 'pattern' in schema['properties']['limit']"
            ))
        })?),
    };
    let root_required = match q.one("root_required")? {
        None => Default::default(),
        Some(r) if r.starts_with("in:") => {
            return Err(PlacementError::bad_query(format!(
                "Invalid query string parameters: Expected 'root_required' parameter value of \
                 the form: HW_CPU_X86_VMX,!CUSTOM_MAGIC. Got: {r}"
            )))
        }
        Some(r) => query::required(st, v, "root_required", [r])?,
    };
    Ok(Request {
        unsuffixed,
        groups,
        isolate,
        limit,
        root_required,
        same_subtree,
        nested: v.at_least(29),
    })
}

/// `same_subtree=1,2` (repeatable, 1.36): sets of group suffixes.
fn same_subtrees(q: &Params) -> PlacementResult<Vec<BTreeSet<String>>> {
    q.all("same_subtree")
        .map(|value| {
            let set: BTreeSet<String> = value.split(',').map(|s| s.trim().to_string()).collect();
            if set.contains("") {
                return Err(PlacementError::bad_query(
                    "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
                ));
            }
            Ok(set)
        })
        .collect()
}

/// Which groups must have resources, judged on the keys given before any
/// value is read (Placement's order, so `required=NOPE` without resources
/// is the orphan error, not the unknown trait). From 1.36 a group without
/// resources is allowed when `same_subtree` names it; before, every group
/// needs resources.
fn check_resources_given(
    v: Version,
    q: &Params,
    present: &[&str],
    same_subtree: &[BTreeSet<String>],
) -> PlacementResult<()> {
    let has = |base: &str, s: &str| q.all(&format!("{base}{s}")).next().is_some();
    if !v.at_least(25) && !has("resources", "") {
        // Before granular groups the schema itself requires `resources`.
        return Err(PlacementError::bad_query(
            "Invalid query string parameters: 'resources' is a required property",
        ));
    }
    let resourceless: Vec<&str> = present
        .iter()
        .copied()
        .filter(|s| !has("resources", s))
        .collect();
    let undefined = |message: String| PlacementError::BadRequest {
        code: Code::Undefined,
        message,
    };
    if v.at_least(36) && resourceless.len() == present.len() {
        return Err(PlacementError::BadRequest {
            code: Code::MissingValue,
            message: "There must be at least one resources or resources[$S] parameter.".into(),
        });
    }
    if present.is_empty() {
        return Err(if v.at_least(25) {
            undefined(
                "At least one request group (`resources` or `resources{$S}`) is required.".into(),
            )
        } else {
            PlacementError::bad_query(
                "Invalid query string parameters: 'resources' is a required property",
            )
        });
    }
    let quoted = |list: &[&str]| {
        let items: Vec<String> = list.iter().map(|s| format!("'{s}'")).collect();
        format!("[{}]", items.join(", "))
    };
    if v.at_least(36) {
        let named: BTreeSet<&str> = same_subtree.iter().flatten().map(String::as_str).collect();
        let bad: Vec<&str> = resourceless
            .iter()
            .copied()
            .filter(|s| !named.contains(s))
            .collect();
        if !bad.is_empty() {
            return Err(PlacementError::bad_query(format!(
                "Resourceless suffixed group request should be specified in `same_subtree` \
                 query param: bad group(s) - {}.",
                quoted(&bad)
            )));
        }
        let unknown: Vec<&str> = named
            .iter()
            .copied()
            .filter(|s| !present.contains(s))
            .collect();
        if !unknown.is_empty() {
            return Err(PlacementError::bad_query(format!(
                "Real suffixes should be specified in `same_subtree`: {} not found in {}.",
                quoted(&unknown),
                quoted(present)
            )));
        }
        return Ok(());
    }
    if resourceless.is_empty() {
        return Ok(());
    }
    // A `required` with one positive trait or `in:` set is an orphan; only
    // forbidden traits are not (Placement keeps those apart).
    let positive = |s: &str| {
        q.all(&format!("required{s}"))
            .any(|v| v.starts_with("in:") || v.split(',').any(|t| !t.trim().starts_with('!')))
    };
    let orphans = |pred: &dyn Fn(&str) -> bool, base: &str| -> Vec<String> {
        resourceless
            .iter()
            .filter(|s| pred(s))
            .map(|s| format!("{base}{s}"))
            .collect()
    };
    let traits = orphans(&positive, "required");
    if !traits.is_empty() {
        return Err(undefined(format!(
            "All traits parameters must be associated with resources.  Found the following \
             orphaned traits keys: {}",
            traits.join(", ")
        )));
    }
    let aggs = orphans(&|s: &str| has("member_of", s), "member_of");
    if !aggs.is_empty() {
        return Err(undefined(format!(
            "All member_of parameters must be associated with resources. Found the following \
             orphaned member_of keys: {}",
            aggs.join(", ")
        )));
    }
    Err(undefined(
        "All request groups must specify resources.".into(),
    ))
}

/// One provider's share of an allocation request.
#[derive(Serialize)]
struct Share<'a> {
    resources: &'a BTreeMap<&'a str, u64>,
}

/// The list form of an allocation request's items (before 1.12).
#[derive(Serialize)]
struct ListShare<'a> {
    resource_provider: Uuid<'a>,
    resources: &'a BTreeMap<&'a str, u64>,
}

#[derive(Serialize)]
struct Uuid<'a> {
    uuid: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum AllocationRequest<'a> {
    List {
        allocations: Vec<ListShare<'a>>,
    },
    Dict {
        allocations: BTreeMap<&'a str, Share<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mappings: Option<&'a BTreeMap<&'a str, BTreeSet<&'a str>>>,
    },
}

#[derive(Serialize)]
struct Capacity {
    capacity: u64,
    used: u64,
}

#[derive(Serialize)]
struct Summary<'a> {
    resources: BTreeMap<&'a str, Capacity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<&'a BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_provider_uuid: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_provider_uuid: Option<&'a str>,
}

/// The body of `GET /allocation_candidates`.
#[derive(Serialize)]
pub struct CandidatesBody<'a> {
    allocation_requests: Vec<AllocationRequest<'a>>,
    provider_summaries: BTreeMap<&'a str, Summary<'a>>,
}

/// The response of `GET /allocation_candidates` at `v`, borrowing from the
/// snapshot and the search (serialized straight to bytes: at thousands of
/// candidates an intermediate `serde_json::Value` cost more than the search).
pub fn render_candidates<'a>(
    st: &'a State,
    v: Version,
    req: &'a Request,
    found: &'a candidates::Candidates<'a>,
) -> CandidatesBody<'a> {
    let allocation_requests = found
        .requests
        .iter()
        .map(|c| {
            if !v.at_least(12) {
                return AllocationRequest::List {
                    allocations: c
                        .allocations
                        .iter()
                        .map(|(rp, r)| ListShare {
                            resource_provider: Uuid { uuid: rp },
                            resources: r,
                        })
                        .collect(),
                };
            }
            AllocationRequest::Dict {
                allocations: c
                    .allocations
                    .iter()
                    .map(|(rp, r)| (*rp, Share { resources: r }))
                    .collect(),
                mappings: v.at_least(34).then_some(&c.mappings),
            }
        })
        .collect();
    let asked: BTreeSet<&str> = std::iter::once(&req.unsuffixed)
        .chain(&req.groups)
        .flat_map(|g| g.resources.keys().map(String::as_str))
        .collect();
    let mut provider_summaries = BTreeMap::new();
    for rp in &found.summaries {
        let Some(p) = st.providers.get(*rp) else {
            continue;
        };
        let resources = p
            .inventories
            .iter()
            .filter(|(rc, _)| v.at_least(27) || asked.contains(rc.as_str()))
            .map(|(rc, inv)| {
                (
                    rc.as_str(),
                    Capacity {
                        capacity: inv.capacity(),
                        used: st.used(rp, rc),
                    },
                )
            })
            .collect();
        provider_summaries.insert(
            *rp,
            Summary {
                resources,
                traits: v.at_least(17).then_some(&p.traits),
                parent_provider_uuid: v.at_least(29).then_some(p.parent.as_deref()),
                root_provider_uuid: v.at_least(29).then_some(p.root.as_str()),
            },
        );
    }
    CandidatesBody {
        allocation_requests,
        provider_summaries,
    }
}

pub async fn candidates(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    RawQuery(raw): RawQuery,
) -> R {
    since(v, 10)?;
    c.admit(&pl, "placement:allocation_candidates:list", None)?;
    let st = pl.snapshot();
    let q = Params::parse(raw.as_deref());
    let req = candidates_request(&st, v, &q)?;
    let found = candidates::candidates(&st, &req);
    Ok(Json(render_candidates(&st, v, &req, &found)).into_response())
}
