//! Roles, implied roles, grants (project/domain/system, OS-INHERIT) and
//! `GET /role_assignments`.

mod grant;
mod implied;
mod listing;
mod role;

use axum::extract::Query;
pub use grant::grant_routes;
pub use implied::{
    check_implied, create_implied, delete_implied, get_implied, list_implied, role_inferences,
};
pub use listing::role_assignments;
pub use role::{create_role, delete_role, get_role, list_roles, role_json, update_role};
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;
