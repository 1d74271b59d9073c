//! Neutron's default policy rules, in the oslo.policy language the identity
//! crate's enforcer evaluates. Project scoping of reads is done by the service
//! (as Neutron's DB layer does); these rules guard writes and admin-only attributes.

use super::error::{NetError, NetResult};
use super::service::{Authz, Ctx};
use serde_json::Value;
use weft_identity::policy::Enforcer;

/// (action, rule). Overridable by the operator's policy file.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    ("admin_only", "rule:context_is_admin"),
    (
        "project_member",
        "role:member and project_id:%(project_id)s",
    ),
    (
        "admin_or_project_member",
        "rule:admin_only or rule:project_member",
    ),
    (
        "network_owner",
        "role:member and project_id:%(network_project_id)s",
    ),
    (
        "admin_or_network_owner",
        "rule:admin_only or rule:network_owner",
    ),
    // Neutron's advanced services (an LBaaS or VPN service user) act for networks.
    ("context_is_advsvc", "role:advsvc"),
    // Neutron's secure-RBAC defaults (2023.2+): a service user (Nova, holding
    // the `service` role) creates, binds and deletes ports for its servers.
    ("service_api", "role:service"),
    // Neutron writes this `field:port:device_owner=~^network:`; this
    // enforcer has no regex field checks, so the service puts the answer in
    // the target (`network_device`: the port's new device_owner is `network:*`).
    ("network_device", "True:%(network_device)s"),
    // networks
    ("create_network", "rule:admin_or_project_member"),
    ("create_network:shared", "rule:admin_only"),
    ("create_network:router:external", "rule:admin_only"),
    ("create_network:provider:network_type", "rule:admin_only"),
    (
        "create_network:provider:physical_network",
        "rule:admin_only",
    ),
    ("create_network:provider:segmentation_id", "rule:admin_only"),
    ("update_network", "rule:admin_or_project_member"),
    ("update_network:shared", "rule:admin_only"),
    ("update_network:router:external", "rule:admin_only"),
    ("update_network:provider:network_type", "rule:admin_only"),
    (
        "update_network:provider:physical_network",
        "rule:admin_only",
    ),
    ("update_network:provider:segmentation_id", "rule:admin_only"),
    ("delete_network", "rule:admin_or_project_member"),
    ("get_network:provider:network_type", "rule:admin_only"),
    // subnets: only the network's owner adds subnets to it
    ("create_subnet", "rule:admin_or_network_owner"),
    ("update_subnet", "rule:admin_or_network_owner"),
    ("delete_subnet", "rule:admin_or_network_owner"),
    // ports
    (
        "create_port",
        "rule:admin_or_project_member or rule:network_owner or rule:service_api",
    ),
    (
        "create_port:device_owner",
        "not rule:network_device or rule:context_is_advsvc or rule:admin_or_network_owner",
    ),
    ("create_port:mac_address", "rule:admin_or_network_owner"),
    (
        "create_port:fixed_ips",
        "rule:admin_or_project_member or rule:network_owner",
    ),
    (
        "create_port:fixed_ips:ip_address",
        "rule:context_is_advsvc or rule:admin_or_network_owner",
    ),
    (
        "create_port:binding:host_id",
        "rule:admin_only or rule:service_api",
    ),
    ("create_port:binding:profile", "rule:admin_only"),
    (
        "create_port:port_security_enabled",
        "rule:admin_or_network_owner",
    ),
    (
        "create_port:allowed_address_pairs",
        "rule:admin_or_network_owner",
    ),
    (
        "update_port",
        "rule:admin_or_project_member or rule:network_owner or rule:service_api",
    ),
    (
        "update_port:device_owner",
        "not rule:network_device or rule:context_is_advsvc or rule:admin_or_network_owner",
    ),
    ("update_port:mac_address", "rule:admin_only"),
    ("update_port:fixed_ips", "rule:admin_or_network_owner"),
    (
        "update_port:fixed_ips:ip_address",
        "rule:context_is_advsvc or rule:admin_or_network_owner",
    ),
    (
        "update_port:binding:host_id",
        "rule:admin_only or rule:service_api",
    ),
    ("update_port:binding:profile", "rule:admin_only"),
    (
        "update_port:port_security_enabled",
        "rule:admin_or_network_owner",
    ),
    (
        "update_port:allowed_address_pairs",
        "rule:admin_or_network_owner",
    ),
    (
        "delete_port",
        "rule:admin_or_project_member or rule:network_owner or rule:service_api",
    ),
    // security groups
    ("create_security_group", "rule:admin_or_project_member"),
    ("update_security_group", "rule:admin_or_project_member"),
    ("delete_security_group", "rule:admin_or_project_member"),
    ("create_security_group_rule", "rule:admin_or_project_member"),
    ("delete_security_group_rule", "rule:admin_or_project_member"),
    ("get_agent", "rule:admin_only"),
    ("get_quota", "rule:admin_only or project_id:%(project_id)s"),
    ("update_agent", "rule:admin_only"),
    ("delete_agent", "rule:admin_only"),
];

/// Policy checks through the identity crate's enforcer.
pub struct NetPolicy {
    /// The enforcer holding networking's rules (defaults, or the policy file's).
    pub enforcer: Enforcer,
}

impl Authz for NetPolicy {
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> NetResult<()> {
        self.enforcer
            .authorize(action, target, &ctx.creds)
            .map_err(|_| NetError::Forbidden {
                message: format!("(rule:{action}) is disallowed by policy"),
            })
    }
}
