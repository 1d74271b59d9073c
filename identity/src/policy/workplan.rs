//! From recorded would-be denials to a plan: which role each user needs on
//! which scope, and the trusts a workflow user could use instead.
//!
//! Per (user, scope) every distinct denial is a requirement "one of these
//! roles". A greedy cover picks the role that settles the most requirements,
//! the weakest on a tie (reader < member < manager < other roles < admin), so
//! one `member` grant wins over `admin` when both would do. Denials that no
//! role on the caller's scope could fix but a system-scoped role could become
//! system grants; the rest are listed as needing a policy change.

use super::record::{Record, Scope};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A role assignment to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Who gets the role.
    pub user_id: String,
    /// Where.
    pub scope: Scope,
    /// The role's name.
    pub role: String,
    /// The recorded actions this grant would have allowed.
    pub actions: Vec<String>,
}

/// A delegation that gives a workflow user the same roles on a project
/// without a direct assignment: a user who holds `roles` on `project_id`
/// creates a trust to `trustee_user_id`, who then asks for trust-scoped tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustSuggestion {
    /// The workflow user.
    pub trustee_user_id: String,
    /// The project the roles are delegated on.
    pub project_id: String,
    /// The roles to delegate.
    pub roles: Vec<String>,
    /// The recorded actions it would have allowed.
    pub actions: Vec<String>,
}

/// A denial no single role would fix (the rule wants something other than a
/// role: ownership, a matching domain, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsatisfied {
    /// Who was denied.
    pub user_id: String,
    /// With which scope.
    pub scope: Scope,
    /// The action.
    pub action: String,
    /// The rule that no role satisfies.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
/// What permissive mode's records ask for: grants, trusts, and what neither would fix.
pub struct Workplan {
    /// How many records the plan was made from.
    pub records: usize,
    /// Role assignments to make.
    pub grants: Vec<Grant>,
    /// Trusts to create instead of assignments.
    pub trusts: Vec<TrustSuggestion>,
    /// Denials no role would fix.
    pub unsatisfied: Vec<Unsatisfied>,
}

/// Weakest first.
fn rank(role: &str) -> (u8, &str) {
    let tier = match role {
        "reader" => 0,
        "member" => 1,
        "manager" => 2,
        "admin" => 4,
        _ => 3,
    };
    (tier, role)
}

/// Turns recorded denials into the grants (and trusts) that would allow them.
pub fn workplan(records: &[Record]) -> Workplan {
    // (user, scope) -> requirement (one-of roles) -> actions needing it.
    type Reqs = BTreeMap<Vec<String>, BTreeSet<String>>;
    let mut groups: BTreeMap<(String, Scope), Reqs> = BTreeMap::new();
    let mut unsatisfied: BTreeSet<(String, Scope, String, String)> = BTreeSet::new();
    for r in records {
        let (scope, roles) = if !r.would_satisfy.is_empty() {
            (r.scope.clone(), &r.would_satisfy)
        } else if !r.would_satisfy_system.is_empty() {
            (Scope::System, &r.would_satisfy_system)
        } else {
            unsatisfied.insert((
                r.user_id.clone(),
                r.scope.clone(),
                r.action.clone(),
                r.rule.clone(),
            ));
            continue;
        };
        let mut roles = roles.clone();
        roles.sort_by(|a, b| rank(a).cmp(&rank(b)));
        roles.dedup();
        groups
            .entry((r.user_id.clone(), scope))
            .or_default()
            .entry(roles)
            .or_default()
            .insert(r.action.clone());
    }

    let mut plan = Workplan {
        records: records.len(),
        ..Default::default()
    };
    for ((user_id, scope), reqs) in groups {
        let mut open: Vec<(Vec<String>, BTreeSet<String>)> = reqs.into_iter().collect();
        let mut chosen: Vec<(String, BTreeSet<String>)> = Vec::new();
        while !open.is_empty() {
            let candidates: BTreeSet<&String> = open.iter().flat_map(|(roles, _)| roles).collect();
            let best = candidates
                .into_iter()
                .max_by(|a, b| {
                    let count =
                        |role: &String| open.iter().filter(|(rs, _)| rs.contains(role)).count();
                    count(a).cmp(&count(b)).then(rank(b).cmp(&rank(a)))
                })
                .cloned()
                .expect("an open requirement names at least one role");
            let mut actions = BTreeSet::new();
            open.retain(|(roles, acts)| {
                if roles.contains(&best) {
                    actions.extend(acts.iter().cloned());
                    false
                } else {
                    true
                }
            });
            chosen.push((best, actions));
        }
        chosen.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)));
        if let Scope::Project { id, .. } = &scope {
            plan.trusts.push(TrustSuggestion {
                trustee_user_id: user_id.clone(),
                project_id: id.clone(),
                roles: chosen.iter().map(|(r, _)| r.clone()).collect(),
                actions: chosen
                    .iter()
                    .flat_map(|(_, a)| a.iter().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            });
        }
        for (role, actions) in chosen {
            plan.grants.push(Grant {
                user_id: user_id.clone(),
                scope: scope.clone(),
                role,
                actions: actions.into_iter().collect(),
            });
        }
    }
    plan.unsatisfied = unsatisfied
        .into_iter()
        .map(|(user_id, scope, action, rule)| Unsatisfied {
            user_id,
            scope,
            action,
            rule,
        })
        .collect();
    plan
}

impl fmt::Display for Workplan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Policy workplan from {} recorded denial{}",
            self.records,
            if self.records == 1 { "" } else { "s" }
        )?;
        if self.grants.is_empty() && self.unsatisfied.is_empty() {
            return writeln!(f, "nothing to grant: no action was denied");
        }
        if !self.grants.is_empty() {
            writeln!(f, "\nRole assignments:")?;
        }
        for g in &self.grants {
            let actions = g.actions.join(", ");
            match &g.scope {
                Scope::Unscoped => writeln!(
                    f,
                    "grant role {} to user {} on a project or domain, and use a token scoped to it (for: {actions})",
                    g.role, g.user_id
                )?,
                scope => writeln!(
                    f,
                    "grant role {} to user {} on {scope} (for: {actions})",
                    g.role, g.user_id
                )?,
            }
            let target = match &g.scope {
                Scope::Project { id, .. } => format!("--project {id}"),
                Scope::Domain { id } => format!("--domain {id}"),
                Scope::System => "--system all".to_string(),
                Scope::Unscoped => continue,
            };
            writeln!(
                f,
                "    openstack role add --user {} {target} {}",
                g.user_id, g.role
            )?;
        }
        if !self.trusts.is_empty() {
            writeln!(
                f,
                "\nOr, for a workflow user, delegate instead of granting (a user holding these roles on the project creates the trust; the workflow asks for trust-scoped tokens):"
            )?;
        }
        for t in &self.trusts {
            let roles: Vec<String> = t.roles.iter().map(|r| format!("--role {r}")).collect();
            writeln!(
                f,
                "trust to user {} on project {} with roles {} (for: {})",
                t.trustee_user_id,
                t.project_id,
                t.roles.join(", "),
                t.actions.join(", ")
            )?;
            writeln!(
                f,
                "    openstack trust create --project {} {} <trustor> {}",
                t.project_id,
                roles.join(" "),
                t.trustee_user_id
            )?;
        }
        if !self.unsatisfied.is_empty() {
            writeln!(
                f,
                "\nNot fixable by a role (change the policy or the caller):"
            )?;
        }
        for u in &self.unsatisfied {
            writeln!(
                f,
                "{} by user {} on {}: rule {:?}",
                u.action, u.user_id, u.scope, u.rule
            )?;
        }
        Ok(())
    }
}
