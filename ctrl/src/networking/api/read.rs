//! Reads of every Neutron resource: list (filters, fields, sorting, paging) and show.

use super::{base_url, Caller, Res, PREFIX, S};
use crate::networking::error::{NetError, NetResult};
use crate::networking::model::{network_view, port_view, rule_view, sg_view, subnet_view};
use crate::networking::query::{self, Query};
use crate::networking::service::{self, Ctx};
use crate::networking::state::State as NetState;
use crate::networking::Networking;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Admin-only attributes are hidden from callers the policy doesn't allow to see them.
pub(super) fn shows_provider(net: &Networking, c: &Ctx) -> bool {
    let target = json!({"project_id": c.project_id, "tenant_id": c.project_id});
    net.authz()
        .check(c, "get_network:provider:network_type", &target)
        .is_ok()
}

pub(super) fn view(st: &NetState, res: Res, id: &str, provider: bool) -> Option<Value> {
    Some(match res {
        Res::Networks => {
            let n = st.networks.get(id)?;
            let mut v = network_view(n, st.subnets_of(id).map(|s| s.id.clone()).collect());
            if !provider {
                if let Value::Object(m) = &mut v {
                    m.retain(|k, _| !k.starts_with("provider:"));
                }
            }
            v
        }
        Res::Subnets => {
            let s = st.subnets.get(id)?;
            let shared = st.networks.get(&s.network_id).is_some_and(|n| n.shared);
            subnet_view(s, shared)
        }
        Res::Ports => port_view(st.ports.get(id)?),
        Res::SecurityGroups => sg_view(st.security_groups.get(id)?, &st.rules_of(id)),
        Res::Rules => rule_view(st.rules.get(id)?),
    })
}

fn visible_ids(st: &NetState, c: &Ctx, res: Res) -> Vec<String> {
    match res {
        Res::Networks => st
            .networks
            .values()
            .filter(|n| service::network_visible(c, n))
            .map(|n| n.id.clone())
            .collect(),
        Res::Subnets => st
            .subnets
            .values()
            .filter(|s| service::subnet_visible(st, c, s))
            .map(|s| s.id.clone())
            .collect(),
        Res::Ports => st
            .ports
            .values()
            .filter(|p| service::port_visible(st, c, p))
            .map(|p| p.id.clone())
            .collect(),
        Res::SecurityGroups => st
            .security_groups
            .values()
            .filter(|g| service::sg_visible(c, g))
            .map(|g| g.id.clone())
            .collect(),
        Res::Rules => st
            .rules
            .values()
            .filter(|r| c.is_admin || c.project_id.as_deref() == Some(r.project_id.as_str()))
            .map(|r| r.id.clone())
            .collect(),
    }
}

fn check_visible(st: &NetState, c: &Ctx, res: Res, id: &str) -> NetResult<()> {
    match res {
        Res::Networks => service::get_network(st, c, id).map(|_| ()),
        Res::Subnets => service::get_subnet(st, c, id).map(|_| ()),
        Res::Ports => service::get_port(st, c, id).map(|_| ()),
        Res::SecurityGroups => service::get_sg(st, c, id).map(|_| ()),
        Res::Rules => service::get_rule(st, c, id).map(|_| ()),
    }
}

pub(super) async fn list_h(
    State(net): S,
    headers: HeaderMap,
    caller: Caller,
    RawQuery(q): RawQuery,
    res: Res,
) -> NetResult<Response> {
    let c = caller.ctx(&net)?;
    let q = Query::parse(q.as_deref().unwrap_or(""))?;
    let provider = matches!(res, Res::Networks) && shows_provider(&net, &c);
    let items = net.read(|st| {
        visible_ids(st, &c, res)
            .iter()
            .filter_map(|id| view(st, res, id, provider))
            .collect::<Vec<_>>()
    });
    let base = format!("{}{PREFIX}/{}", base_url(&headers), res.path());
    let page = query::apply(items, &q, &base, res.sortable())?;
    let mut body = serde_json::Map::new();
    body.insert(res.plural().into(), Value::Array(page.items));
    if !page.links.is_empty() {
        body.insert(format!("{}_links", res.plural()), Value::Array(page.links));
    }
    Ok(Json(Value::Object(body)).into_response())
}

fn fields_only(mut v: Value, q: Option<&str>) -> NetResult<Value> {
    let q = Query::parse(q.unwrap_or(""))?;
    if !q.fields.is_empty() {
        if let Value::Object(m) = &mut v {
            m.retain(|k, _| q.fields.iter().any(|f| f == k));
        }
    }
    Ok(v)
}

pub(super) async fn show_h(
    State(net): S,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    res: Res,
) -> NetResult<Response> {
    let c = caller.ctx(&net)?;
    let provider = matches!(res, Res::Networks) && shows_provider(&net, &c);
    let v = net.read(|st| -> NetResult<Value> {
        check_visible(st, &c, res, &id)?;
        view(st, res, &id, provider).ok_or_else(|| NetError::not_found("Resource", &id))
    })?;
    let v = fields_only(v, q.as_deref())?;
    Ok(Json(json!({ res.singular(): v })).into_response())
}
