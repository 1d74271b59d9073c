//! Host aggregates (os-aggregates), admin only: create, list, show,
//! update, delete, add and remove hosts, set metadata; and what the
//! scheduler and the zone listings read of them (a host's zone, its
//! aggregates' metadata). Pure functions over the compute [`State`].

use super::body::{self, invalid, only, required};
use super::error::{ComputeError, ComputeResult};
use super::model::aggregate::{Aggregate, ZONE_KEY};
use super::model::host::ComputeHost;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Nova's 404 for an aggregate.
pub fn not_found(id: &str) -> ComputeError {
    ComputeError::NotFound(format!("Aggregate {id} could not be found."))
}

fn check(env: &Env, ctx: &Ctx, action: &str) -> ComputeResult<()> {
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-aggregates:{action}"),
        &json!({}),
    )
}

/// A zone name: 1-255 characters, no `:` (Nova reads `zone:host` in a
/// server's requested zone, so a zone name cannot hold one).
fn zone_value(v: &Value) -> ComputeResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Err(invalid(ZONE_KEY, v, "is too short")),
        Value::String(s) if s.chars().count() > 255 => Err(invalid(ZONE_KEY, v, "is too long")),
        Value::String(s) if s.contains(':') => Err(invalid(
            ZONE_KEY,
            v,
            "is not a valid availability zone name (no ':')",
        )),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(ZONE_KEY, v, "is not of type 'string', 'null'")),
    }
}

fn name_value(m: &Map<String, Value>) -> ComputeResult<Option<String>> {
    let name = body::str_field(m, "name", 255)?;
    match &name {
        Some(n) if n.trim().is_empty() => Err(invalid("name", &json!(n), "is too short")),
        Some(n) if n.trim() != n => Err(invalid(
            "name",
            &json!(n),
            "has leading or trailing whitespace",
        )),
        _ => Ok(name),
    }
}

/// A checked create or update body: `{"aggregate": {"name", "availability_zone"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateReq {
    /// New name (required at create).
    pub name: Option<String>,
    /// `Some(None)`: no zone; `None`: left as it is.
    pub zone: Option<Option<String>>,
}

impl AggregateReq {
    /// `POST /os-aggregates`: a name, and a zone if any.
    pub fn parse_create(b: &[u8]) -> ComputeResult<AggregateReq> {
        let r = Self::parse(b)?;
        required(r.name.as_ref(), "name")?;
        Ok(r)
    }

    /// `PUT /os-aggregates/{id}`: a name or a zone, at least one.
    pub fn parse_update(b: &[u8]) -> ComputeResult<AggregateReq> {
        let r = Self::parse(b)?;
        if r.name.is_none() && r.zone.is_none() {
            return Err(ComputeError::BadRequest(
                "Invalid input for field/attribute aggregate. Value: {}. {} does not have \
                 enough properties"
                    .into(),
            ));
        }
        Ok(r)
    }

    fn parse(b: &[u8]) -> ComputeResult<AggregateReq> {
        let outer = body::object(b)?;
        only(&outer, &["aggregate"])?;
        let m = body::wrapped(&outer, "aggregate")?;
        only(m, &["name", ZONE_KEY])?;
        Ok(AggregateReq {
            name: name_value(m)?,
            zone: m.get(ZONE_KEY).map(zone_value).transpose()?,
        })
    }
}

/// One action of `POST /os-aggregates/{id}/action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateAction {
    /// `add_host`.
    AddHost(String),
    /// `remove_host`.
    RemoveHost(String),
    /// `set_metadata`: key -> value, `None` removes the key.
    SetMetadata(BTreeMap<String, Option<String>>),
}

