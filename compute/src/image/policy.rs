//! Glance's default policy (the secure-RBAC defaults of 2023.1 on), in the
//! oslo.policy language the identity crate's enforcer evaluates. Which
//! images a caller may *see* is decided by the service (as Glance's DB layer
//! does: another project's private image is a 404); these rules then guard
//! each action. Targets carry `project_id` (the image's owner),
//! `member_id` (the caller's project when it is a member) and `visibility`.

use super::error::{ImageError, ImageResult};
use super::model::Image;
use serde_json::Value;
use weft_identity::policy::{Credentials, Enforcer};

/// The caller, as the token says.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The token's project scope (`None`: domain- or system-scoped).
    pub project_id: Option<String>,
    /// Glance's `context.is_admin`: the caller holds the admin role.
    pub is_admin: bool,
    /// What the policy rules are evaluated against.
    pub creds: Credentials,
}

impl Ctx {
    /// The context of a validated token's credentials.
    pub fn new(creds: Credentials) -> Ctx {
        Ctx {
            project_id: creds.project_id.clone(),
            is_admin: creds.roles.iter().any(|r| r == "admin"),
            creds,
        }
    }

    pub(super) fn owns(&self, i: &Image) -> bool {
        self.project_id.is_some() && i.owner == self.project_id
    }
}

/// (action, rule). Overridable by the operator's policy file.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    (
        "project_member",
        "role:admin or (role:member and project_id:%(project_id)s)",
    ),
    (
        "project_reader",
        "role:admin or (role:reader and project_id:%(project_id)s)",
    ),
    ("add_image", "rule:project_member"),
    ("delete_image", "rule:project_member"),
    (
        "get_image",
        "role:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))",
    ),
    ("get_images", "rule:project_reader"),
    ("modify_image", "rule:project_member"),
    ("publicize_image", "role:admin"),
    ("communitize_image", "rule:project_member"),
    (
        "download_image",
        "role:admin or (role:member and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))",
    ),
    ("upload_image", "rule:project_member"),
    ("deactivate", "rule:project_member"),
    ("reactivate", "rule:project_member"),
    ("add_member", "rule:project_member"),
    ("delete_member", "rule:project_member"),
    (
        "get_member",
        "role:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))",
    ),
    (
        "get_members",
        "role:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))",
    ),
    (
        "modify_member",
        "role:admin or (role:member and project_id:%(member_id)s)",
    ),
];

/// Policy check for one action against its target.
pub trait Authz: Send + Sync {
    /// Ok, or [`ImageError::Forbidden`] naming the action.
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> ImageResult<()>;
}

/// Policy checks through the identity crate's enforcer.
pub struct ImagePolicy {
    /// Glance's defaults, with the operator's overrides.
    pub enforcer: Enforcer,
}

impl Authz for ImagePolicy {
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> ImageResult<()> {
        self.enforcer
            .authorize(action, target, &ctx.creds)
            .map_err(|_| ImageError::policy(action))
    }
}
