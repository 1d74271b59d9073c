//! The networking service: pure functions from (state, caller, request) to
//! (result, changes). No I/O here: storage commits the changes, the HTTP
//! layer renders the result. Time and identifiers come in through `Env`.

mod network;
mod port;
mod protocol;
mod rule;
mod security_group;
mod subnet;

use super::config::Segments;
use super::error::{NetError, NetResult};
use super::model::*;
use super::state::{Change, State};
pub use network::{create_network, delete_network, update_network};
pub use port::{create_port, delete_port, set_port_status, update_port};
pub use rule::{create_rule, delete_rule};
pub use security_group::{create_sg, delete_sg, ensure_default_sg, update_sg};
use serde_json::Value;
pub use subnet::{create_subnet, delete_subnet, update_subnet};
use weft_identity::policy::Credentials;

/// The caller, as the token says.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller's user id.
    pub user_id: String,
    /// The token's project: what it owns.
    pub project_id: Option<String>,
    /// Neutron's `context.is_admin`: the caller holds the admin role.
    pub is_admin: bool,
    /// Neutron's `context.is_service_role`: a service user (Nova) that
    /// binds and unbinds its servers' ports in every project.
    pub is_service: bool,
    /// The whole credentials, for policy rules.
    pub creds: Credentials,
}

impl Ctx {
    /// The caller of a validated token.
    pub fn new(creds: Credentials) -> Ctx {
        Ctx {
            user_id: creds.user_id.clone(),
            project_id: creds.project_id.clone(),
            is_admin: creds.roles.iter().any(|r| r == "admin"),
            is_service: creds.roles.iter().any(|r| r == "service"),
            creds,
        }
    }

    fn owns(&self, project_id: &str) -> bool {
        self.is_admin || self.project_id.as_deref() == Some(project_id)
    }
}

/// Policy check for one action against its target (see `policy.rs`).
pub trait Authz {
    /// Ok when policy allows `action` on `target` for the caller, else 403 (or 404 to hide it).
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> NetResult<()>;
}

/// Where new identifiers and MACs come from (random in the server, fixed in tests).
pub trait Ids {
    /// A new resource id (a UUID).
    fn uuid(&mut self) -> String;
    /// Three random bytes for the `fa:16:3e` MAC prefix.
    fn mac_tail(&mut self) -> [u8; 3];
}

/// Random ids and MACs: the server's [`Ids`].
pub struct RandomIds;

impl Ids for RandomIds {
    fn uuid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
    fn mac_tail(&mut self) -> [u8; 3] {
        rand::random()
    }
}

/// Everything a write needs besides the state: clock, ids, policy, segment config.
pub struct Env<'a> {
    /// Now, as the records' timestamps take it.
    pub now: String,
    /// Where new ids and MACs come from.
    pub ids: &'a mut dyn Ids,
    /// The policy checks.
    pub authz: &'a dyn Authz,
    /// The segment ranges tenant networks draw from.
    pub segs: &'a Segments,
}

/// A write's answer and the changes to commit for it.
pub type Write<T> = NetResult<(T, Vec<Change>)>;

// ---------------------------------------------------------------- visibility

/// Neutron's `get_network`: the owner's, shared, or external (every
/// project may see the networks its routers' gateways go to).
pub fn network_visible(ctx: &Ctx, n: &Network) -> bool {
    ctx.owns(&n.project_id) || n.shared || n.router_external
}

/// Neutron's `get_subnet`: the owner's, or on a network the caller owns or
/// that is shared. An external network's subnets stay hidden (tempest's
/// test_external_network_visibility).
pub fn subnet_visible(st: &State, ctx: &Ctx, s: &Subnet) -> bool {
    ctx.owns(&s.project_id)
        || st
            .networks
            .get(&s.network_id)
            .is_some_and(|n| ctx.owns(&n.project_id) || n.shared)
}

/// Whether the caller may see the port: its owner, the network's owner, or an admin.
pub fn port_visible(st: &State, ctx: &Ctx, p: &Port) -> bool {
    ctx.is_service
        || ctx.owns(&p.project_id)
        || st
            .networks
            .get(&p.network_id)
            .is_some_and(|n| ctx.owns(&n.project_id))
}

/// Whether the caller may see the security group: its owner or an admin.
pub fn sg_visible(ctx: &Ctx, g: &SecurityGroup) -> bool {
    ctx.owns(&g.project_id)
}

/// The network, or 404 when absent or not visible to the caller.
pub fn get_network<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Network> {
    st.networks
        .get(id)
        .filter(|n| network_visible(ctx, n))
        .ok_or_else(|| NetError::not_found("Network", id))
}

/// The subnet, or 404 when absent or not visible to the caller.
pub fn get_subnet<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Subnet> {
    st.subnets
        .get(id)
        .filter(|s| subnet_visible(st, ctx, s))
        .ok_or_else(|| NetError::not_found("Subnet", id))
}

/// The port, or 404 when absent or not visible to the caller.
pub fn get_port<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Port> {
    st.ports
        .get(id)
        .filter(|p| port_visible(st, ctx, p))
        .ok_or_else(|| NetError::not_found("Port", id))
}

/// The security group, or 404 when absent or not visible to the caller.
pub fn get_sg<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s SecurityGroup> {
    st.security_groups
        .get(id)
        .filter(|g| sg_visible(ctx, g))
        .ok_or_else(|| NetError::not_found("Security group", id))
}

/// The rule, or 404 when absent or not visible to the caller.
pub fn get_rule<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s SecurityGroupRule> {
    st.rules
        .get(id)
        .filter(|r| ctx.owns(&r.project_id))
        .ok_or_else(|| NetError::not_found("Security group rule", id))
}

// ---------------------------------------------------------------- helpers

/// `project_id`/`tenant_id` from the body, else the caller's project.
fn project_of(p: Option<String>, t: Option<String>, ctx: &Ctx) -> NetResult<String> {
    let chosen = match (p, t) {
        (Some(p), Some(t)) if p != t => {
            return Err(NetError::invalid(
                "project_id",
                "project_id and tenant_id do not match",
            ))
        }
        (Some(p), _) | (None, Some(p)) => {
            // Neutron's _validate_privileges: only an admin acts for
            // another project (and Neutron does not ask identity whether
            // that project exists).
            if !ctx.is_admin && ctx.project_id.as_deref() != Some(p.as_str()) {
                return Err(NetError::bad(
                    "HTTPBadRequest",
                    "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
                ));
            }
            Some(p)
        }
        (None, None) => ctx.project_id.clone(),
    };
    chosen.filter(|p| !p.is_empty()).ok_or_else(|| {
        NetError::invalid(
            "project_id",
            "a project is required (the token has no project scope)",
        )
    })
}

fn check_attrs(
    env: &Env,
    ctx: &Ctx,
    action: &str,
    has: impl Fn(&str) -> bool,
    attrs: &[&str],
    target: &Value,
) -> NetResult<()> {
    env.authz.check(ctx, action, target)?;
    for a in attrs {
        if has(a) {
            env.authz.check(ctx, &format!("{action}:{a}"), target)?;
        }
    }
    Ok(())
}

/// Attributes weft does not implement: accepted only when they ask for nothing.
fn accept_empty(field: &str, v: Option<Value>) -> NetResult<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(Value::Bool(false)) => Ok(()),
        Some(v) => Err(NetError::invalid(field, format!("'{v}' is not supported"))),
    }
}

/// Whether `s` is a MAC in `aa:bb:cc:dd:ee:ff` form.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
        && s != "00:00:00:00:00:00"
}
