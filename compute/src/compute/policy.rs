//! Nova's default policy (the secure-RBAC defaults), in the oslo.policy
//! language the identity crate's enforcer evaluates. Targets carry
//! `project_id` and, for key pairs, `user_id` (the key pair's owner).

use super::error::{ComputeError, ComputeResult};
use serde_json::Value;
use weft_identity::policy::{Credentials, Enforcer};

/// The caller, as the token says.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The token's user.
    pub user_id: String,
    /// The token's project scope (`None`: domain- or system-scoped).
    pub project_id: Option<String>,
    /// The caller holds the admin role (Nova's `context.is_admin`).
    pub is_admin: bool,
    /// What the policy rules are evaluated against.
    pub creds: Credentials,
}

impl Ctx {
    /// The context of a validated token's credentials.
    pub fn new(creds: Credentials) -> Ctx {
        Ctx {
            user_id: creds.user_id.clone(),
            project_id: creds.project_id.clone(),
            is_admin: creds.roles.iter().any(|r| r == "admin"),
            creds,
        }
    }
}

/// (action, rule). Overridable by the operator's policy file.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    ("admin_api", "role:admin"),
    ("os_compute_api:os-services:list", "rule:admin_api"),
    ("os_compute_api:os-services:update", "rule:admin_api"),
    ("os_compute_api:os-services:delete", "rule:admin_api"),
    ("os_compute_api:os-migrations:index", "rule:admin_api"),
    (
        "os_compute_api:os-simple-tenant-usage:list",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-simple-tenant-usage:show",
        "rule:project_reader_or_admin",
    ),
    ("os_compute_api:servers:migrations:index", "rule:admin_api"),
    ("os_compute_api:servers:migrations:show", "rule:admin_api"),
    (
        "os_compute_api:os-availability-zone:detail",
        "rule:admin_api",
    ),
    (
        "os_compute_api:servers:create:forced_host",
        "rule:admin_api",
    ),
    ("os_compute_api:os-aggregates:index", "rule:admin_api"),
    ("os_compute_api:os-aggregates:create", "rule:admin_api"),
    ("os_compute_api:os-aggregates:show", "rule:admin_api"),
    ("os_compute_api:os-aggregates:update", "rule:admin_api"),
    ("os_compute_api:os-aggregates:delete", "rule:admin_api"),
    ("os_compute_api:os-aggregates:add_host", "rule:admin_api"),
    ("os_compute_api:os-aggregates:remove_host", "rule:admin_api"),
    (
        "os_compute_api:os-aggregates:set_metadata",
        "rule:admin_api",
    ),
    (
        "os_compute_api:servers:start",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:stop",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:reboot",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:pause",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:unpause",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:suspend",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:resume",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-console-output",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-lock-server:lock",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-lock-server:unlock",
        "rule:project_member_or_admin",
    ),
    ("os_compute_api:os-hypervisors:list", "rule:admin_api"),
    ("os_compute_api:os-hypervisors:show", "rule:admin_api"),
    ("os_compute_api:os-hypervisors:uptime", "rule:admin_api"),
    ("os_compute_api:os-hypervisors:statistics", "rule:admin_api"),
    ("os_compute_api:os-hypervisors:search", "rule:admin_api"),
    ("os_compute_api:os-hypervisors:servers", "rule:admin_api"),
    ("os_compute_api:ips:index", "rule:project_reader_or_admin"),
    (
        "os_compute_api:servers:update",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:index",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:update",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:update_all",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:delete",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-tags:delete_all",
        "rule:project_member_or_admin",
    ),
    ("os_compute_api:ips:show", "rule:project_reader_or_admin"),
    (
        "project_reader_or_admin",
        "role:admin or (role:reader and project_id:%(project_id)s)",
    ),
    ("os_compute_api:os-flavor-manage:create", "rule:admin_api"),
    ("os_compute_api:os-flavor-manage:update", "rule:admin_api"),
    ("os_compute_api:os-flavor-manage:delete", "rule:admin_api"),
    ("os_compute_api:os-flavor-access", "rule:admin_api"),
    (
        "os_compute_api:os-flavor-access:add_tenant_access",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-flavor-access:remove_tenant_access",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-flavor-extra-specs:create",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-flavor-extra-specs:update",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-flavor-extra-specs:delete",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-flavor-extra-specs:index",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-flavor-extra-specs:show",
        "rule:project_reader_or_admin",
    ),
    (
        "project_member_or_admin",
        "role:admin or (role:member and project_id:%(project_id)s)",
    ),
    (
        "os_compute_api:servers:create",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:index",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:servers:detail",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:servers:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:servers:delete",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:server-metadata:index",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:server-metadata:update",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:server-metadata:delete",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-keypairs:index",
        "role:admin or user_id:%(user_id)s",
    ),
    (
        "os_compute_api:os-keypairs:create",
        "role:admin or user_id:%(user_id)s",
    ),
    (
        "os_compute_api:os-keypairs:show",
        "role:admin or user_id:%(user_id)s",
    ),
    (
        "os_compute_api:os-keypairs:delete",
        "role:admin or user_id:%(user_id)s",
    ),
    (
        "os_compute_api:os-server-groups:create",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-groups:delete",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-server-groups:index",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-server-groups:index:all_projects",
        "rule:admin_api",
    ),
    (
        "os_compute_api:os-server-groups:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-quota-sets:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-quota-sets:detail",
        "rule:project_reader_or_admin",
    ),
    ("os_compute_api:os-quota-sets:defaults", "@"),
    ("os_compute_api:os-quota-sets:update", "rule:admin_api"),
    ("os_compute_api:os-quota-sets:delete", "rule:admin_api"),
    ("os_compute_api:limits", "@"),
    ("os_compute_api:limits:other_project", "rule:admin_api"),
    (
        "os_compute_api:os-instance-actions:list",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-instance-actions:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-instance-actions:events",
        "rule:admin_api",
    ),
];

/// Policy check for one action against its target.
pub trait Authz: Send + Sync {
    /// Ok, or [`ComputeError::Forbidden`] naming the action.
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> ComputeResult<()>;
}

/// Policy checks through the identity crate's enforcer.
pub struct ComputePolicy {
    /// Nova's defaults, with the operator's overrides.
    pub enforcer: Enforcer,
}

impl Authz for ComputePolicy {
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> ComputeResult<()> {
        self.enforcer
            .authorize(action, target, &ctx.creds)
            .map_err(|_| ComputeError::policy(action))
    }
}
