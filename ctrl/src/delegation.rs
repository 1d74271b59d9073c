//! How builds act in `weft serve`: the roles a build's trust holds, worked
//! out from the loaded policy; the compute service user's delegation
//! (trusts, step tokens); and placement claims made with the compute
//! service's own token, through placement's policy.
//!
//! ```text
//!  start:  STEPS x policy (image, networking, placement rules) ─► records ─► workplan
//!            ─► trust roles (user -> compute, on the user's project)    e.g. [member]
//!            ─► service roles (compute user, on project `service`)     e.g. [service]
//!  build:  Delegate::token(trust | own, audience) ─► observe::request_context ─► policy
//! ```
//!
//! A step runs either for the user (with the trust: image reads, the ports
//! made in the user's project) or as the compute service itself (binding a
//! port to a host, placement claims: Nova's own work, which a project
//! member could not delegate because the rules ask for `service` or
//! `admin`). Which is which is the [`STEPS`] table; which roles each needs
//! is the policy's answer, so an operator's policy file changes it.

use crate::observe::request_context;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_compute::compute::build::claims::{ClaimError, Claims, Resources};
use weft_compute::compute::build::trusts::Delegation;
use weft_compute::placement::model::Inventory;
use weft_compute::placement::Placement;
use weft_identity::policy::{workplan, Credentials, Enforcer, Mode, Record};
use weft_identity::service::{BuildTrust, ServiceUser};
use weft_identity::token::Audience;
use weft_identity::Identity;

/// Whose authority a build step runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The user's, through the trust.
    Trust,
    /// The compute service's own.
    Service,
}

/// One policy action a build takes.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Under whose authority.
    pub authority: Authority,
    /// The service whose rule it is.
    pub service: Audience,
    /// The rule's name in that service's policy.
    pub action: &'static str,
}

const fn step(authority: Authority, service: Audience, action: &'static str) -> Step {
    Step {
        authority,
        service,
        action,
    }
}

/// Every policy action a build (and its teardown, and the host's later steps for the
/// user: a snapshot's upload, an interface's port) takes.
pub const STEPS: &[Step] = &[
    step(Authority::Trust, Audience::Image, "get_image"),
    step(Authority::Trust, Audience::Image, "download_image"),
    // createImage: the snapshot's data goes into the user's queued image as the user.
    step(Authority::Trust, Audience::Image, "upload_image"),
    step(Authority::Trust, Audience::Network, "create_port"),
    step(Authority::Trust, Audience::Network, "create_port:fixed_ips"),
    step(
        Authority::Trust,
        Audience::Network,
        "create_port:fixed_ips:ip_address",
    ),
    step(
        Authority::Trust,
        Audience::Network,
        "create_port:device_owner",
    ),
    step(Authority::Trust, Audience::Network, "update_port"),
    step(
        Authority::Trust,
        Audience::Network,
        "update_port:device_owner",
    ),
    step(Authority::Service, Audience::Network, "update_port"),
    step(
        Authority::Service,
        Audience::Network,
        "update_port:binding:host_id",
    ),
    step(Authority::Service, Audience::Network, "delete_port"),
    step(
        Authority::Service,
        Audience::Placement,
        "placement:allocation_candidates:list",
    ),
    step(
        Authority::Service,
        Audience::Placement,
        "placement:allocations:update",
    ),
    step(
        Authority::Service,
        Audience::Placement,
        "placement:allocations:delete",
    ),
    // A host's provider: made at registration, deleted with its compute
    // service, its aggregates kept as the host's (the compute API's own
    // placement writes, under the same service user).
    step(
        Authority::Service,
        Audience::Placement,
        "placement:resource_providers:create",
    ),
    step(
        Authority::Service,
        Audience::Placement,
        "placement:resource_providers:delete",
    ),
    step(
        Authority::Service,
        Audience::Placement,
        "placement:resource_providers:aggregates:update",
    ),
];

/// The roles builds need, from the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRoles {
    /// What the user's trust holds on the server's project.
    pub trust: Vec<String>,
    /// What the compute service user holds on project `service`.
    pub service: Vec<String>,
}

// Stand-ins for the parties while the plan is worked out.
const BUILDER: &str = "compute-build";
const SERVICE: &str = "compute-service";
const USER_PROJECT: &str = "the-users-project";
const SERVICE_PROJECT: &str = "service";

/// The target a step's rule sees: a resource of the user's project (a
/// private image, a port on the project's own network).
fn target(service: Audience) -> serde_json::Value {
    let p = USER_PROJECT;
    match service {
        Audience::Image => {
            serde_json::json!({"project_id": p, "owner": p, "visibility": "private"})
        }
        Audience::Network => serde_json::json!({"project_id": p, "tenant_id": p,
            "network_project_id": p, "network_device": false, "network:shared": false}),
        Audience::Placement => serde_json::json!({"project_id": null}),
    }
}

