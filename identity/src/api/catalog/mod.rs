//! Service catalog: regions, services, endpoints.

mod endpoint;
mod region;
mod service;

use super::util::*;
use crate::model::*;
use crate::service::*;
use axum::extract::Query;
pub use endpoint::{
    create_endpoint, delete_endpoint, get_endpoint, list_endpoints, update_endpoint,
};
pub use region::{
    create_region, delete_region, get_region, list_regions, put_region, update_region,
};
use serde_json::{json, Value};
pub use service::{create_service, delete_service, get_service, list_services, update_service};
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;

fn region_json(id: &Identity, r: &Region) -> Value {
    json!({"id": r.id, "description": r.description, "parent_region_id": r.parent_region_id,
           "links": self_link(id, &format!("regions/{}", r.id))})
}

fn service_json(id: &Identity, s: &Service) -> Value {
    json!({"id": s.id, "type": s.service_type, "name": s.name, "description": s.description, "enabled": s.enabled,
           "links": self_link(id, &format!("services/{}", s.id))})
}

fn endpoint_json(id: &Identity, e: &Endpoint) -> Value {
    json!({"id": e.id, "interface": e.interface, "url": e.url, "service_id": e.service_id,
           "region_id": e.region_id, "region": e.region_id, "enabled": e.enabled,
           "links": self_link(id, &format!("endpoints/{}", e.id))})
}
