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
}

fn ctx() -> Ctx {
    Ctx { version: MAX }
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
