//! What the build needs of placement: candidates with room, a claim per
//! server (the consumer is the server's id), its release, and a host's
//! provider with inventory. A trait, so that the build logic does not care
//! whether placement is in this process ([`Placement`] here) or behind HTTP.

use crate::placement::allocations::{self, ConsumerWrite};
use crate::placement::candidates::{self, Group, Request};
use crate::placement::microversion::MAX;
use crate::placement::model::Inventory;
use crate::placement::providers::{self, CreateProvider};
use crate::placement::service::Ctx;
use crate::placement::Placement;
use std::collections::BTreeMap;

/// Class -> amount.
pub type Resources = BTreeMap<String, u64>;

/// A claim that did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The provider filled up (or its generation moved) since the
    /// candidates were read: try the next host.
    Conflict(String),
    /// Anything else.
    Failed(String),
}

/// Placement, as the build uses it.
pub trait Claims: Send + Sync {
    /// Root providers with room for `want`, with their free capacity per class.
    fn candidates(&self, want: &Resources) -> Result<BTreeMap<String, Resources>, String>;
    /// Allocates `want` on `provider` for a new consumer `server`.
    fn claim(
        &self,
        server: &str,
        provider: &str,
        want: &Resources,
        project: &str,
        user: &str,
    ) -> Result<(), ClaimError>;
    /// Frees what `server` holds (nothing held is fine).
    fn release(&self, server: &str) -> Result<(), String>;
    /// The provider named `host`, made if missing, with this inventory.
    fn register(
        &self,
        host: &str,
        inventory: &BTreeMap<String, Inventory>,
    ) -> Result<String, String>;
    /// Starts a same-host resize as Nova does: in one write, `migration`
    /// (a new consumer) takes over what `server` holds, and `server` holds
    /// `want` on `provider`. A full host refuses it whole.
    fn move_to_migration(
        &self,
        server: &str,
        migration: &str,
        provider: &str,
        want: &Resources,
    ) -> Result<(), ClaimError> {
        let _ = (server, migration, provider, want);
        Err(ClaimError::Failed(
            "this placement cannot hold migrations".into(),
        ))
    }
    /// Reverts a resize: `server` holds what `migration` held again, and
    /// `migration` nothing.
    fn revert_migration(&self, server: &str, migration: &str) -> Result<(), String> {
        let _ = (server, migration);
        Err("this placement cannot hold migrations".into())
    }
    /// Deletes a deleted compute service's provider, so that placement no
    /// longer offers a host that is gone (a missing one is fine). One that
    /// still holds allocations is refused as a [`ClaimError::Conflict`]:
    /// deleting it would drop its consumers' claims.
    fn unregister(&self, provider: &str) -> Result<(), ClaimError> {
        let _ = provider;
        Err(ClaimError::Failed(
            "this placement cannot delete providers".into(),
        ))
    }
    /// Puts `provider` in placement aggregate `aggregate` (`member`) or
    /// takes it out, as Nova mirrors a host aggregate's membership so that
    /// `member_of` finds the host; already so is fine.
    fn set_member(&self, provider: &str, aggregate: &str, member: bool) -> Result<(), String> {
        let _ = (provider, aggregate, member);
        Err("this placement cannot hold aggregates".into())
    }
}

fn ctx() -> Ctx {
    Ctx { version: MAX }
}

/// The write that gives `to` what `from` holds (on the generations read)
/// and `from` `then` (empty: nothing). Both consumers keep `from`'s
/// project and user.
fn hand_over(
    st: &crate::placement::state::State,
    from: &str,
    to: &str,
    to_type: &str,
    then: allocations::Allocs,
) -> Result<Vec<ConsumerWrite>, String> {
    let old = st
        .consumers
        .get(from)
        .ok_or_else(|| format!("consumer {from} holds no allocation"))?;
    let (project, user) = (Some(old.project_id.clone()), Some(old.user_id.clone()));
    let from_type = old.consumer_type.clone();
    Ok(vec![
        ConsumerWrite {
            consumer: to.to_string(),
            allocations: old.allocations.clone(),
            project_id: project.clone(),
            user_id: user.clone(),
            consumer_generation: st.consumers.get(to).map(|c| c.generation),
            consumer_type: Some(to_type.into()),
        },
        ConsumerWrite {
            consumer: from.to_string(),
            allocations: then,
            project_id: project,
            user_id: user,
            consumer_generation: Some(old.generation),
            consumer_type: from_type,
        },
    ])
}

impl Claims for Placement {
    fn candidates(&self, want: &Resources) -> Result<BTreeMap<String, Resources>, String> {
        let st = self.snapshot();
        let req = Request {
            unsuffixed: Group {
                resources: want.clone(),
                ..Group::default()
            },
            nested: true,
            ..Request::default()
        };
        let found = candidates::candidates(&st, &req);
        let mut out = BTreeMap::new();
        for c in &found.requests {
            for rp in c.allocations.keys() {
                let Some(p) = st.providers.get(*rp) else {
                    continue;
                };
                let free: Resources = p
                    .inventories
                    .iter()
                    .map(|(rc, inv)| {
                        (
                            rc.clone(),
                            inv.capacity().saturating_sub(st.used(&p.uuid, rc)),
                        )
                    })
                    .collect();
                out.insert(p.root.clone(), free);
            }
        }
        Ok(out)
    }

