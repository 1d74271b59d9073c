//! The HTTP shell: axum routes for `/networking` (version discovery),
//! `/networking/v2.0/...` (the Neutron API) and `/agent/v1/...` (agent sync).

use super::body;
use super::error::{NetError, NetResult};
use super::model::{network_view, port_view, rule_view, sg_view, subnet_view};
use super::query::{self, Query};
use super::revision;
use super::service::{self, Ctx};
use super::state::State as NetState;
use super::Networking;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

type S = State<Arc<Networking>>;

pub const PREFIX: &str = "/networking/v2.0";

#[derive(Clone, Copy, Debug)]
enum Res {
    Networks,
    Subnets,
    Ports,
    SecurityGroups,
    Rules,
}

impl Res {
    fn plural(self) -> &'static str {
        match self {
            Res::Networks => "networks",
            Res::Subnets => "subnets",
            Res::Ports => "ports",
            Res::SecurityGroups => "security_groups",
            Res::Rules => "security_group_rules",
        }
    }
    fn singular(self) -> &'static str {
        match self {
            Res::Networks => "network",
            Res::Subnets => "subnet",
            Res::Ports => "port",
            Res::SecurityGroups => "security_group",
            Res::Rules => "security_group_rule",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Res::Networks => "networks",
            Res::Subnets => "subnets",
            Res::Ports => "ports",
            Res::SecurityGroups => "security-groups",
            Res::Rules => "security-group-rules",
        }
    }
    fn sortable(self) -> &'static [&'static str] {
        match self {
            Res::Networks => &[
                "id",
                "name",
                "status",
                "admin_state_up",
                "shared",
                "mtu",
                "project_id",
                "tenant_id",
                "router:external",
                "created_at",
                "updated_at",
                "revision_number",
                "provider:network_type",
                "provider:segmentation_id",
                "provider:physical_network",
            ],
            Res::Subnets => &[
                "id",
                "name",
                "network_id",
                "cidr",
                "ip_version",
                "gateway_ip",
                "enable_dhcp",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
            Res::Ports => &[
                "id",
                "name",
                "network_id",
                "mac_address",
                "status",
                "admin_state_up",
                "device_id",
                "device_owner",
                "binding:host_id",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
            Res::SecurityGroups => &[
                "id",
                "name",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
                "stateful",
            ],
            Res::Rules => &[
                "id",
                "direction",
                "ethertype",
                "protocol",
                "port_range_min",
                "port_range_max",
                "remote_ip_prefix",
                "remote_group_id",
                "security_group_id",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
        }
    }
}

fn not_found_path(path: &str) -> Response {
    let body = json!({"NeutronError": {"type": "HTTPNotFound",
        "message": format!("The resource could not be found: {path}"), "detail": ""}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-auth-token").and_then(|v| v.to_str().ok())
}

/// The caller: the context the server's authentication layer left in the
/// request (`weft serve` validates every token once, in one place), or,
/// for this router used on its own, the token to validate here.
pub struct Caller {
    ctx: Option<weft_identity::AuthContext>,
    rejected: bool,
    token: Option<String>,
}

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            // Taken, not cloned: one extractor per request reads it.
            ctx: parts.extensions.remove::<weft_identity::AuthContext>(),
            rejected: parts
                .extensions
                .get::<weft_identity::api::TokenRejected>()
                .is_some(),
            token: token(&parts.headers).map(str::to_string),
        })
    }
}

impl Caller {
    pub(crate) fn ctx(&self, net: &Networking) -> NetResult<Ctx> {
        if let Some(c) = &self.ctx {
            return Ok(Ctx::new(c.credentials()));
        }
        if self.rejected {
            return Err(NetError::Unauthenticated);
        }
        net.authenticate(self.token.as_deref())
    }
}

fn parse_body(b: &Bytes) -> NetResult<Value> {
    if b.is_empty() {
        return Err(NetError::bad("HTTPBadRequest", "Resource body required"));
    }
    serde_json::from_slice(b)
        .map_err(|e| NetError::bad("HTTPBadRequest", format!("Malformed request body: {e}")))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// Admin-only attributes are hidden from callers the policy doesn't allow to see them.
fn shows_provider(net: &Networking, c: &Ctx) -> bool {
    let target = json!({"project_id": c.project_id, "tenant_id": c.project_id});
    net.authz()
        .check(c, "get_network:provider:network_type", &target)
        .is_ok()
}

fn view(st: &NetState, res: Res, id: &str, provider: bool) -> Option<Value> {
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

async fn list_h(
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

async fn show_h(
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

async fn create_h(State(net): S, caller: Caller, body: Bytes, res: Res) -> NetResult<Response> {
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
            .map(|(i, item)| req_at(res, item, &format!("{}[{i}]", res.plural()), "POST"))
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

async fn update_h(
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

async fn delete_h(
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

/// The extensions this service really implements, so clients enable the right features.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("agent", "agent", "The agent management extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("security-group", "security-group", "The security groups extension."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("stateful-security-group", "Stateful security group", "Extension adding possibility to make security groups stateless."),
];

fn ext_view(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "updated": "2026-01-01T00:00:00-00:00", "links": []})
}

async fn extensions_h(State(net): S, caller: Caller) -> NetResult<Response> {
    caller.ctx(&net)?;
    Ok(
        Json(json!({"extensions": EXTENSIONS.iter().map(ext_view).collect::<Vec<_>>()}))
            .into_response(),
    )
}

async fn extension_h(
    State(net): S,
    caller: Caller,
    Path(alias): Path<String>,
) -> NetResult<Response> {
    caller.ctx(&net)?;
    let e = EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .ok_or_else(|| NetError::not_found("Extension", &alias))?;
    Ok(Json(json!({"extension": ext_view(e)})).into_response())
}

async fn versions_h(headers: HeaderMap) -> Response {
    let href = format!("{}{PREFIX}/", base_url(&headers));
    Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]}))
        .into_response()
}