/// The roles of the build's trust and of the compute service user: every
/// [`STEPS`] action evaluated with no role under each service's rules (the
/// defaults, with `policy_file`'s overrides, as the services load them),
/// the refusals turned into a workplan, and its greedy role cover read off.
/// A step no role could allow is an error naming it.
pub fn derive_roles(policy_file: Option<&Path>) -> Result<BuildRoles, String> {
    let mut enforcers = BTreeMap::new();
    for (service, defaults) in [
        (Audience::Image, weft_compute::image::policy::DEFAULTS),
        (Audience::Network, crate::networking::policy::DEFAULTS),
        (
            Audience::Placement,
            weft_compute::placement::policy::DEFAULTS,
        ),
    ] {
        let e = Enforcer::new(defaults, policy_file, Mode::Enforce, None)
            .map_err(|e| format!("{service} policy: {e}"))?;
        enforcers.insert(service, e);
    }
    let mut records: Vec<Record> = Vec::new();
    for s in STEPS {
        let (user, project) = match s.authority {
            Authority::Trust => (BUILDER, USER_PROJECT),
            Authority::Service => (SERVICE, SERVICE_PROJECT),
        };
        let creds = Credentials {
            user_id: user.into(),
            project_id: Some(project.into()),
            ..Credentials::default()
        };
        let e = &enforcers[&s.service];
        let t = target(s.service);
        if !e.check(s.action, &t, &creds) {
            let rule = e.rule_text(s.action).unwrap_or("!").to_string();
            records.push(e.record(s.action, rule, &t, &creds));
        }
    }
    let plan = workplan(&records);
    if let Some(u) = plan.unsatisfied.first() {
        return Err(format!(
            "the policy leaves build step {} unsatisfiable by any role (rule {:?})",
            u.action, u.rule
        ));
    }
    let roles_of = |user: &str| {
        plan.trusts
            .iter()
            .find(|t| t.trustee_user_id == user)
            .map(|t| t.roles.clone())
            .unwrap_or_default()
    };
    Ok(BuildRoles {
        trust: roles_of(BUILDER),
        service: roles_of(SERVICE),
    })
}

/// How long the compute service's own step token is reused (it lives
/// [`weft_identity::service::STEP_TOKEN_TTL`]); trust tokens are fresh per step.
const OWN_TOKEN_REUSE: Duration = Duration::from_secs(60);

/// The compute service user's delegation, over this process's identity.
pub struct Delegate {
    identity: Arc<Identity>,
    user: ServiceUser,
    roles: BuildRoles,
    own: Mutex<HashMap<Audience, (String, Instant)>>,
}

impl Delegate {
    /// The compute service user `nova` made (or found) with `roles.service`
    /// on project `service`, its password kept in `state_dir/nova-password`.
    /// Blocking.
    pub fn open(
        identity: Arc<Identity>,
        state_dir: &Path,
        roles: BuildRoles,
    ) -> Result<Delegate, String> {
        let user = identity
            .ensure_service_user("nova", &roles.service, &state_dir.join("nova-password"))
            .map_err(|e| format!("compute service user: {e}"))?;
        Ok(Delegate {
            identity,
            user,
            roles,
            own: Mutex::new(HashMap::new()),
        })
    }

    /// The compute service user.
    pub fn user(&self) -> &ServiceUser {
        &self.user
    }

    /// The roles builds were given.
    pub fn roles(&self) -> &BuildRoles {
        &self.roles
    }
}

impl Delegation for Delegate {
    fn create_trust(&self, trustor: &Credentials) -> Result<String, String> {
        let project = trustor
            .project_id
            .clone()
            .ok_or("A project-scoped token is needed to create a server.")?;
        self.identity
            .create_build_trust(&BuildTrust {
                trustor_user_id: trustor.user_id.clone(),
                trustee_user_id: self.user.user_id.clone(),
                project_id: project,
                roles: self.roles.trust.clone(),
            })
            .map_err(|e| e.to_string())
    }

    fn delete_trust(&self, trust_id: &str) -> Result<(), String> {
        self.identity
            .delete_build_trust(trust_id)
            .map_err(|e| e.to_string())
    }

    fn token(&self, trust: Option<&str>, audience: Audience) -> Result<String, String> {
        if trust.is_none() {
            let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, at)) = own.get(&audience) {
                if at.elapsed() < OWN_TOKEN_REUSE {
                    return Ok(t.clone());
                }
            }
        }
        let t = self
            .identity
            .step_token(&self.user, trust, audience)
            .map_err(|e| e.to_string())?;
        if trust.is_none() {
            self.own
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(audience, (t.clone(), Instant::now()));
        }
        Ok(t)
    }
}

