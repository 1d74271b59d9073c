//! Placement's default policy (placement/policies/*.py, secure-RBAC
//! defaults): everything is for the admin and for services (Nova, Neutron,
//! Cyborg holding the `service` role); a project's readers may read their
//! own project's usages. Overridable by the operator's policy file, in the
//! oslo.policy language the identity crate's enforcer evaluates.

use super::error::PlacementError;
use serde_json::json;
use weft_identity::policy::{Credentials, Enforcer};

/// (action, rule).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("admin_or_service_api", "role:admin or role:service"),
    (
        "admin_or_service_or_project_reader",
        "rule:admin_or_service_api or (role:reader and project_id:%(project_id)s)",
    ),
    (
        "placement:resource_providers:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:inventories:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:aggregates:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:aggregates:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:usages",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:traits:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:traits:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:traits:delete",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_providers:allocations:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:usages",
        "rule:admin_or_service_or_project_reader",
    ),
    ("placement:traits:list", "rule:admin_or_service_api"),
    ("placement:traits:show", "rule:admin_or_service_api"),
    ("placement:traits:update", "rule:admin_or_service_api"),
    ("placement:traits:delete", "rule:admin_or_service_api"),
    (
        "placement:resource_classes:list",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:create",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:show",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:update",
        "rule:admin_or_service_api",
    ),
    (
        "placement:resource_classes:delete",
        "rule:admin_or_service_api",
    ),
    ("placement:allocations:list", "rule:admin_or_service_api"),
    ("placement:allocations:manage", "rule:admin_or_service_api"),
    ("placement:allocations:update", "rule:admin_or_service_api"),
    ("placement:allocations:delete", "rule:admin_or_service_api"),
    ("placement:reshaper:reshape", "rule:admin_or_service_api"),
    (
        "placement:allocation_candidates:list",
        "rule:admin_or_service_api",
    ),
];

/// Checks `action` for the caller; `project_id` is the target's, where one
/// is (usages).
pub fn authorize(
    enforcer: &Enforcer,
    creds: &Credentials,
    action: &str,
    project_id: Option<&str>,
) -> Result<(), PlacementError> {
    let target = json!({ "project_id": project_id });
    enforcer
        .authorize(action, &target, creds)
        .map_err(|_| PlacementError::Forbidden {
            action: action.to_string(),
        })
}