async fn resources_h(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let list: Vec<Value> = [
        Res::Networks,
        Res::Subnets,
        Res::Ports,
        Res::SecurityGroups,
        Res::Rules,
    ]
    .iter()
    .map(|r| {
        json!({"name": r.singular(), "collection": r.path(),
                        "links": [{"rel": "self", "href": format!("{base}{PREFIX}/{}", r.path())}]})
    })
    .collect();
    Json(json!({"resources": list})).into_response()
}

// ---------------------------------------------------------------- agent sync

fn agent_ctx(net: &Networking, caller: &Caller) -> NetResult<Ctx> {
    let c = caller.ctx(net)?;
    if !c.is_admin {
        return Err(NetError::Forbidden {
            message: "(rule:agent_sync) is disallowed by policy".into(),
        });
    }
    Ok(c)
}

/// The long-poll: a pure read. It registers nothing (see `agent_register_h`).
async fn agent_state_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    RawQuery(q): RawQuery,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let mut since = 0u64;
    let mut timeout = 0u64;
    for (k, v) in query::parse_pairs(q.as_deref().unwrap_or("")) {
        match k.as_str() {
            "since" => {
                since = v
                    .parse()
                    .map_err(|_| NetError::invalid("since", format!("'{v}' is not a revision")))?
            }
            "timeout" => {
                timeout = v
                    .parse()
                    .map_err(|_| NetError::invalid("timeout", format!("'{v}' is not seconds")))?
            }
            _ => {}
        }
    }
    let st = net
        .wait_host_state(&host, since, Duration::from_secs(timeout.min(300)))
        .await;
    Ok(Json(st).into_response())
}

/// `PUT /agent/v1/hosts/{host}` `{"agent": {"tunnel_ip": "192.0.2.1" | null}}`:
/// the host's agent registers (at start, and whenever its tunnel endpoint
/// changes). A write only when the endpoint changed.
async fn agent_register_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::AgentRegistration = body::parse(&body)?;
    let me = net.clone();
    let tunnel_ip = req.agent.tunnel_ip.clone();
    blocking(move || me.register_tunnel(&host, tunnel_ip.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"ports": {"<port id>": "ACTIVE", ...}}`
async fn agent_status_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::StatusReport = body::parse(&body)?;
    let list: Vec<(String, String)> = req.ports.into_iter().collect();
    let me = net.clone();
    blocking(move || me.report_status(&host, &list)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn agent_port_status_h(
    State(net): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::PortStatus = body::parse(&body)?;
    net.write_async(move |st, env| {
        Ok((
            (),
            service::set_port_status(st, &env.now, &host, &id, &req.status)?,
        ))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Runs blocking service work (commits) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> NetResult<T> + Send + 'static,
) -> NetResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(NetError::Internal(format!("blocking task failed: {e}"))),
    }
}

fn v2_routes(p: &str) -> Router<Arc<Networking>> {
    let mut r = Router::new()
        .route(&format!("{p}/extensions"), get(extensions_h))
        .route(&format!("{p}/extensions/{{alias}}"), get(extension_h));
    for res in [
        Res::Networks,
        Res::Subnets,
        Res::Ports,
        Res::SecurityGroups,
        Res::Rules,
    ] {
        r = r
            .route(
                &format!("{p}/{}", res.path()),
                get(move |s: S, h: HeaderMap, c: Caller, q: RawQuery| list_h(s, h, c, q, res))
                    .post(move |s: S, c: Caller, b: Bytes| create_h(s, c, b, res)),
            )
            .route(
                &format!("{p}/{}/{{id}}", res.path()),
                get(move |s: S, c: Caller, id: Path<String>, q: RawQuery| show_h(s, c, id, q, res))
                    .put(
                        move |s: S, h: HeaderMap, c: Caller, id: Path<String>, b: Bytes| {
                            update_h(s, h, c, id, b, res)
                        },
                    )
                    .delete(move |s: S, h: HeaderMap, c: Caller, id: Path<String>| {
                        delete_h(s, h, c, id, res)
                    }),
            );
    }
    r
}

/// The networking service relative to its mount point, `/networking`
/// (`Server::mount` nests it there; links in answers assume that prefix):
/// `/` version discovery, `/v2.0/...` the Neutron API, `/agent/v1/...` agent sync.
pub fn router(net: Arc<Networking>) -> Router {
    v2_routes("/v2.0")
        .route("/", get(versions_h))
        .route("/v2.0", get(resources_h))
        .route("/v2.0/", get(resources_h))
        .route("/v2.0/agents", get(super::agents::list_h))
        .route(
            "/v2.0/agents/{id}",
            get(super::agents::show_h)
                .put(super::agents::update_h)
                .delete(super::agents::delete_h),
        )
        .route(
            "/agent/v1/hosts/{host}",
            axum::routing::put(agent_register_h),
        )
        .route("/agent/v1/hosts/{host}/state", get(agent_state_h))
        .route("/agent/v1/hosts/{host}/status", post(agent_status_h))
        .route(
            "/agent/v1/hosts/{host}/ports/{id}/status",
            post(agent_port_status_h),
        )
        .fallback(fallback_h)
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                crate::server::json_errors(super::error::framework_body, req, next)
            },
        ))
        .with_state(net)
}

/// Unknown paths under the mount get a Neutron-shaped 404 rather than an empty one.
async fn fallback_h(uri: axum::http::Uri) -> Response {
    not_found_path(uri.path())
}

/// Where `weft serve` mounts [`router`].
pub const MOUNT: &str = "/networking";