/// The credentials of a step token for the service mounted at `prefix`,
/// through the same checks an HTTP request's token passes.
pub fn step_credentials(
    identity: &Identity,
    delegation: &dyn Delegation,
    trust: Option<&str>,
    audience: Audience,
    prefix: &str,
) -> Result<Credentials, String> {
    let who = match trust {
        Some(t) => format!("trust {t}"),
        None => "the compute service".to_string(),
    };
    let token = delegation
        .token(trust, audience)
        .map_err(|e| format!("no {audience} token for {who}: {e}"))?;
    request_context(identity, &token, prefix)
        .map(|c| c.credentials())
        .map_err(|e| format!("the {audience} service refused the token of {who}: {e}"))
}

/// Placement as the build loop uses it: every call made with the compute
/// service's own placement token and checked against placement's policy.
pub struct ServiceClaims {
    /// The placement service of this process.
    pub placement: Arc<Placement>,
    /// Validates the tokens.
    pub identity: Arc<Identity>,
    /// Where the tokens come from.
    pub delegation: Arc<dyn Delegation>,
}

impl ServiceClaims {
    fn authorize(&self, action: &str) -> Result<(), String> {
        let creds = step_credentials(
            &self.identity,
            self.delegation.as_ref(),
            None,
            Audience::Placement,
            "placement",
        )?;
        self.placement
            .authorize(&creds, action, None)
            .map_err(|e| format!("placement: {e}"))
    }
}

impl Claims for ServiceClaims {
    fn candidates(&self, want: &Resources) -> Result<BTreeMap<String, Resources>, String> {
        self.authorize("placement:allocation_candidates:list")?;
        self.placement.candidates(want)
    }

    fn claim(
        &self,
        server: &str,
        provider: &str,
        want: &Resources,
        project: &str,
        user: &str,
    ) -> Result<(), ClaimError> {
        self.authorize("placement:allocations:update")
            .map_err(ClaimError::Failed)?;
        self.placement.claim(server, provider, want, project, user)
    }

    fn release(&self, server: &str) -> Result<(), String> {
        self.authorize("placement:allocations:delete")?;
        self.placement.release(server)
    }

    fn register(
        &self,
        host: &str,
        inventory: &BTreeMap<String, Inventory>,
    ) -> Result<String, String> {
        self.authorize("placement:resource_providers:create")?;
        self.placement.register(host, inventory)
    }

    // A resize's allocation moves are allocation writes, under the same
    // rule as a claim; without these the trait's defaults refuse every
    // resize ("this placement cannot hold migrations").
    fn move_to_migration(
        &self,
        server: &str,
        migration: &str,
        provider: &str,
        want: &Resources,
    ) -> Result<(), ClaimError> {
        self.authorize("placement:allocations:update")
            .map_err(ClaimError::Failed)?;
        self.placement
            .move_to_migration(server, migration, provider, want)
    }

    fn revert_migration(&self, server: &str, migration: &str) -> Result<(), String> {
        self.authorize("placement:allocations:update")?;
        self.placement.revert_migration(server, migration)
    }

    fn unregister(&self, provider: &str) -> Result<(), ClaimError> {
        self.authorize("placement:resource_providers:delete")
            .map_err(ClaimError::Failed)?;
        self.placement.unregister(provider)
    }

    fn set_member(&self, provider: &str, aggregate: &str, member: bool) -> Result<(), String> {
        self.authorize("placement:resource_providers:aggregates:update")?;
        self.placement.set_member(provider, aggregate, member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_gives_builds_member_and_the_service_user_service() {
        let r = derive_roles(None).unwrap();
        assert_eq!(r.trust, ["member"]);
        assert_eq!(r.service, ["service"]);
    }

    #[test]
    fn a_policy_file_changes_the_roles() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("policy.yaml");
        // Images only for holders of `image_user`; claims for `placement_writer`.
        std::fs::write(
            &f,
            "get_image: \"role:image_user and project_id:%(project_id)s\"\n\
             download_image: \"role:image_user and project_id:%(project_id)s\"\n\
             \"placement:allocations:update\": \"role:placement_writer\"\n",
        )
        .unwrap();
        let r = derive_roles(Some(&f)).unwrap();
        assert_eq!(r.trust, ["member", "image_user"]);
        assert_eq!(r.service, ["placement_writer", "service"]);
        // A step no role can allow is refused at start, by name.
        std::fs::write(&f, "download_image: \"!\"\n").unwrap();
        let e = derive_roles(Some(&f)).unwrap_err();
        assert!(e.contains("download_image"), "{e}");
    }
}
