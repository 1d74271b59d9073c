//! `PUT /servers/{id}`: a new name and, from 2.19, a new description
//! (`openstack server set --name/--description`). Access IPs are refused by
//! name, as at create: weft has no use for them.

use super::record::Server;
use crate::compute::body::{self, invalid, only};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::service::{Ctx, Env, Write};
use crate::compute::state::{Change, State};
use serde_json::{json, Value};

/// A checked update body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateServer {
    /// New display name.
    pub name: Option<String>,
    /// `Some(None)`: the description cleared (2.19+).
    pub description: Option<Option<String>>,
}

impl UpdateServer {
    /// Checks `{"server": {...}}` as Nova's schema for `mv` does.
    pub fn parse(b: &[u8], mv: (u32, u32)) -> ComputeResult<UpdateServer> {
        let outer = body::object(b)?;
        only(&outer, &["server"])?;
        let m = body::wrapped(&outer, "server")?;
        for k in ["accessIPv4", "accessIPv6"] {
            if m.contains_key(k) {
                return Err(ComputeError::BadRequest(format!(
                    "'{k}' is not supported by this cloud: a server's addresses are its ports'"
                )));
            }
        }
        if mv >= (2, 19) {
            only(m, &["name", "description"])?;
        } else {
            only(m, &["name"])?;
        }
        let name = body::str_field(m, "name", 255)?;
        if let Some(n) = &name {
            if n.trim().is_empty() {
                return Err(invalid("name", &json!(n), "is too short"));
            }
        }
        let description = match m.get("description") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(_) => Some(body::str_field(m, "description", 255)?),
        };
        Ok(UpdateServer { name, description })
    }
}

/// Renames (and re-describes) server `id` under `os_compute_api:servers:update`.
pub fn update(st: &State, env: &mut Env, ctx: &Ctx, id: &str, req: &UpdateServer) -> Write<Server> {
    let s = super::get(st, ctx, id)?;
    env.authz.check(
        ctx,
        "os_compute_api:servers:update",
        &json!({"project_id": s.project_id}),
    )?;
    let mut s = s.clone();
    if let Some(n) = &req.name {
        s.name = n.clone();
    }
    if let Some(d) = &req.description {
        s.description = d.clone();
    }
    s.updated = env.now.clone();
    Ok((s.clone(), vec![Change::Server(Box::new(s))]))
}

#[cfg(test)]
mod tests {
    use super::UpdateServer;

    #[test]
    fn bodies_are_checked_per_microversion() {
        let p = |b: &str, mv| UpdateServer::parse(b.as_bytes(), mv);
        assert_eq!(
            p(r#"{"server": {"name": "n"}}"#, (2, 1))
                .unwrap()
                .name
                .as_deref(),
            Some("n")
        );
        assert!(p(r#"{"server": {"description": "d"}}"#, (2, 18)).is_err());
        assert_eq!(
            p(r#"{"server": {"description": null}}"#, (2, 19))
                .unwrap()
                .description,
            Some(None)
        );
        assert!(p(r#"{"server": {"name": " "}}"#, (2, 79)).is_err());
        assert!(p(r#"{"server": {"accessIPv4": "192.0.2.1"}}"#, (2, 79)).is_err());
        assert!(p(r#"{"server": {"name": 5}}"#, (2, 79)).is_err());
        assert!(p(r#"{"name": "n"}"#, (2, 79)).is_err());
    }
}
