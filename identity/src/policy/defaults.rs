//! Keystone's default rules for the identity API, as Keystone ships them now
//! (the "secure RBAC" defaults: `reader`/`member`/`manager`/`admin` roles,
//! system scope for cloud-wide reads, domain readers and managers for their
//! own domain, users for their own objects).
//!
//! The rule text is the policy language itself, so an operator reading
//! `weft`'s defaults sees the same strings as `oslopolicy-sample-generator`
//! prints for Keystone. Written here from Keystone's documented defaults; the
//! pieces are macros so that the long grant rules are composed, not repeated.
//!
//! Not carried: federation (identity providers, mappings, protocols, service
//! providers), OAuth1, endpoint groups and endpoint policies, domain configs;
//! weft serves none of those APIs.

macro_rules! admin_required {
    () => {
        "rule:admin_required"
    };
}
macro_rules! system_reader {
    () => {
        "role:reader and system_scope:all"
    };
}
macro_rules! system_admin {
    () => {
        "role:admin and system_scope:all"
    };
}
/// admin, or a system reader.
macro_rules! admin_or_system_reader {
    () => {
        concat!(admin_required!(), " or (", system_reader!(), ")")
    };
}
/// admin, a system reader, or the owner (`user_id` from the path).
macro_rules! admin_or_system_reader_or_owner {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            system_reader!(),
            ") or rule:owner"
        )
    };
}
macro_rules! admin_or_system_reader_or_cred_owner {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            system_reader!(),
            ") or ",
            "user_id:%(target.credential.user_id)s"
        )
    };
}
macro_rules! admin_or_cred_owner {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or user_id:%(target.credential.user_id)s"
        )
    };
}
macro_rules! admin_or_member_cred_owner {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or ",
            "(role:member and user_id:%(target.credential.user_id)s)"
        )
    };
}
/// Readers of the domain the target lives in (`domain_id` of a domain-scoped token).
macro_rules! admin_or_system_or_domain_reader {
    ($path:literal) => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            system_reader!(),
            ") or ",
            "(role:reader and domain_id:%(",
            $path,
            ")s)"
        )
    };
}
macro_rules! admin_or_domain_manager {
    ($path:literal) => {
        concat!(
            "(",
            admin_required!(),
            ") or (role:manager and domain_id:%(",
            $path,
            ")s)"
        )
    };
}
macro_rules! project_reader {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            system_reader!(),
            ") or ",
            "(role:reader and domain_id:%(target.project.domain_id)s ",
            "and not None:%(target.project.domain_id)s) or ",
            "project_id:%(target.project.id)s"
        )
    };
}
macro_rules! project_manager {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or ",
            "(role:manager and domain_id:%(target.project.domain_id)s ",
            "and not None:%(target.project.domain_id)s)"
        )
    };
}
macro_rules! user_manager {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or ",
            "(role:manager and token.domain.id:%(target.user.domain_id)s)"
        )
    };
}
/// The four (actor, target) domain pairings a domain-scoped grant may cover.
macro_rules! grant_pairs {
    ($role:literal) => {
        concat!(
            "(role:", $role, " and domain_id:%(target.user.domain_id)s and domain_id:%(target.project.domain_id)s) or ",
            "(role:", $role, " and domain_id:%(target.user.domain_id)s and domain_id:%(target.domain.id)s) or ",
            "(role:", $role, " and domain_id:%(target.group.domain_id)s and domain_id:%(target.project.domain_id)s) or ",
            "(role:", $role, " and domain_id:%(target.group.domain_id)s and domain_id:%(target.domain.id)s)"
        )
    };
}
macro_rules! domain_matching_role {
    () => {
        "(domain_id:%(target.role.domain_id)s or None:%(target.role.domain_id)s)"
    };
}
macro_rules! grant_read {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or ((",
            system_reader!(),
            ") or ",
            grant_pairs!("reader"),
            ")"
        )
    };
}
macro_rules! grant_write {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            grant_pairs!("admin"),
            ") and ",
            domain_matching_role!(),
            " or (",
            grant_pairs!("manager"),
            ") and rule:domain_managed_target_role"
        )
    };
}
macro_rules! trust_party {
    () => {
        concat!(
            "(",
            admin_required!(),
            ") or (",
            system_reader!(),
            " or ",
            "user_id:%(target.trust.trustor_user_id)s or user_id:%(target.trust.trustee_user_id)s)"
        )
    };
}