impl AggregateAction {
    /// Checks the body: exactly one of the three actions.
    pub fn parse(b: &[u8]) -> ComputeResult<AggregateAction> {
        let outer = body::object(b)?;
        only(&outer, &["add_host", "remove_host", "set_metadata"])?;
        if outer.len() != 1 {
            return Err(ComputeError::BadRequest(
                "Exactly one action of add_host, remove_host or set_metadata is expected.".into(),
            ));
        }
        let (name, _) = outer.iter().next().expect("one key");
        let m = body::wrapped(&outer, name)?;
        match name.as_str() {
            "add_host" | "remove_host" => {
                only(m, &["host"])?;
                let host = required(body::str_field(m, "host", 255)?, "host")?;
                if host.is_empty() {
                    return Err(invalid("host", &json!(host), "is too short"));
                }
                Ok(if name == "add_host" {
                    AggregateAction::AddHost(host)
                } else {
                    AggregateAction::RemoveHost(host)
                })
            }
            _ => {
                only(m, &["metadata"])?;
                let md = match required(m.get("metadata"), "metadata")? {
                    Value::Object(md) => md,
                    v => return Err(invalid("metadata", v, "is not of type 'object'")),
                };
                let mut out = BTreeMap::new();
                for (k, v) in md {
                    if k.is_empty() || k.chars().count() > 255 {
                        return Err(invalid("metadata", &json!(k), "is not a valid key"));
                    }
                    let v = match v {
                        Value::Null => None,
                        Value::String(s) if s.chars().count() <= 255 => Some(s.clone()),
                        Value::String(_) => return Err(invalid(k, v, "is too long")),
                        _ => return Err(invalid(k, v, "is not of type 'string', 'null'")),
                    };
                    if k == ZONE_KEY {
                        if let Some(z) = &v {
                            zone_value(&json!(z))?;
                        }
                    }
                    out.insert(k.clone(), v);
                }
                Ok(AggregateAction::SetMetadata(out))
            }
        }
    }
}

/// The aggregate of `id` (the URL's integer), or 404.
pub fn get<'a>(st: &'a State, id: &str) -> ComputeResult<&'a Aggregate> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| st.aggregates.get(&n))
        .ok_or_else(|| not_found(id))
}

/// `GET /os-aggregates/{id}` (admin).
pub fn show<'a>(st: &'a State, env: &Env, ctx: &Ctx, id: &str) -> ComputeResult<&'a Aggregate> {
    check(env, ctx, "show")?;
    get(st, id)
}

/// `GET /os-aggregates` (admin), by id.
pub fn list<'a>(st: &'a State, env: &Env, ctx: &Ctx) -> ComputeResult<Vec<&'a Aggregate>> {
    check(env, ctx, "index")?;
    Ok(st.aggregates.values().collect())
}

fn name_taken(st: &State, name: &str, except: Option<u64>) -> ComputeResult<()> {
    match st
        .aggregates
        .values()
        .any(|a| a.name == name && Some(a.id) != except)
    {
        true => Err(ComputeError::Conflict(format!(
            "Aggregate {name} already exists."
        ))),
        false => Ok(()),
    }
}

/// The zones `host` is in through aggregates other than `except`.
fn other_zones<'a>(st: &'a State, host: &str, except: u64) -> BTreeSet<&'a str> {
    st.aggregates
        .values()
        .filter(|a| a.id != except && a.hosts.contains(host))
        .filter_map(Aggregate::zone)
        .collect()
}

/// Nova keeps a host in one zone: giving aggregate `a` the zone `zone`
/// must not put any of `hosts` in a second one.
fn zone_conflict(
    st: &State,
    a: u64,
    hosts: &BTreeSet<String>,
    zone: Option<&str>,
) -> Option<String> {
    let zone = zone?;
    let others: BTreeSet<&str> = hosts
        .iter()
        .flat_map(|h| other_zones(st, h, a))
        .filter(|z| *z != zone)
        .collect();
    match others.is_empty() {
        true => None,
        false => Some(format!(
            "One or more hosts already in availability zone(s) {:?}",
            others.into_iter().collect::<Vec<_>>()
        )),
    }
}

/// Servers on any of `hosts` keep the zone they were placed in, so a zone
/// change under them is refused, as Nova refuses it.
fn hosts_have_servers(st: &State, hosts: &BTreeSet<String>) -> bool {
    st.servers
        .values()
        .any(|s| s.host.as_ref().is_some_and(|h| hosts.contains(h)))
}

/// `POST /os-aggregates`.
pub fn create(st: &State, env: &mut Env, ctx: &Ctx, req: &AggregateReq) -> Write<Aggregate> {
    check(env, ctx, "create")?;
    let name = req.name.clone().unwrap_or_default();
    name_taken(st, &name, None)?;
    let mut metadata = BTreeMap::new();
    if let Some(Some(z)) = &req.zone {
        metadata.insert(ZONE_KEY.to_string(), z.clone());
    }
    // The next integer after the highest: ids of deleted aggregates below
    // it are never handed out again.
    let id = st.aggregates.keys().next_back().map_or(1, |n| n + 1);
    let a = Aggregate {
        id,
        uuid: env.ids.uuid(),
        name,
        hosts: BTreeSet::new(),
        metadata,
        created_at: env.now.clone(),
        updated_at: None,
    };
    Ok((a.clone(), vec![Change::Aggregate(a)]))
}

