//! Security groups, with each project's `default` group (their rules: `rule.rs`).

use super::{get_sg, project_of, Ctx, Env, Write};
use crate::networking::body::SecurityGroupReq;
use crate::networking::error::{NetError, NetResult};
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::json;

fn default_rules(env: &mut Env, sg: &SecurityGroup, with_ingress: bool) -> Vec<SecurityGroupRule> {
    let mut out = Vec::new();
    for ethertype in ["IPv4", "IPv6"] {
        let mut dirs = vec!["egress"];
        if with_ingress {
            dirs.push("ingress");
        }
        for direction in dirs {
            out.push(SecurityGroupRule {
                id: env.ids.uuid(),
                security_group_id: sg.id.clone(),
                project_id: sg.project_id.clone(),
                direction: direction.into(),
                ethertype: ethertype.into(),
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote_ip_prefix: None,
                remote_group_id: (direction == "ingress").then(|| sg.id.clone()),
                std: Std::new(&env.now, String::new()),
            });
        }
    }
    out
}

/// The project's `default` group: its id, and the changes that create it
/// when the project has none yet. Only writes call this (network, port and
/// security group creates); listing groups never creates one.
pub fn ensure_default_sg(st: &State, env: &mut Env, project: &str) -> (String, Vec<Change>) {
    if let Some(g) = st
        .security_groups
        .values()
        .find(|g| g.project_id == project && g.name == "default")
    {
        return (g.id.clone(), Vec::new());
    }
    let g = SecurityGroup {
        id: env.ids.uuid(),
        name: "default".into(),
        project_id: project.to_string(),
        stateful: true,
        std: Std::new(&env.now, "Default security group".into()),
    };
    let mut changes = vec![Change::SecurityGroup(g.clone())];
    changes.extend(default_rules(env, &g, true).into_iter().map(Change::Rule));
    (g.id, changes)
}

/// Neutron's `name_not_default` validator, on create and update alike: only
/// the project's own default group is called `default`, in any case.
fn check_name_not_default(name: &str) -> NetResult<()> {
    if name.eq_ignore_ascii_case("default") {
        return Err(NetError::conflict(
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        ));
    }
    Ok(())
}

/// Whether any port uses group `id`.
fn in_use(st: &State, id: &str) -> bool {
    st.ports
        .values()
        .any(|p| p.security_groups.iter().any(|s| s == id))
}

/// `POST /security-groups`: a new group, stateful or not, gets Neutron's
/// two egress rules (its default rule templates for non-default groups);
/// a stateless group's replies then need ingress rules of their own.
pub fn create_sg(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &SecurityGroupReq,
) -> Write<SecurityGroup> {
    let f = req.clone();
    let name = f.name.unwrap_or_default();
    check_name_not_default(&name)?;
    let project = project_of(f.project_id, f.tenant_id, ctx)?;
    env.authz.check(
        ctx,
        "create_security_group",
        &json!({"project_id": project, "tenant_id": project}),
    )?;
    let description = f.description.unwrap_or_default();
    let stateful = f.stateful.unwrap_or(true);
    let (_, mut changes) = ensure_default_sg(st, env, &project);
    let g = SecurityGroup {
        id: env.ids.uuid(),
        name,
        project_id: project,
        stateful,
        std: Std::new(&env.now, description),
    };
    changes.push(Change::SecurityGroup(g.clone()));
    changes.extend(default_rules(env, &g, false).into_iter().map(Change::Rule));
    Ok((g, changes))
}

/// `PUT /security-groups/{id}`: the default group keeps its name; no group
/// takes the name `default`; `stateful` flips only on a group no port uses.
pub fn update_sg(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &SecurityGroupReq,
) -> Write<SecurityGroup> {
    let old = get_sg(st, ctx, id)?;
    env.authz.check(
        ctx,
        "update_security_group",
        &json!({"project_id": old.project_id, "tenant_id": old.project_id}),
    )?;
    let f = req.clone();
    if let Some(name) = &f.name {
        check_name_not_default(name)?;
    }
    let mut g = old.clone();
    if let Some(v) = f.stateful {
        // The ports' firewalls were built for what the group was: Neutron
        // refuses the flip while any port uses the group.
        if v != old.stateful && in_use(st, id) {
            return Err(NetError::conflict(
                "SecurityGroupInUse",
                format!("Security Group {id} in use."),
            ));
        }
        g.stateful = v;
    }
    if let Some(v) = f.name {
        if old.name == "default" {
            return Err(NetError::conflict(
                "SecurityGroupCannotUpdateDefault",
                "Updating default security group not allowed.",
            ));
        }
        g.name = v;
    }
    if let Some(v) = f.description {
        g.std.description = v;
    }
    g.std.touch(&env.now);
    Ok((g.clone(), vec![Change::SecurityGroup(g)]))
}

/// `DELETE /security-groups/{id}`: refused (409) while a port uses it, and
/// for the default group unless by an admin (Neutron's order of the two).
/// Rules of other groups that name it as their remote go with it.
pub fn delete_sg(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let g = get_sg(st, ctx, id)?;
    env.authz.check(
        ctx,
        "delete_security_group",
        &json!({"project_id": g.project_id, "tenant_id": g.project_id}),
    )?;
    if in_use(st, id) {
        return Err(NetError::conflict(
            "SecurityGroupInUse",
            format!("Security Group {id} in use."),
        ));
    }
    if g.name == "default" && !ctx.is_admin {
        return Err(NetError::conflict(
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.",
        ));
    }
    let mut changes: Vec<Change> = st
        .rules
        .values()
        .filter(|r| r.security_group_id == id || r.remote_group_id.as_deref() == Some(id))
        .map(|r| Change::Delete(Kind::Rule, r.id.clone()))
        .collect();
    changes.push(Change::Delete(Kind::SecurityGroup, id.to_string()));
    Ok(((), changes))
}