/// `(action, rule)` for every identity action weft serves, plus the base rules
/// they reference.
pub(crate) static IDENTITY_DEFAULTS: &[(&str, &str)] = &[
    // Base rules.
    ("admin_required", "role:admin or is_admin:1"),
    ("service_role", "role:service"),
    ("service_or_admin", "rule:admin_required or rule:service_role"),
    ("owner", "user_id:%(user_id)s"),
    ("admin_or_owner", "rule:admin_required or rule:owner"),
    ("token_subject", "user_id:%(target.token.user_id)s"),
    ("admin_or_token_subject", "rule:admin_required or rule:token_subject"),
    ("service_admin_or_token_subject", "rule:service_or_admin or rule:token_subject"),
    (
        "domain_managed_target_role",
        "'manager':%(target.role.name)s or 'member':%(target.role.name)s or 'reader':%(target.role.name)s",
    ),
    // Users.
    (
        "identity:get_user",
        concat!(
            "(", admin_required!(), ") or (", system_reader!(), ") or ",
            "(role:reader and token.domain.id:%(target.user.domain_id)s) or ",
            "user_id:%(target.user.id)s"
        ),
    ),
    ("identity:list_users", admin_or_system_or_domain_reader!("target.domain_id")),
    ("identity:create_user", user_manager!()),
    ("identity:update_user", user_manager!()),
    ("identity:delete_user", user_manager!()),
    ("identity:list_projects_for_user", ""),
    ("identity:list_domains_for_user", ""),
    // Projects.
    ("identity:get_project", project_reader!()),
    ("identity:list_projects", admin_or_system_or_domain_reader!("target.domain_id")),
    (
        "identity:list_user_projects",
        concat!(
            admin_or_system_or_domain_reader!("target.user.domain_id"),
            " or user_id:%(target.user.id)s"
        ),
    ),
    ("identity:create_project", project_manager!()),
    ("identity:update_project", project_manager!()),
    ("identity:delete_project", project_manager!()),
    ("identity:list_project_tags", project_reader!()),
    ("identity:get_project_tag", project_reader!()),
    ("identity:update_project_tags", project_manager!()),
    ("identity:create_project_tag", project_manager!()),
    ("identity:delete_project_tags", project_manager!()),
    ("identity:delete_project_tag", project_manager!()),
    // Domains.
    (
        "identity:get_domain",
        concat!(
            admin_or_system_reader!(),
            " or token.domain.id:%(target.domain.id)s",
            " or token.project.domain.id:%(target.domain.id)s"
        ),
    ),
    (
        "identity:list_domains",
        concat!(admin_or_system_reader!(), " or (role:reader and domain_id:%(target.domain.id)s)"),
    ),
    ("identity:create_domain", admin_required!()),
    ("identity:update_domain", admin_required!()),
    ("identity:delete_domain", admin_required!()),
    // Groups and membership.
    ("identity:get_group", admin_or_system_or_domain_reader!("target.group.domain_id")),
    ("identity:list_groups", admin_or_system_or_domain_reader!("target.group.domain_id")),
    (
        "identity:list_groups_for_user",
        concat!(
            admin_or_system_or_domain_reader!("target.user.domain_id"),
            " or user_id:%(user_id)s"
        ),
    ),
    ("identity:create_group", admin_or_domain_manager!("target.group.domain_id")),
    ("identity:update_group", admin_or_domain_manager!("target.group.domain_id")),
    ("identity:delete_group", admin_or_domain_manager!("target.group.domain_id")),
    ("identity:list_users_in_group", admin_or_system_or_domain_reader!("target.group.domain_id")),
    (
        "identity:check_user_in_group",
        concat!(
            "(", admin_required!(), ") or (", system_reader!(), ") or ",
            "(role:reader and domain_id:%(target.group.domain_id)s and domain_id:%(target.user.domain_id)s)"
        ),
    ),
    (
        "identity:add_user_to_group",
        concat!(
            "(", admin_required!(), ") or ",
            "(role:manager and domain_id:%(target.group.domain_id)s and domain_id:%(target.user.domain_id)s)"
        ),
    ),
    (
        "identity:remove_user_from_group",
        concat!(
            "(", admin_required!(), ") or ",
            "(role:manager and domain_id:%(target.group.domain_id)s and domain_id:%(target.user.domain_id)s)"
        ),
    ),
    // Roles.
    (
        "identity:get_role",
        concat!("(", admin_or_system_reader!(), ") or (role:manager and rule:domain_managed_target_role)"),
    ),
    (
        "identity:list_roles",
        concat!("(", admin_or_system_reader!(), ") or (role:manager and not domain_id:None)"),
    ),
    ("identity:create_role", admin_required!()),
    ("identity:update_role", admin_required!()),
    ("identity:delete_role", admin_required!()),
    ("identity:get_domain_role", admin_or_system_reader!()),
    ("identity:list_domain_roles", admin_or_system_reader!()),
    ("identity:create_domain_role", admin_required!()),
    ("identity:update_domain_role", admin_required!()),
    ("identity:delete_domain_role", admin_required!()),
    // Implied roles.
    ("identity:get_implied_role", admin_or_system_reader!()),
    ("identity:list_implied_roles", admin_or_system_reader!()),
    ("identity:create_implied_role", admin_required!()),
    ("identity:delete_implied_role", admin_required!()),
    ("identity:list_role_inference_rules", admin_or_system_reader!()),
    ("identity:check_implied_role", admin_or_system_reader!()),
    // Grants (role assignments on a project or domain) and system grants.
    (
        "identity:check_grant",
        concat!(
            "(", admin_required!(), ") or ((", system_reader!(), ") or (",
            grant_pairs!("reader"), ") and ", domain_matching_role!(), ")"
        ),
    ),
    ("identity:list_grants", grant_read!()),
    ("identity:create_grant", grant_write!()),
    ("identity:revoke_grant", grant_write!()),
    ("identity:list_system_grants_for_user", admin_or_system_reader!()),
    ("identity:check_system_grant_for_user", admin_or_system_reader!()),
    ("identity:create_system_grant_for_user", admin_required!()),
    ("identity:revoke_system_grant_for_user", admin_required!()),
    ("identity:list_system_grants_for_group", admin_or_system_reader!()),
    ("identity:check_system_grant_for_group", admin_or_system_reader!()),
    ("identity:create_system_grant_for_group", admin_required!()),
    ("identity:revoke_system_grant_for_group", admin_required!()),
    ("identity:list_role_assignments", admin_or_system_or_domain_reader!("target.domain_id")),
    (
        "identity:list_role_assignments_for_tree",
        admin_or_system_or_domain_reader!("target.domain_id"),
    ),
    // Catalog: services, endpoints, regions.
    ("identity:get_service", admin_or_system_reader!()),
    ("identity:list_services", admin_or_system_reader!()),
    ("identity:create_service", admin_required!()),
    ("identity:update_service", admin_required!()),
    ("identity:delete_service", admin_required!()),
    ("identity:get_endpoint", admin_or_system_reader!()),
    ("identity:list_endpoints", admin_or_system_reader!()),
    ("identity:create_endpoint", admin_required!()),
    ("identity:update_endpoint", admin_required!()),
    ("identity:delete_endpoint", admin_required!()),
    ("identity:get_region", ""),
    ("identity:list_regions", ""),
    ("identity:create_region", admin_required!()),
    ("identity:update_region", admin_required!()),
    ("identity:delete_region", admin_required!()),
    // Application credentials and access rules.
    ("identity:get_application_credential", admin_or_system_reader_or_owner!()),
    ("identity:list_application_credentials", admin_or_system_reader_or_owner!()),
    ("identity:create_application_credential", "user_id:%(user_id)s"),
    ("identity:delete_application_credential", "rule:admin_or_owner"),
    ("identity:get_access_rule", concat!("(", system_reader!(), ") or user_id:%(target.user.id)s")),
    ("identity:list_access_rules", concat!("(", system_reader!(), ") or user_id:%(target.user.id)s")),
    ("identity:delete_access_rule", concat!("(", system_admin!(), ") or user_id:%(target.user.id)s")),
    // Trusts.
    ("identity:create_trust", "user_id:%(target.trust.trustor_user_id)s"),
    ("identity:list_trusts", admin_or_system_reader!()),
    (
        "identity:list_trusts_for_trustor",
        concat!(
            "(", admin_required!(), ") or (", system_reader!(),
            " or user_id:%(target.trust.trustor_user_id)s)"
        ),
    ),
    (
        "identity:list_trusts_for_trustee",
        concat!(
            "(", admin_required!(), ") or (", system_reader!(),
            " or user_id:%(target.trust.trustee_user_id)s)"
        ),
    ),
    ("identity:list_roles_for_trust", trust_party!()),
    ("identity:get_role_for_trust", trust_party!()),
    ("identity:get_trust", trust_party!()),
    ("identity:delete_trust", "rule:admin_required or user_id:%(target.trust.trustor_user_id)s"),
    // Tokens and revocation.
    (
        "identity:check_token",
        concat!(admin_or_system_reader!(), " or rule:token_subject"),
    ),
    (
        "identity:validate_token",
        concat!(admin_or_system_reader!(), " or rule:service_role or rule:token_subject"),
    ),
    ("identity:revoke_token", "rule:admin_required or rule:token_subject"),
    ("identity:revocation_list", "rule:service_or_admin"),
    ("identity:list_revoke_events", "rule:service_or_admin"),
    // What a token may discover about itself.
    ("identity:get_auth_catalog", ""),
    ("identity:get_auth_projects", ""),
    ("identity:get_auth_domains", ""),
    ("identity:get_auth_system", ""),
    // Credentials (the credential store and EC2 credentials).
    ("identity:get_credential", admin_or_system_reader_or_cred_owner!()),
    ("identity:list_credentials", admin_or_system_reader_or_cred_owner!()),
    ("identity:create_credential", admin_or_cred_owner!()),
    ("identity:update_credential", admin_or_cred_owner!()),
    ("identity:delete_credential", admin_or_cred_owner!()),
    ("identity:ec2_get_credential", admin_or_system_reader_or_cred_owner!()),
    ("identity:ec2_list_credentials", admin_or_system_reader_or_owner!()),
    ("identity:ec2_create_credential", admin_or_member_cred_owner!()),
    ("identity:ec2_delete_credential", admin_or_member_cred_owner!()),
    ("identity:ec2tokens_validate", "rule:service_or_admin"),
    ("identity:s3tokens_validate", "rule:service_or_admin"),
    // Limits.
    ("identity:get_limit_model", ""),
    ("identity:get_registered_limit", ""),
    ("identity:list_registered_limits", ""),
    ("identity:create_registered_limits", admin_required!()),
    ("identity:update_registered_limit", admin_required!()),
    ("identity:delete_registered_limit", admin_required!()),
    (
        "identity:get_limit",
        concat!(
            admin_or_system_reader!(),
            " or (domain_id:%(target.limit.domain.id)s or domain_id:%(target.limit.project.domain_id)s)",
            " or (project_id:%(target.limit.project_id)s and not None:%(target.limit.project_id)s)"
        ),
    ),
    ("identity:list_limits", ""),
    ("identity:create_limits", admin_required!()),
    ("identity:update_limit", admin_required!()),
    ("identity:delete_limit", admin_required!()),
];