/// A zone change of `a` to `zone`: refused (400, as Nova's
/// InvalidAggregateActionUpdate) when it would split a host over two
/// zones or move servers that are already placed.
fn change_zone(st: &State, a: &mut Aggregate, zone: Option<String>) -> ComputeResult<()> {
    if a.zone() == zone.as_deref() {
        return Ok(());
    }
    let refuse = |why: String| {
        ComputeError::BadRequest(format!("Cannot update aggregate {}. Reason: {why}.", a.id))
    };
    if let Some(why) = zone_conflict(st, a.id, &a.hosts, zone.as_deref()) {
        return Err(refuse(why));
    }
    if hosts_have_servers(st, &a.hosts) {
        return Err(refuse(
            "One or more hosts contain instances in this zone".into(),
        ));
    }
    match zone {
        Some(z) => a.metadata.insert(ZONE_KEY.to_string(), z),
        None => a.metadata.remove(ZONE_KEY),
    };
    Ok(())
}

/// `PUT /os-aggregates/{id}`: a new name and/or zone.
pub fn update(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &AggregateReq,
) -> Write<Aggregate> {
    check(env, ctx, "update")?;
    let mut a = get(st, id)?.clone();
    if let Some(name) = &req.name {
        name_taken(st, name, Some(a.id))?;
        a.name = name.clone();
    }
    if let Some(zone) = &req.zone {
        change_zone(st, &mut a, zone.clone())?;
    }
    a.updated_at = Some(env.now.clone());
    Ok((a.clone(), vec![Change::Aggregate(a)]))
}

/// `DELETE /os-aggregates/{id}`: only an empty aggregate (400 otherwise).
pub fn delete(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    check(env, ctx, "delete")?;
    let a = get(st, id)?;
    if !a.hosts.is_empty() {
        return Err(ComputeError::BadRequest(format!(
            "Cannot remove aggregate {}. Reason: Host aggregate is not empty.",
            a.id
        )));
    }
    Ok(((), vec![Change::DeleteAggregate(a.id)]))
}

/// `POST /os-aggregates/{id}/action`.
pub fn act(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    action: &AggregateAction,
) -> Write<Aggregate> {
    let rule = match action {
        AggregateAction::AddHost(_) => "add_host",
        AggregateAction::RemoveHost(_) => "remove_host",
        AggregateAction::SetMetadata(_) => "set_metadata",
    };
    check(env, ctx, rule)?;
    let mut a = get(st, id)?.clone();
    match action {
        AggregateAction::AddHost(host) => {
            if !st.hosts.contains_key(host) {
                return Err(ComputeError::NotFound(format!(
                    "Compute host {host} could not be found."
                )));
            }
            if a.hosts.contains(host) {
                return Err(ComputeError::Conflict(format!(
                    "Aggregate {} already has host {host}.",
                    a.id
                )));
            }
            let one = BTreeSet::from([host.clone()]);
            if let Some(why) = zone_conflict(st, a.id, &one, a.zone()) {
                return Err(ComputeError::Conflict(format!(
                    "Cannot add host to aggregate {}. Reason: {why}.",
                    a.id
                )));
            }
            a.hosts.insert(host.clone());
        }
        AggregateAction::RemoveHost(host) => {
            if !a.hosts.remove(host) {
                return Err(ComputeError::NotFound(format!(
                    "Aggregate {} has no host {host}.",
                    a.id
                )));
            }
        }
        AggregateAction::SetMetadata(md) => {
            for (k, v) in md {
                if k == ZONE_KEY {
                    change_zone(st, &mut a, v.clone())?;
                    continue;
                }
                match v {
                    Some(v) => a.metadata.insert(k.clone(), v.clone()),
                    None => a.metadata.remove(k),
                };
            }
        }
    }
    a.updated_at = Some(env.now.clone());
    Ok((a.clone(), vec![Change::Aggregate(a)]))
}

/// The aggregate as Nova shows it; `created` drops `hosts` and `metadata`,
/// as Nova's create answer does.
pub fn view(a: &Aggregate, mv: (u32, u32), created: bool) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "availability_zone": a.zone(),
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "deleted": false,
        "deleted_at": null,
    });
    if !created {
        v["hosts"] = json!(a.hosts);
        v["metadata"] = json!(a.metadata);
    }
    if mv >= (2, 41) {
        v["uuid"] = json!(a.uuid);
    }
    v
}

