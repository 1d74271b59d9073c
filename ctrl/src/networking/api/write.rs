//! Writes of every Neutron resource: typed bodies, create (one or bulk), update, delete.

use super::read::{shows_provider, view};
use super::{parse_body, Caller, Res, S};
use crate::networking::error::{NetError, NetResult};
use crate::networking::service::{self, Ctx};
use crate::networking::state::State as NetState;
use crate::networking::{body, revision};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A typed create or update body for one resource of `res`.
#[derive(Debug, Clone)]
enum Req {
    Network(body::NetworkReq),
    Subnet(body::SubnetReq),
    Port(body::PortReq),
    SecurityGroup(body::SecurityGroupReq),
    Rule(body::RuleReq),
}

/// Reads one resource's attributes at `path` (`port`, `ports[1]`).
fn req_at(res: Res, inner: &Value, path: &str, op: &str) -> NetResult<Req> {
    Ok(match res {
        Res::Networks => Req::Network(body::attrs_at(inner, path, op)?),
        Res::Subnets => Req::Subnet(body::attrs_at(inner, path, op)?),
        Res::Ports => Req::Port(body::attrs_at(inner, path, op)?),
        Res::SecurityGroups => Req::SecurityGroup(body::attrs_at(inner, path, op)?),
        Res::Rules => Req::Rule(body::attrs_at(inner, path, op)?),
    })
}

/// Reads `{"<singular>": {...}}`.
fn req_of(res: Res, body: &Value, op: &str) -> NetResult<Req> {
    let inner = body.get(res.singular()).ok_or_else(|| {
        NetError::bad(
            "HTTPBadRequest",
            format!(
                "Resource body required: expected a '{}' object",
                res.singular()
            ),
        )
    })?;
    req_at(res, inner, res.singular(), op)
}

/// One resource's create: the pure service function for its request.
fn create_one(st: &NetState, env: &mut service::Env, c: &Ctx, req: &Req) -> service::Write<String> {
    Ok(match req {
        Req::Network(r) => {
            let (x, ch) = service::create_network(st, env, c, r)?;
            (x.id, ch)
        }
        Req::Subnet(r) => {
            let (x, ch) = service::create_subnet(st, env, c, r)?;
            (x.id, ch)
        }
        Req::Port(r) => {
            let (x, ch) = service::create_port(st, env, c, r)?;
            (x.id, ch)
        }
        Req::SecurityGroup(r) => {
            let (x, ch) = service::create_sg(st, env, c, r)?;
            (x.id, ch)
        }
        Req::Rule(r) => {
            let (x, ch) = service::create_rule(st, env, c, r)?;
            (x.id, ch)
        }
    })
}

/// Bulk create (`{"ports": [...]}`), all or nothing as in Neutron: each item
/// runs on a scratch state that already holds the items before it (their
/// addresses, MACs and default group), and the changes of all of them are
/// one commit. Any invalid item fails the whole request; nothing is created.
fn create_bulk(
    st: &NetState,
    env: &mut service::Env,
    c: &Ctx,
    res: Res,
    items: &[Req],
    provider: bool,
) -> service::Write<Vec<Value>> {
    let mut scratch = st.clone();
    let mut ids = Vec::with_capacity(items.len());
    let mut all = Vec::new();
    for item in items {
        let (id, changes) = create_one(&scratch, env, c, item)?;
        scratch.apply_changes(&changes);
        all.extend(changes);
        ids.push(id);
    }
    let views = ids
        .iter()
        .filter_map(|id| view(&scratch, res, id, provider))
        .collect();
    Ok((views, all))
}

