//! The Keystone v3 HTTP API over [`Identity`]: one axum `Router`, mounted by
//! ctrl under `/identity` (it serves `/` and `/v3/...`).

mod assignments;
mod auth;
mod catalog;
mod delegation;
mod resources;
mod util;

pub use util::{ApiError, Auth, JsonBody, TokenRejected};

use crate::service::Identity;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

/// The identity API. State: the shared [`Identity`].
pub fn router(identity: Arc<Identity>) -> Router {
    let v3 = Router::new()
        .route("/", get(auth::version))
        .fallback(util::not_found);
    let v3 = token_routes(v3);
    let v3 = resource_routes(v3);
    let v3 = role_routes(v3);
    let v3 = catalog_routes(v3);
    let v3 = delegation_routes(v3);
    let v3 = assignments::grant_routes(v3);
    Router::new()
        .route("/", get(auth::versions))
        .nest("/v3", v3)
        .route("/v3/", get(auth::version))
        .fallback(util::not_found)
        .with_state(identity)
}

/// The `/v3` router as it is being built.
type V3 = Router<Arc<Identity>>;

/// Tokens and the `auth/*` discovery calls.
fn token_routes(r: V3) -> V3 {
    r.route(
        "/auth/tokens",
        post(auth::issue)
            .get(auth::validate)
            .head(auth::check)
            .delete(auth::revoke),
    )
    .route("/auth/projects", get(auth::auth_projects))
    .route("/auth/domains", get(auth::auth_domains))
    .route("/auth/system", get(auth::auth_system))
    .route("/auth/catalog", get(auth::auth_catalog))
}

/// Domains, projects, users, groups and group membership.
fn resource_routes(r: V3) -> V3 {
    r.route(
        "/domains",
        get(resources::list_domains).post(resources::create_domain),
    )
    .route(
        "/domains/{id}",
        get(resources::get_domain)
            .patch(resources::update_domain)
            .delete(resources::delete_domain),
    )
    .route(
        "/projects",
        get(resources::list_projects).post(resources::create_project),
    )
    .route(
        "/projects/{id}",
        get(resources::get_project)
            .patch(resources::update_project)
            .delete(resources::delete_project),
    )
    .route(
        "/users",
        get(resources::list_users).post(resources::create_user),
    )
    .route(
        "/users/{id}",
        get(resources::get_user)
            .patch(resources::update_user)
            .delete(resources::delete_user),
    )
    .route("/users/{id}/password", post(resources::change_password))
    .route("/users/{id}/groups", get(resources::user_groups))
    .route("/users/{id}/projects", get(resources::user_projects))
    .route(
        "/groups",
        get(resources::list_groups).post(resources::create_group),
    )
    .route(
        "/groups/{id}",
        get(resources::get_group)
            .patch(resources::update_group)
            .delete(resources::delete_group),
    )
    .route("/groups/{id}/users", get(resources::group_users))
    .route(
        "/groups/{gid}/users/{uid}",
        put(resources::add_member)
            .head(resources::check_member)
            .get(resources::check_member)
            .delete(resources::remove_member),
    )
}

/// Roles, implied roles and role assignments (grants: `assignments::grant_routes`).
fn role_routes(r: V3) -> V3 {
    r.route(
        "/roles",
        get(assignments::list_roles).post(assignments::create_role),
    )
    .route(
        "/roles/{id}",
        get(assignments::get_role)
            .patch(assignments::update_role)
            .delete(assignments::delete_role),
    )
    .route("/roles/{id}/implies", get(assignments::list_implied))
    .route(
        "/roles/{prior}/implies/{implied}",
        put(assignments::create_implied)
            .get(assignments::get_implied)
            .head(assignments::check_implied)
            .delete(assignments::delete_implied),
    )
    .route("/role_inferences", get(assignments::role_inferences))
    .route("/role_assignments", get(assignments::role_assignments))
}

/// The catalog: regions, services, endpoints.
fn catalog_routes(r: V3) -> V3 {
    r.route(
        "/regions",
        get(catalog::list_regions).post(catalog::create_region),
    )
    .route(
        "/regions/{id}",
        get(catalog::get_region)
            .patch(catalog::update_region)
            .delete(catalog::delete_region)
            .put(catalog::put_region),
    )
    .route(
        "/services",
        get(catalog::list_services).post(catalog::create_service),
    )
    .route(
        "/services/{id}",
        get(catalog::get_service)
            .patch(catalog::update_service)
            .delete(catalog::delete_service),
    )
    .route(
        "/endpoints",
        get(catalog::list_endpoints).post(catalog::create_endpoint),
    )
    .route(
        "/endpoints/{id}",
        get(catalog::get_endpoint)
            .patch(catalog::update_endpoint)
            .delete(catalog::delete_endpoint),
    )
}

/// Application credentials and trusts.
fn delegation_routes(r: V3) -> V3 {
    r.route(
        "/users/{id}/application_credentials",
        get(delegation::list_app_creds).post(delegation::create_app_cred),
    )
    .route(
        "/users/{id}/application_credentials/{cid}",
        get(delegation::get_app_cred).delete(delegation::delete_app_cred),
    )
    .route(
        "/OS-TRUST/trusts",
        get(delegation::list_trusts).post(delegation::create_trust),
    )
    .route(
        "/OS-TRUST/trusts/{id}",
        get(delegation::get_trust).delete(delegation::delete_trust),
    )
    .route("/OS-TRUST/trusts/{id}/roles", get(delegation::trust_roles))
    .route(
        "/OS-TRUST/trusts/{id}/roles/{rid}",
        get(delegation::trust_role).head(delegation::trust_role),
    )
}
