//! Setting up: `bootstrap` (default domain, admin, roles, region) and service registration in the catalog.

use super::{new_id, now_micros, BootstrapReport, Identity, DEFAULT_DOMAIN_ID};
use crate::error::IdentityError;
use crate::model::*;
use crate::state::Tx;

impl Identity {
    /// Create the default domain, admin project and user, the
    /// admin/manager/member/reader/service roles with their implications, admin on the admin project and on system,
    /// and the RegionOne region. Idempotent: a second run changes nothing (it
    /// does not reset the admin password).
    pub fn bootstrap(
        &self,
        admin_password: Option<&str>,
    ) -> Result<BootstrapReport, IdentityError> {
        // Hashed before the write (it must stay cheap and pure); the write
        // itself decides whether the admin user is new, so two replicas
        // bootstrapping one database at once make it once.
        let existing = self
            .snapshot()
            .user_by_name(DEFAULT_DOMAIN_ID, "admin")
            .map(|u| u.id.clone());
        let (generated, hash) = match (&existing, admin_password) {
            (Some(_), _) => (None, None),
            (None, Some(p)) => (None, Some(self.hash_password(p)?)),
            (None, None) => {
                use rand::Rng;
                let pw: String = rand::thread_rng()
                    .sample_iter(&rand::distributions::Alphanumeric)
                    .take(24)
                    .map(char::from)
                    .collect();
                let h = self.hash_password(&pw)?;
                (Some(pw), Some(h))
            }
        };
        let now = now_micros();
        self.write(|tx| {
            if !tx.state.domains.contains_key(DEFAULT_DOMAIN_ID) {
                tx.put_domain(Domain {
                    id: DEFAULT_DOMAIN_ID.into(),
                    name: "Default".into(),
                    description: "The default domain".into(),
                    enabled: true,
                    tags: vec![],
                    extra: Default::default(),
                });
            }
            let role_id = |tx: &mut Tx, name: &str| -> String {
                if let Some(r) = tx
                    .state
                    .roles
                    .values()
                    .find(|r| r.name == name && r.domain_id.is_none())
                {
                    return r.id.clone();
                }
                let id = new_id();
                tx.put_role(Role {
                    id: id.clone(),
                    name: name.into(),
                    domain_id: None,
                    description: None,
                    options: Default::default(),
                });
                id
            };
            // Keystone's bootstrap (2023.2+): reader, member, manager, admin,
            // service; admin -> manager -> member -> reader. Keystone then
            // drops the older admin -> member edge; weft keeps it because the
            // issue promises `admin implies member` in the implied-role list
            // (it changes no effective role: admin reaches member either way).
            let reader = role_id(tx, "reader");
            let member = role_id(tx, "member");
            let manager = role_id(tx, "manager");
            let admin = role_id(tx, "admin");
            role_id(tx, "service");
            tx.add_implied(&member, &reader);
            tx.add_implied(&manager, &member);
            tx.add_implied(&admin, &manager);
            tx.add_implied(&admin, &member);
            let project_id = match tx
                .state
                .projects
                .values()
                .find(|p| p.name == "admin" && p.domain_id == DEFAULT_DOMAIN_ID)
            {
                Some(p) => p.id.clone(),
                None => {
                    let id = new_id();
                    tx.put_project(Project {
                        id: id.clone(),
                        name: "admin".into(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        parent_id: None,
                        description: "Bootstrap project for initializing the cloud.".into(),
                        enabled: true,
                        tags: vec![],
                        extra: Default::default(),
                    });
                    id
                }
            };
            let existing = tx
                .state
                .user_by_name(DEFAULT_DOMAIN_ID, "admin")
                .map(|u| u.id.clone());
            let user_id = match &existing {
                Some(id) => id.clone(),
                None if hash.is_none() => {
                    return Err(IdentityError::conflict(
                        "the admin user was deleted during bootstrap; run it again",
                    ))
                }
                None => {
                    let id = new_id();
                    tx.put_user(User {
                        id: id.clone(),
                        name: "admin".into(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        enabled: true,
                        password_hash: hash.clone(),
                        password_created_at: Some(now),
                        password_expires_at: None,
                        default_project_id: None,
                        description: None,
                        options: Default::default(),
                        extra: Default::default(),
                    });
                    id
                }
            };
            for target in [Target::Project(project_id.clone()), Target::System] {
                let a = Assignment {
                    actor: Actor::User(user_id.clone()),
                    target,
                    role_id: admin.clone(),
                    inherited: false,
                };
                if !tx.state.assignments.contains_key(&a.key()) {
                    tx.put_assignment(a);
                }
            }
            if !tx.state.regions.contains_key("RegionOne") {
                tx.put_region(Region {
                    id: "RegionOne".into(),
                    description: String::new(),
                    parent_region_id: None,
                });
            }
            Ok(BootstrapReport {
                admin_user_id: user_id,
                admin_project_id: project_id,
                admin_role_id: admin,
                generated_password: generated.clone().filter(|_| existing.is_none()),
                already_bootstrapped: existing.is_some(),
            })
        })
    }

    /// Make sure the catalog has service `name` of `service_type` with public,
    /// internal and admin endpoints at `url` in RegionOne. Idempotent; an
    /// endpoint whose URL changed (a new `--public-url`) is updated.
    pub fn register_service(
        &self,
        service_type: &str,
        name: &str,
        url: &str,
    ) -> Result<(), IdentityError> {
        self.write(|tx| {
            if !tx.state.regions.contains_key("RegionOne") {
                tx.put_region(Region {
                    id: "RegionOne".into(),
                    description: String::new(),
                    parent_region_id: None,
                });
            }
            let service_id = match tx
                .state
                .services
                .values()
                .find(|s| s.service_type == service_type && s.name.as_deref() == Some(name))
            {
                Some(s) => s.id.clone(),
                None => {
                    let id = new_id();
                    tx.put_service(Service {
                        id: id.clone(),
                        service_type: service_type.into(),
                        name: Some(name.into()),
                        description: None,
                        enabled: true,
                    });
                    id
                }
            };
            for iface in ["public", "internal", "admin"] {
                let found = tx
                    .state
                    .endpoints
                    .values()
                    .find(|e| {
                        e.service_id == service_id
                            && e.interface == iface
                            && e.region_id.as_deref() == Some("RegionOne")
                    })
                    .cloned();
                match found {
                    Some(e) if e.url == url => {}
                    Some(mut e) => {
                        e.url = url.into();
                        tx.put_endpoint(e);
                    }
                    None => tx.put_endpoint(Endpoint {
                        id: new_id(),
                        service_id: service_id.clone(),
                        interface: iface.into(),
                        url: url.into(),
                        region_id: Some("RegionOne".into()),
                        enabled: true,
                    }),
                }
            }
            Ok(())
        })
    }
}