pub(super) async fn create_h(
    State(net): S,
    caller: Caller,
    body: Bytes,
    res: Res,
) -> NetResult<Response> {
    let c = caller.ctx(&net)?;
    let body = parse_body(&body)?;
    let provider = matches!(res, Res::Networks) && shows_provider(&net, &c);
    if let Some(items) = body.get(res.plural()) {
        let Value::Array(items) = items else {
            return Err(NetError::invalid(res.plural(), "must be a list"));
        };
        if items.is_empty() {
            return Err(NetError::invalid(res.plural(), "must not be empty"));
        }
        let reqs = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                // Neutron takes each item bare or wrapped in its singular
                // (`{"security_groups": [{"security_group": {...}}]}`, as
                // neutron-tempest-plugin's bulk client sends it).
                let (inner, path) = match item.get(res.singular()) {
                    Some(inner) => (inner, format!("{}[{i}].{}", res.plural(), res.singular())),
                    None => (item, format!("{}[{i}]", res.plural())),
                };
                req_at(res, inner, &path, "POST")
            })
            .collect::<NetResult<Vec<_>>>()?;
        let out = net
            .write_async(move |st, env| create_bulk(st, env, &c, res, &reqs, provider))
            .await?;
        return Ok((StatusCode::CREATED, Json(json!({ res.plural(): out }))).into_response());
    }
    let req = req_of(res, &body, "POST")?;
    let id = net
        .write_async(move |st, env| create_one(st, env, &c, &req))
        .await?;
    let v = net
        .read(|st| view(st, res, &id, provider))
        .ok_or_else(|| NetError::not_found("Resource", &id))?;
    Ok((StatusCode::CREATED, Json(json!({ res.singular(): v }))).into_response())
}

pub(super) async fn update_h(
    State(net): S,
    headers: HeaderMap,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
    res: Res,
) -> NetResult<Response> {
    let c = caller.ctx(&net)?;
    let want = revision::constraint(&headers)?;
    let body = parse_body(&body)?;
    let provider = matches!(res, Res::Networks) && shows_provider(&net, &c);
    if let Res::Rules = res {
        net.read(|st| service::get_rule(st, &c, &id).map(|_| ()))?;
        return Err(NetError::bad(
            "HTTPBadRequest",
            "Security group rules cannot be updated",
        ));
    }
    let req = req_of(res, &body, "PUT")?;
    let target = id.clone();
    net.write_async(move |st, env| {
        let (c, id) = (&c, &target);
        let changes = match &req {
            Req::Network(r) => service::update_network(st, env, c, id, r)?.1,
            Req::Subnet(r) => service::update_subnet(st, env, c, id, r)?.1,
            Req::Port(r) => service::update_port(st, env, c, id, r)?.1,
            Req::SecurityGroup(r) => service::update_sg(st, env, c, id, r)?.1,
            Req::Rule(_) => {
                return Err(NetError::bad(
                    "HTTPBadRequest",
                    "Security group rules cannot be updated",
                ))
            }
        };
        // After the update's own checks (visibility, policy), so a constraint
        // tells nothing about a resource the caller may not write.
        revision::check(want, revision_of(st, res, id))?;
        Ok(((), changes))
    })
    .await?;
    let v = net
        .read(|st| view(st, res, &id, provider))
        .ok_or_else(|| NetError::not_found("Resource", &id))?;
    Ok(Json(json!({ res.singular(): v })).into_response())
}

pub(super) async fn delete_h(
    State(net): S,
    headers: HeaderMap,
    caller: Caller,
    Path(id): Path<String>,
    res: Res,
) -> NetResult<Response> {
    let c = caller.ctx(&net)?;
    let want = revision::constraint(&headers)?;
    net.write_async(move |st, env| {
        let done = match res {
            Res::Networks => service::delete_network(st, env, &c, &id),
            Res::Subnets => service::delete_subnet(st, env, &c, &id),
            Res::Ports => service::delete_port(st, env, &c, &id),
            Res::SecurityGroups => service::delete_sg(st, env, &c, &id),
            Res::Rules => service::delete_rule(st, env, &c, &id),
        }?;
        revision::check(want, revision_of(st, res, &id))?;
        Ok(done)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The revision of `res` `id` in `st` (0 when absent: the write itself has
/// answered 404 by then).
fn revision_of(st: &NetState, res: Res, id: &str) -> u64 {
    let std = match res {
        Res::Networks => st.networks.get(id).map(|x| &x.std),
        Res::Subnets => st.subnets.get(id).map(|x| &x.std),
        Res::Ports => st.ports.get(id).map(|x| &x.std),
        Res::SecurityGroups => st.security_groups.get(id).map(|x| &x.std),
        Res::Rules => st.rules.get(id).map(|x| &x.std),
    };
    std.map_or(0, |s| s.revision_number)
}