    fn claim(
        &self,
        server: &str,
        provider: &str,
        want: &Resources,
        project: &str,
        user: &str,
    ) -> Result<(), ClaimError> {
        let w = ConsumerWrite {
            consumer: server.to_string(),
            allocations: [(provider.to_string(), want.clone())].into(),
            project_id: Some(project.to_string()),
            user_id: Some(user.to_string()),
            consumer_generation: None,
            consumer_type: Some("INSTANCE".into()),
        };
        self.write(ctx(), move |st, env, cx| {
            allocations::write(st, env, cx, std::slice::from_ref(&w))
        })
        .map_err(|e| {
            if e.is_refusal() {
                ClaimError::Conflict(e.to_string())
            } else {
                ClaimError::Failed(e.to_string())
            }
        })
    }

    fn release(&self, server: &str) -> Result<(), String> {
        if !self.snapshot().consumers.contains_key(server) {
            return Ok(());
        }
        let id = server.to_string();
        match self.write(ctx(), move |st, env, cx| {
            allocations::delete(st, env, cx, &id)
        }) {
            Ok(()) => Ok(()),
            Err(e) if !self.snapshot().consumers.contains_key(server) => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn move_to_migration(
        &self,
        server: &str,
        migration: &str,
        provider: &str,
        want: &Resources,
    ) -> Result<(), ClaimError> {
        let (server, migration) = (server.to_string(), migration.to_string());
        let then: allocations::Allocs = [(provider.to_string(), want.clone())].into();
        self.write(ctx(), move |st, env, cx| {
            let w = hand_over(st, &server, &migration, "MIGRATION", then.clone())
                .map_err(crate::placement::error::PlacementError::bad)?;
            allocations::write(st, env, cx, &w)
        })
        .map_err(|e| {
            if e.is_refusal() {
                ClaimError::Conflict(e.to_string())
            } else {
                ClaimError::Failed(e.to_string())
            }
        })
    }

    fn revert_migration(&self, server: &str, migration: &str) -> Result<(), String> {
        let (server, migration) = (server.to_string(), migration.to_string());
        self.write(ctx(), move |st, env, cx| {
            // The migration's empty write deletes it, in the same commit
            // (so its usage is given back before the server's is checked).
            let w = hand_over(st, &migration, &server, "INSTANCE", BTreeMap::new())
                .map_err(crate::placement::error::PlacementError::bad)?;
            allocations::write(st, env, cx, &w)
        })
        .map_err(|e| e.to_string())
    }

    fn unregister(&self, provider: &str) -> Result<(), ClaimError> {
        let u = provider.to_string();
        self.write(ctx(), move |st, env, cx| {
            if !st.providers.contains_key(&u) {
                return Ok(((), vec![]));
            }
            providers::delete(st, env, cx, &u)
        })
        .map_err(|e| {
            if e.is_refusal() {
                ClaimError::Conflict(e.to_string())
            } else {
                ClaimError::Failed(e.to_string())
            }
        })
    }

    fn set_member(&self, provider: &str, aggregate: &str, member: bool) -> Result<(), String> {
        let (u, a) = (provider.to_string(), aggregate.to_ascii_lowercase());
        // On the generation read in the same write: a concurrent change of
        // the provider reruns it rather than losing either.
        self.write(ctx(), move |st, env, cx| {
            let p = crate::placement::service::provider(st, &u)?;
            let mut aggs = p.aggregates.clone();
            let changed = if member {
                aggs.insert(a.clone())
            } else {
                aggs.remove(&a)
            };
            if !changed {
                return Ok(((), vec![]));
            }
            let list: Vec<String> = aggs.into_iter().collect();
            let (_, changes) =
                crate::placement::aggregates::set(st, env, cx, &u, &list, Some(p.generation))?;
            Ok(((), changes))
        })
        .map_err(|e| e.to_string())
    }

    fn register(
        &self,
        host: &str,
        inventory: &BTreeMap<String, Inventory>,
    ) -> Result<String, String> {
        // Found or made in one write: another replica registering the same
        // host at the same moment is seen on the write's catch-up and rerun
        // (its provider is then found, not made twice).
        let name = host.to_string();
        let uuid = self
            .write(ctx(), move |st, env, cx| {
                if let Some(p) = st.providers.values().find(|p| p.name == name) {
                    return Ok((p.uuid.clone(), vec![]));
                }
                let req = CreateProvider {
                    name: name.clone(),
                    uuid: None,
                    parent_provider_uuid: None,
                };
                let (p, changes) = providers::create(st, env, cx, &req)?;
                Ok((p.uuid, changes))
            })
            .map_err(|e| e.to_string())?;
        let inv = inventory.clone();
        let u = uuid.clone();
        // The inventory is the host's own truth: written whole, on the
        // generation read in the same write (so it retries on a conflict).
        self.write(ctx(), move |st, env, _| {
            let p = st.providers.get(&u).ok_or_else(|| {
                crate::placement::error::PlacementError::not_found(format!("provider {u}"))
            })?;
            if p.inventories == inv {
                return Ok(((), vec![]));
            }
            let mut next = p.clone();
            next.inventories = inv.clone();
            next.generation += 1;
            next.updated_at = env.now.clone();
            Ok(((), vec![crate::placement::state::Change::Provider(next)]))
        })
        .map_err(|e| e.to_string())?;
        Ok(uuid)
    }
}