/// The zone `h` is in: its aggregates' zone if one makes it one, else the
/// zone its agent registered with (Nova's `default_availability_zone`).
pub fn zone_of(st: &State, h: &ComputeHost) -> String {
    st.aggregates
        .values()
        .filter(|a| a.hosts.contains(&h.name))
        .find_map(Aggregate::zone)
        .unwrap_or(&h.availability_zone)
        .to_string()
}

/// The zones a server may ask for: those of the enabled hosts (Nova's
/// available zones).
pub fn available_zones(st: &State) -> BTreeSet<String> {
    st.hosts
        .values()
        .filter(|h| h.enabled)
        .map(|h| zone_of(st, h))
        .collect()
}

/// A requested zone as Nova reads it: `zone`, `zone:host`, `zone:host:node`
/// or `:host`; the zone (None when empty) and the forced host, if any.
pub fn split_zone(requested: &str) -> (Option<String>, Option<String>) {
    let mut parts = requested.splitn(3, ':');
    let zone = parts.next().filter(|z| !z.is_empty()).map(str::to_string);
    let host = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
    (zone, host)
}

/// The metadata of every aggregate `host` is in, key -> values (a value
/// holding commas counts as each of its parts), as Nova's
/// AggregateInstanceExtraSpecsFilter reads it.
pub fn metadata_of(st: &State, host: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in st.aggregates.values().filter(|a| a.hosts.contains(host)) {
        for (k, v) in &a.metadata {
            out.entry(k.clone())
                .or_default()
                .extend(v.split(',').map(|p| p.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(id: u64, hosts: &[&str], md: &[(&str, &str)]) -> Aggregate {
        Aggregate {
            id,
            uuid: format!("u{id}"),
            name: format!("a{id}"),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: "t".into(),
            updated_at: None,
        }
    }

    #[test]
    fn metadata_of_a_host_joins_its_aggregates_and_splits_commas() {
        let mut st = State::default();
        st.aggregates.insert(1, agg(1, &["h1"], &[("ssd", "true")]));
        st.aggregates
            .insert(2, agg(2, &["h1", "h2"], &[("gpu", "a100, h100")]));
        st.aggregates
            .insert(3, agg(3, &["h2"], &[("ssd", "false")]));
        let m = metadata_of(&st, "h1");
        assert_eq!(m["ssd"], BTreeSet::from(["true".to_string()]));
        assert_eq!(
            m["gpu"],
            BTreeSet::from(["a100".to_string(), "h100".to_string()])
        );
        assert!(metadata_of(&st, "h3").is_empty());
    }

    #[test]
    fn a_zone_never_splits_a_host() {
        let mut st = State::default();
        st.aggregates
            .insert(1, agg(1, &["h1"], &[(ZONE_KEY, "az1")]));
        let h1 = BTreeSet::from(["h1".to_string()]);
        assert!(zone_conflict(&st, 2, &h1, Some("az2")).is_some());
        assert!(zone_conflict(&st, 2, &h1, Some("az1")).is_none());
        assert!(zone_conflict(&st, 2, &h1, None).is_none());
        assert!(zone_conflict(&st, 1, &h1, Some("az2")).is_none());
    }

    #[test]
    fn action_bodies_are_checked() {
        let ok = |b: &str| AggregateAction::parse(b.as_bytes());
        assert_eq!(
            ok(r#"{"add_host": {"host": "h1"}}"#).unwrap(),
            AggregateAction::AddHost("h1".into())
        );
        assert!(ok(r#"{"add_host": {"host": "h1"}, "remove_host": {"host": "h1"}}"#).is_err());
        assert!(ok(r#"{"add_host": {}}"#).is_err());
        assert!(ok(r#"{"add_host": {"host": 5}}"#).is_err());
        assert!(ok(r#"{"set_metadata": {"metadata": {"k": 1}}}"#).is_err());
        assert!(ok(r#"{"set_metadata": {"metadata": {"availability_zone": "a:b"}}}"#).is_err());
        assert_eq!(
            ok(r#"{"set_metadata": {"metadata": {"k": null, "j": "v"}}}"#).unwrap(),
            AggregateAction::SetMetadata(BTreeMap::from([
                ("j".to_string(), Some("v".to_string())),
                ("k".to_string(), None)
            ]))
        );
        assert!(AggregateReq::parse_update(br#"{"aggregate": {}}"#).is_err());
        assert!(
            AggregateReq::parse_create(br#"{"aggregate": {"availability_zone": "z"}}"#).is_err()
        );
        assert!(AggregateReq::parse_create(br#"{"aggregate": {"name": " x"}}"#).is_err());
    }
}
