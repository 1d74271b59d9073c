//! The identity service: state snapshots, writes, authentication and token
//! validation. HTTP lives in `api`; this module knows nothing of it.

use crate::error::IdentityError;
use crate::model::*;
use crate::policy::{self, Credentials, Enforcer, Mode};
use crate::state::{Scope, State, TokenFacts, Tx, SERVICE};
use crate::token::{self, Payload, TokenScope};
use axum::body::Bytes;
use dashmap::DashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weft_store::{Follow, Replica, Row, Store};

/// How an [`Identity`] is set up.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Holds the policy decision log (and, from older versions,
    /// `identity.sqlite` and `fernet-keys/`, imported into the store once).
    pub state_dir: PathBuf,
    /// Base URL clients reach the server by (no trailing slash), e.g. `http://10.0.0.5:8080`.
    pub public_url: String,
    /// Lifetime of an issued token.
    pub token_ttl: Duration,
    /// A YAML or JSON file overriding the default policy rules.
    pub policy_file: Option<PathBuf>,
    /// Allow every action but record what the policy would deny.
    pub policy_permissive: bool,
}

impl IdentityConfig {
    /// A config with the defaults: one-hour tokens, the built-in policy, enforced.
    pub fn new(state_dir: impl Into<PathBuf>, public_url: impl Into<String>) -> Self {
        IdentityConfig {
            state_dir: state_dir.into(),
            public_url: public_url.into().trim_end_matches('/').to_string(),
            token_ttl: Duration::from_secs(3600),
            policy_file: None,
            policy_permissive: false,
        }
    }
}

/// The id of the domain `weft bootstrap` makes (as Keystone's).
pub const DEFAULT_DOMAIN_ID: &str = "default";
/// bcrypt cost: 2^10 rounds (Keystone defaults to 12; see the benches for the cost).
pub const BCRYPT_COST: u32 = 10;
/// Keystone's `max_redelegation_count`.
pub const MAX_REDELEGATION: u32 = 3;

/// What `bootstrap` made (ids), and the admin password when it generated one.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// The admin user's id.
    pub admin_user_id: String,
    /// The admin project's id.
    pub admin_project_id: String,
    /// The admin role's id.
    pub admin_role_id: String,
    /// `Some` only when bootstrap created the admin user with a generated password.
    pub generated_password: Option<String>,
    /// True when the admin user already existed.
    pub already_bootstrapped: bool,
}

/// The trust a trust-scoped token acts under.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustInfo {
    /// The trust's id.
    pub id: String,
    /// Who delegated.
    pub trustor_user_id: String,
    /// Who acts.
    pub trustee_user_id: String,
    /// True: the token shows the trustor as its user.
    pub impersonation: bool,
}

/// A validated token: who, in what scope, with which effective roles.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthContext {
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user_name: String,
    /// The user's domain id.
    pub user_domain_id: String,
    /// The user's domain name.
    pub user_domain_name: String,
    /// Set for a project-scoped token.
    pub project_id: Option<String>,
    /// The scoped project's name.
    pub project_name: Option<String>,
    /// The scoped project's domain id.
    pub project_domain_id: Option<String>,
    /// The scoped project's domain name.
    pub project_domain_name: Option<String>,
    /// Set for a domain-scoped token.
    pub domain_id: Option<String>,
    /// The scoped domain's name.
    pub domain_name: Option<String>,
    /// True for a system-scoped token.
    pub system_scope: bool,
    /// Effective role names for the scope (implied roles expanded).
    pub roles: Vec<String>,
    /// Ids of `roles`, same order.
    pub role_ids: Vec<String>,
    /// Scoped to the admin project (Keystone's `is_admin_project`).
    pub is_admin_project: bool,
    /// How the token was obtained (`password`, `token`, `application_credential`).
    pub methods: Vec<String>,
    /// When it was issued (micros).
    pub issued_at: Micros,
    /// When it expires (micros).
    pub expires_at: Micros,
    /// Its audit id, then the audit id of the token it was made from, if any.
    pub audit_ids: Vec<String>,
    /// Set for a trust-scoped token.
    pub trust: Option<TrustInfo>,
    /// Set for a token from an application credential.
    pub app_cred_id: Option<String>,
    /// When the user's password expires, shown in the token body.
    pub password_expires_at: Option<Micros>,
    pub(crate) payload: Payload,
}

impl AuthContext {
    /// What the policy engine matches rules against.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            user_id: self.user_id.clone(),
            user_domain_id: Some(self.user_domain_id.clone()),
            roles: self.roles.clone(),
            project_id: self.project_id.clone(),
            project_domain_id: self.project_domain_id.clone(),
            domain_id: self.domain_id.clone(),
            system_scope: self.system_scope.then(|| "all".to_string()),
            is_admin_project: self.is_admin_project,
        }
    }
    /// Whether the token carries the role (by name, implied roles included).
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r == name)
    }
}

/// The `identity.auth` section of `POST /auth/tokens`, parsed.
#[derive(Debug, Clone, Default)]
pub struct AuthRequest {
    /// The `password` method.
    pub password: Option<PasswordAuth>,
    /// The `token` method's token id.
    pub token: Option<String>,
    /// The `application_credential` method.
    pub app_cred: Option<AppCredAuth>,
    /// What the token is to be scoped to.
    pub scope: ScopeRequest,
}

/// A user named by id, or by name within a domain named by id or name.
#[derive(Debug, Clone, Default)]
pub struct UserRef {
    /// By id.
    pub id: Option<String>,
    /// By name, with a domain.
    pub name: Option<String>,
    /// The domain of `name`, by id.
    pub domain_id: Option<String>,
    /// The domain of `name`, by name.
    pub domain_name: Option<String>,
}

/// The `password` method: a user and its password.
#[derive(Debug, Clone, Default)]
pub struct PasswordAuth {
    /// The user.
    pub user: UserRef,
    /// The password, checked against the stored hash.
    pub password: String,
}

/// The `application_credential` method: a credential by id, or by name with its user, and its secret.
#[derive(Debug, Clone, Default)]
pub struct AppCredAuth {
    /// By id.
    pub id: Option<String>,
    /// By name, with `user`.
    pub name: Option<String>,
    /// The owner of a credential named by name.
    pub user: Option<UserRef>,
    /// The secret shown once when it was created.
    pub secret: String,
}

/// The `scope` of a token request.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ScopeRequest {
    #[default]
    /// No scope: the token only proves who the user is.
    Unscoped,
    /// A project, by id or by name within a domain.
    Project {
        /// By id.
        id: Option<String>,
        /// By name, with a domain.
        name: Option<String>,
        /// The domain of `name`, by id.
        domain_id: Option<String>,
        /// The domain of `name`, by name.
        domain_name: Option<String>,
    },
    /// A domain, by id or name.
    Domain {
        /// By id.
        id: Option<String>,
        /// By name.
        name: Option<String>,
    },
    /// The whole deployment (`system: all`).
    System,
    /// A trust, by id (`OS-TRUST:trust`).
    Trust(String),
}

/// The identity service. `Send + Sync`; share it in an `Arc`.
pub struct Identity {
    cfg: IdentityConfig,
    /// The state: one writer, readers on an immutable snapshot.
    replica: Arc<Replica<State>>,
    enforcer: Enforcer,
    pub(crate) bcrypt_cost: u32,
    /// Validated tokens of the current state revision (see [`Identity::validate_token`]).
    validated: DashMap<String, Validated>,
    /// Rendered `GET /auth/tokens` bodies, keyed by (token, with catalog).
    bodies: DashMap<(String, bool), RenderedBody>,
}

/// A token validated against one state revision: every write (role removed,
/// user disabled, revocation event, trust deleted, key rotation, here or on
/// another replica) bumps the revision, so an entry of an older revision is
/// never used. `valid_until` covers what expires
/// without a write: the token itself, its trust and its application credential.
struct Validated {
    revision: u64,
    key_generation: u64,
    valid_until: Micros,
    ctx: AuthContext,
}

struct RenderedBody {
    revision: u64,
    valid_until: Micros,
    body: Bytes,
}

/// Past this many entries a cache is emptied rather than grown: a flood of
/// distinct tokens costs a re-validation each, never unbounded memory.
const VALIDATION_CACHE_MAX: usize = 100_000;

/// Now, in the service's time unit; the HTTP shell passes it in, the logic never reads a clock.
pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// A new random id, in Keystone's form (32 hex digits).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Keystone's time format: `2026-11-28T08:26:31.000000Z`.
pub fn fmt_time(t: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A time as Keystone echoes the naive UTC datetimes it stores for
/// application credentials (oslo's `PERFECT_TIME_FORMAT`: six fraction
/// digits, no zone), e.g. `2099-01-02T03:04:05.000000`.
pub fn fmt_naive_time(t: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// Parse an ISO 8601 time as clients send it (with or without zone / fraction).
pub fn parse_time(s: &str) -> Option<Micros> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let s = s.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

const AUTH_FAILED: &str = "The request you have made requires authentication.";

fn unauthorized() -> IdentityError {
    IdentityError::Unauthorized(AUTH_FAILED.to_string())
}

/// Hash of an application credential secret.
pub(crate) fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Identity {
    /// Opens identity's state in `store`. On a store that has never held
    /// identity, an older `<state_dir>/identity.sqlite` is imported at its
    /// revision; Fernet keys are made (or imported from an older
    /// `<state_dir>/fernet-keys/`) when the store has none. Blocking.
    pub fn open(cfg: IdentityConfig, store: Arc<dyn Store>) -> Result<Identity, IdentityError> {
        std::fs::create_dir_all(&cfg.state_dir)?;
        let mut replica = Replica::<State>::open(SERVICE, store.clone())?;
        let legacy = cfg.state_dir.join("identity.sqlite");
        if replica.revision() == 0 && legacy.exists() {
            let (revision, rows) = read_legacy(&legacy)?;
            if store.import(SERVICE, revision, &rows)? {
                tracing::info!(
                    path = %legacy.display(),
                    revision,
                    records = rows.len(),
                    "identity: imported the state of an older version"
                );
                replica = Replica::open(SERVICE, store)?;
            }
        }
        let replica = Arc::new(replica);
        ensure_keys(&replica, &cfg.state_dir.join("fernet-keys"))?;
        let state = replica.snapshot();
        let mode = if cfg.policy_permissive {
            Mode::Permissive
        } else {
            Mode::Enforce
        };
        let mut enforcer = Enforcer::new(
            policy::identity_defaults(),
            cfg.policy_file.as_deref(),
            mode,
            Some(policy::records_path(&cfg.state_dir)),
        )?;
        // So permissive-mode records can name the weakest role that would do.
        let pairs: Vec<(String, String)> = state
            .implied
            .iter()
            .filter_map(|(p, i)| {
                Some((
                    state.roles.get(p)?.name.clone(),
                    state.roles.get(i)?.name.clone(),
                ))
            })
            .collect();
        enforcer.set_role_implications(&pairs);
        Ok(Identity {
            cfg,
            replica,
            enforcer,
            bcrypt_cost: BCRYPT_COST,
            validated: DashMap::new(),
            bodies: DashMap::new(),
        })
    }

    /// The replica, for the change-log follower (`Server::follow`).
    pub fn replica(&self) -> Arc<dyn Follow> {
        self.replica.clone()
    }

    /// Promotes the staged Fernet key to primary, stages a new one and drops
    /// the oldest secondaries beyond `max_active` keys (at least 3): one
    /// write, so every replica on the database follows. Tokens sealed with a
    /// kept key stay valid. Returns the key indexes now held. Blocking.
    pub fn rotate_keys(&self, max_active: usize) -> Result<Vec<u64>, IdentityError> {
        let staged_next = token::generate_key();
        self.write(|tx| {
            let staged = match tx.state.fernet_keys.get(&0) {
                Some(k) => k.clone(),
                None => token::generate_key(),
            };
            let next = tx
                .state
                .fernet_keys
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                + 1;
            tx.put_fernet_key(next, staged);
            tx.put_fernet_key(0, staged_next.clone());
            let mut idx: Vec<u64> = tx.state.fernet_keys.keys().copied().collect();
            while idx.len() > max_active.max(3) {
                let oldest = idx
                    .iter()
                    .copied()
                    .find(|&i| i != 0)
                    .expect("more than one key");
                tx.del_fernet_key(oldest);
                idx.retain(|&i| i != oldest);
            }
            Ok(idx)
        })
    }

    /// The config it was opened with.
    pub fn config(&self) -> &IdentityConfig {
        &self.cfg
    }

    /// The policy enforcer (other services check their rules with it).
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// The current state (an immutable snapshot; cheap).
    pub fn snapshot(&self) -> Arc<State> {
        self.replica.snapshot()
    }

    /// The revision: bumped by every write.
    pub fn revision(&self) -> u64 {
        self.replica.revision()
    }

    /// Lower the bcrypt cost (tests and benches only need it to be real, not slow).
    pub fn set_bcrypt_cost(&mut self, cost: u32) {
        self.bcrypt_cost = cost.clamp(4, 31);
    }

    /// `{public_url}/identity/v3`
    pub fn v3_url(&self) -> String {
        format!("{}/identity/v3", self.cfg.public_url)
    }

    /// Runs one write: `f` changes a [`Tx`] over the current snapshot, and its
    /// changes are committed on the revision it read. On a conflict (another
    /// replica wrote first) `f` runs again on the caught-up state, so it must
    /// do nothing but read the state and change the `Tx` (hash passwords and
    /// the like before). Readers never wait. Blocking: from an async handler
    /// use [`Identity::write_async`].
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&mut Tx) -> Result<T, IdentityError>,
    ) -> Result<T, IdentityError> {
        self.replica.write(|state: &State| {
            let mut tx = Tx::new(state.clone());
            let out = f(&mut tx)?;
            Ok((out, tx.changes))
        })
    }

    /// [`Identity::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Tx) -> Result<T, IdentityError> + Send + 'static,
    ) -> Result<T, IdentityError> {
        self.replica
            .write_async(move |state: &State| {
                let mut tx = Tx::new(state.clone());
                let out = f(&mut tx)?;
                Ok((out, tx.changes))
            })
            .await
    }

    /// A password hash at the configured bcrypt cost (for imports and tests that build users directly).
    pub fn hash_password(&self, pw: &str) -> Result<String, IdentityError> {
        if pw.len() > 4096 {
            return Err(IdentityError::bad(
                "Invalid input for field 'password': too long.",
            ));
        }
        bcrypt::hash(pw, self.bcrypt_cost).map_err(|e| IdentityError::bad(format!("password: {e}")))
    }

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

    /// Validate a token (`X-Auth-Token` or `X-Subject-Token`): decrypt, check
    /// expiry and revocation events, and resolve the user, scope and effective
    /// roles from the in-memory state (no database access).
    ///
    /// A token already validated against the current state revision is
    /// answered from a cache (no decrypt, no role resolution): any write
    /// bumps the revision, so a removed role or a revocation still takes
    /// effect on the next request.
    pub fn validate_token(&self, token: &str) -> Result<AuthContext, IdentityError> {
        let now = now_micros();
        self.replica.read(|state| {
            let key_generation = state.keys.generation;
            if let Some(v) = self.validated.get(token) {
                if v.revision == state.revision
                    && v.key_generation == key_generation
                    && now < v.valid_until
                {
                    return Ok(v.ctx.clone());
                }
            }
            let payload = state.keys.open_token(token).ok_or_else(unauthorized)?;
            let ctx = context_from_payload(state, payload, now)?;
            if self.validated.len() >= VALIDATION_CACHE_MAX {
                self.validated.clear();
            }
            self.validated.insert(
                token.to_string(),
                Validated {
                    revision: state.revision,
                    key_generation,
                    valid_until: valid_until(state, &ctx),
                    ctx: ctx.clone(),
                },
            );
            Ok(ctx)
        })
    }

    /// The rendered token body for `token` at the current revision, made by
    /// `render` on a miss (`GET /auth/tokens` answers the same bytes until
    /// the state changes).
    pub fn rendered_token_body(
        &self,
        token: &str,
        ctx: &AuthContext,
        with_catalog: bool,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let now = now_micros();
        let state = self.replica.snapshot();
        let key = (token.to_string(), with_catalog);
        if let Some(b) = self.bodies.get(&key) {
            if b.revision == state.revision && now < b.valid_until {
                return b.body.clone();
            }
        }
        let body = render();
        if self.bodies.len() >= VALIDATION_CACHE_MAX {
            self.bodies.clear();
        }
        self.bodies.insert(
            key,
            RenderedBody {
                revision: state.revision,
                valid_until: valid_until(&state, ctx),
                body: body.clone(),
            },
        );
        body
    }

    /// Authenticate and issue a token: `(token id, its context)`.
    pub fn issue_token(&self, req: &AuthRequest) -> Result<(String, AuthContext), IdentityError> {
        let now = now_micros();
        let state = self.snapshot();
        let mut methods = 0u8;
        let mut user_id: Option<String> = None;
        let mut expires_at =
            now + i64::try_from(self.cfg.token_ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let mut audit_chain: Option<[u8; 16]> = None;
        let mut app_cred: Option<AppCred> = None;
        let mut scope_req = req.scope.clone();

        if let Some(pw) = &req.password {
            let u = find_user(&state, &pw.user);
            let ok = match u.and_then(|u| u.password_hash.as_deref()) {
                Some(h) => bcrypt::verify(&pw.password, h).unwrap_or(false),
                None => {
                    // Spend the same time as a real check so unknown users don't show.
                    let _ = bcrypt::verify(&pw.password, dummy_hash(self.bcrypt_cost));
                    false
                }
            };
            let u = u.filter(|_| ok).ok_or_else(unauthorized)?;
            if let Some(exp) = u.password_expires_at {
                if exp <= now {
                    return Err(IdentityError::Unauthorized(format!(
                        "The password is expired and needs to be changed for user: {}.",
                        u.id
                    )));
                }
            }
            methods |= token::METHOD_PASSWORD;
            user_id = Some(u.id.clone());
        }
        if let Some(t) = &req.token {
            let ctx = self.validate_token(t)?;
            if ctx.trust.is_some() {
                return Err(IdentityError::Forbidden(
                    "Trust-scoped tokens cannot be rescoped.".into(),
                ));
            }
            if ctx.app_cred_id.is_some() {
                return Err(IdentityError::Forbidden(
                    "Application credential tokens cannot be rescoped.".into(),
                ));
            }
            if user_id.as_deref().is_some_and(|u| u != ctx.user_id) {
                return Err(unauthorized());
            }
            methods |= ctx.payload.methods | token::METHOD_TOKEN;
            expires_at = expires_at.min(ctx.expires_at);
            audit_chain = ctx.payload.audit_ids.last().copied();
            user_id = Some(ctx.user_id.clone());
        }
        if let Some(ac) = &req.app_cred {
            let cred = find_app_cred(&state, ac).ok_or_else(unauthorized)?;
            if !ct_eq(
                secret_hash(&ac.secret).as_bytes(),
                cred.secret_hash.as_bytes(),
            ) {
                return Err(unauthorized());
            }
            if cred.expires_at.is_some_and(|e| e <= now) {
                return Err(unauthorized());
            }
            if user_id.as_deref().is_some_and(|u| u != cred.user_id) {
                return Err(unauthorized());
            }
            match &scope_req {
                ScopeRequest::Unscoped => {}
                ScopeRequest::Project { id: Some(p), .. } if *p == cred.project_id => {}
                _ => {
                    return Err(IdentityError::Unauthorized(
                        "Application credentials cannot request a scope.".into(),
                    ))
                }
            }
            scope_req = ScopeRequest::Project {
                id: Some(cred.project_id.clone()),
                name: None,
                domain_id: None,
                domain_name: None,
            };
            methods |= token::METHOD_APP_CRED;
            user_id = Some(cred.user_id.clone());
            if let Some(e) = cred.expires_at {
                expires_at = expires_at.min(e);
            }
            app_cred = Some(cred.clone());
        }
        let user_id = user_id.ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'identity/methods': no method given.")
        })?;
        let user = state.users.get(&user_id).ok_or_else(unauthorized)?;
        if !user.enabled
            || !state
                .domains
                .get(&user.domain_id)
                .is_some_and(|d| d.enabled)
        {
            return Err(unauthorized());
        }

        let scope = match &scope_req {
            ScopeRequest::Unscoped => match &user.default_project_id {
                Some(p)
                    if state.projects.get(p).is_some_and(|p| p.enabled)
                        && !state
                            .effective_role_ids(&user_id, &Scope::Project(p.clone()))
                            .is_empty() =>
                {
                    TokenScope::Project(p.clone())
                }
                _ => TokenScope::Unscoped,
            },
            ScopeRequest::System => TokenScope::System,
            ScopeRequest::Domain { id, name } => {
                let d = match (id, name) {
                    (Some(id), _) => state.domains.get(id),
                    (None, Some(n)) => state.domains.values().find(|d| &d.name == n),
                    _ => None,
                };
                TokenScope::Domain(d.ok_or_else(unauthorized)?.id.clone())
            }
            ScopeRequest::Project {
                id,
                name,
                domain_id,
                domain_name,
            } => {
                let p = match (id, name) {
                    (Some(id), _) => state.projects.get(id),
                    (None, Some(n)) => {
                        let did = match (domain_id, domain_name) {
                            (Some(d), _) => Some(d.clone()),
                            (None, Some(dn)) => state
                                .domains
                                .values()
                                .find(|d| &d.name == dn)
                                .map(|d| d.id.clone()),
                            _ => None,
                        };
                        did.and_then(|did| {
                            state
                                .projects
                                .values()
                                .find(|p| &p.name == n && p.domain_id == did)
                        })
                    }
                    _ => None,
                };
                TokenScope::Project(p.ok_or_else(unauthorized)?.id.clone())
            }
            ScopeRequest::Trust(tid) => {
                let t = state
                    .trusts
                    .get(tid)
                    .ok_or_else(|| IdentityError::not_found("trust", tid))?;
                if t.trustee_user_id != user_id {
                    return Err(IdentityError::Forbidden("User is not a trustee.".into()));
                }
                if t.remaining_uses == Some(0) || t.expires_at.is_some_and(|e| e <= now) {
                    return Err(IdentityError::not_found("trust", tid));
                }
                if let Some(e) = t.expires_at {
                    expires_at = expires_at.min(e);
                }
                TokenScope::Trust(tid.clone())
            }
        };
        let payload = Payload {
            user_id: user_id.clone(),
            methods,
            scope,
            app_cred_id: app_cred.map(|c| c.id),
            issued_at: now,
            expires_at,
            audit_ids: {
                let mut v = vec![rand::random::<[u8; 16]>()];
                v.extend(audit_chain);
                v
            },
        };
        // Resolve before counting a trust use, so a refused token costs nothing.
        let ctx = context_from_payload(&state, payload.clone(), now)?;
        if let TokenScope::Trust(tid) = &payload.scope {
            self.write(|tx| {
                let mut t = tx
                    .state
                    .trusts
                    .get(tid)
                    .cloned()
                    .ok_or_else(|| IdentityError::not_found("trust", tid))?;
                match t.remaining_uses {
                    Some(0) => return Err(IdentityError::not_found("trust", tid)),
                    Some(n) => {
                        t.remaining_uses = Some(n - 1);
                        tx.put_trust(t);
                    }
                    None => {}
                }
                Ok(())
            })?;
        }
        let token = state
            .keys
            .seal(&payload)
            .ok_or_else(|| IdentityError::Keys {
                path: self.cfg.state_dir.join("fernet-keys"),
                message: "no Fernet keys in the store".into(),
            })?;
        Ok((token, ctx))
    }

    /// Record a revocation event (written through, so it survives a restart).
    pub fn revoke(&self, ev: RevocationEvent) -> Result<(), IdentityError> {
        let ttl = i64::try_from(self.cfg.token_ttl.as_micros()).unwrap_or(i64::MAX / 4);
        let keep = ttl.max(86_400_000_000);
        let now = now_micros();
        self.write(|tx| {
            let mut ev = ev.clone();
            ev.id = new_id();
            if ev.issued_before == 0 {
                ev.issued_before = now;
            }
            tx.put_revocation(ev);
            prune_revocations(tx, now, keep);
            Ok(())
        })
    }

    /// `DELETE /auth/tokens`: revoke that token (by its audit id).
    pub fn revoke_token(&self, token: &str) -> Result<(), IdentityError> {
        let ctx = self.validate_token(token)?;
        self.revoke(RevocationEvent {
            audit_id: ctx.audit_ids.first().cloned(),
            issued_before: ctx.issued_at,
            ..Default::default()
        })
    }

    /// Check `action` against the caller's credentials and `target`.
    pub fn authorize(
        &self,
        ctx: &AuthContext,
        action: &str,
        target: &serde_json::Value,
    ) -> Result<(), IdentityError> {
        self.enforcer
            .authorize(action, target, &ctx.credentials())
            .map_err(|d| {
                IdentityError::Forbidden(format!(
                    "You are not authorized to perform the requested action: {}.",
                    d.action
                ))
            })
    }
}

/// Reads an older version's `identity.sqlite`: its records and revision.
fn read_legacy(path: &Path) -> Result<(u64, Vec<Row>), IdentityError> {
    Ok(weft_store::read_legacy(path, "records")?)
}

/// Makes sure the store holds Fernet keys: those of an older version's
/// `dir` when there is one (so its tokens keep validating), else a new
/// staged (0) and primary (1) key. Checked inside the write, so replicas
/// starting together on one database agree on one set.
fn ensure_keys(replica: &Replica<State>, dir: &Path) -> Result<(), IdentityError> {
    if !replica.read(|s| s.fernet_keys.is_empty()) {
        return Ok(());
    }
    let keys = match dir.is_dir() {
        true => token::read_key_dir(dir)?,
        false => vec![],
    };
    let keys = if keys.iter().any(|(i, _)| *i != 0) {
        tracing::info!(path = %dir.display(), count = keys.len(), "identity: importing Fernet keys into the store");
        keys
    } else {
        vec![(0, token::generate_key()), (1, token::generate_key())]
    };
    replica.write(|state: &State| {
        let mut tx = Tx::new(state.clone());
        if tx.state.fernet_keys.is_empty() {
            for (i, k) in &keys {
                tx.put_fernet_key(*i, k.clone());
            }
        }
        Ok::<_, IdentityError>(((), tx.changes))
    })
}

pub(crate) fn prune_revocations(tx: &mut Tx, now: Micros, keep: Micros) {
    let old: Vec<String> = tx
        .state
        .revocations
        .values()
        .filter(|e| e.issued_before + keep < now)
        .map(|e| e.id.clone())
        .collect();
    for id in old {
        tx.del_revocation(&id);
    }
}

/// A bcrypt hash of a random password, checked when the user is unknown so
/// that "no such user" costs the same time as "wrong password".
fn dummy_hash(cost: u32) -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| bcrypt::hash(new_id(), cost).unwrap_or_default())
}

pub(crate) fn find_user<'a>(state: &'a State, r: &UserRef) -> Option<&'a User> {
    if let Some(id) = &r.id {
        return state.users.get(id);
    }
    let name = r.name.as_ref()?;
    let did = match (&r.domain_id, &r.domain_name) {
        (Some(d), _) => d.clone(),
        (None, Some(n)) => state.domains.values().find(|d| &d.name == n)?.id.clone(),
        _ => return None,
    };
    state.user_by_name(&did, name)
}

fn find_app_cred<'a>(state: &'a State, a: &AppCredAuth) -> Option<&'a AppCred> {
    if let Some(id) = &a.id {
        return state.app_creds.get(id);
    }
    let name = a.name.as_ref()?;
    let user = find_user(state, a.user.as_ref()?)?;
    state
        .app_creds
        .values()
        .find(|c| &c.name == name && c.user_id == user.id)
}

/// Until when a validation stays true if the state does not change: the
/// token's expiry, capped by its trust's and application credential's.
fn valid_until(state: &State, ctx: &AuthContext) -> Micros {
    let trust = ctx
        .trust
        .as_ref()
        .and_then(|t| state.trusts.get(&t.id))
        .and_then(|t| t.expires_at);
    let app_cred = ctx
        .app_cred_id
        .as_ref()
        .and_then(|a| state.app_creds.get(a))
        .and_then(|a| a.expires_at);
    [Some(ctx.expires_at), trust, app_cred]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(ctx.expires_at)
}

/// Resolve a decrypted payload against the state: the pure core of validation.
pub fn context_from_payload(
    state: &State,
    payload: Payload,
    now: Micros,
) -> Result<AuthContext, IdentityError> {
    if payload.expires_at <= now {
        return Err(unauthorized());
    }
    let audit_ids: Vec<String> = payload.audit_ids.iter().map(token::audit_str).collect();
    let (project_scope, domain_scope, trust_id) = match &payload.scope {
        TokenScope::Project(p) => (Some(p.clone()), None, None),
        TokenScope::Domain(d) => (None, Some(d.clone()), None),
        TokenScope::Trust(t) => (
            state.trusts.get(t).and_then(|t| t.project_id.clone()),
            None,
            Some(t.clone()),
        ),
        _ => (None, None, None),
    };
    let facts = TokenFacts {
        user_id: &payload.user_id,
        project_id: project_scope.as_deref(),
        domain_id: domain_scope.as_deref(),
        trust_id: trust_id.as_deref(),
        audit_ids: audit_ids.iter().map(String::as_str).collect(),
        issued_at: payload.issued_at,
    };
    if state.is_revoked(&facts) {
        return Err(unauthorized());
    }
    let enabled_user = |id: &str| -> Option<&User> {
        let u = state.users.get(id)?;
        (u.enabled && state.domains.get(&u.domain_id).is_some_and(|d| d.enabled)).then_some(u)
    };
    let authn_user = enabled_user(&payload.user_id).ok_or_else(unauthorized)?;
    let mut shown_user = authn_user;
    let mut trust_info = None;
    let role_ids: Vec<String> = match &payload.scope {
        TokenScope::Unscoped => vec![],
        TokenScope::System => state
            .effective_role_ids(&authn_user.id, &Scope::System)
            .into_iter()
            .collect(),
        TokenScope::Domain(d) => {
            if !state.domains.get(d).is_some_and(|d| d.enabled) {
                return Err(unauthorized());
            }
            state
                .effective_role_ids(&authn_user.id, &Scope::Domain(d.clone()))
                .into_iter()
                .collect()
        }
        TokenScope::Project(p) => {
            let proj = state
                .projects
                .get(p)
                .filter(|p| p.enabled)
                .ok_or_else(unauthorized)?;
            if !state
                .domains
                .get(&proj.domain_id)
                .is_some_and(|d| d.enabled)
            {
                return Err(unauthorized());
            }
            let held = state.effective_role_ids(&authn_user.id, &Scope::Project(p.clone()));
            match &payload.app_cred_id {
                None => held.into_iter().collect(),
                Some(acid) => {
                    let ac = state.app_creds.get(acid).ok_or_else(unauthorized)?;
                    if ac.user_id != authn_user.id || ac.expires_at.is_some_and(|e| e <= now) {
                        return Err(unauthorized());
                    }
                    state
                        .expand_implied(ac.role_ids.iter().cloned())
                        .into_iter()
                        .filter(|r| held.contains(r))
                        .collect()
                }
            }
        }
        TokenScope::Trust(tid) => {
            let t = state.trusts.get(tid).ok_or_else(unauthorized)?;
            if t.expires_at.is_some_and(|e| e <= now) || t.trustee_user_id != authn_user.id {
                return Err(unauthorized());
            }
            let trustor = enabled_user(&t.trustor_user_id).ok_or_else(unauthorized)?;
            let held = match &t.project_id {
                Some(p) => {
                    state
                        .projects
                        .get(p)
                        .filter(|p| p.enabled)
                        .ok_or_else(unauthorized)?;
                    state.held_role_ids(&trustor.id, &Scope::Project(p.clone()))
                }
                None => Default::default(),
            };
            // The trustor must still hold every delegated role.
            if !t.role_ids.iter().all(|r| held.contains(r)) {
                return Err(unauthorized());
            }
            trust_info = Some(TrustInfo {
                id: t.id.clone(),
                trustor_user_id: t.trustor_user_id.clone(),
                trustee_user_id: t.trustee_user_id.clone(),
                impersonation: t.impersonation,
            });
            if t.impersonation {
                shown_user = trustor;
            }
            // Delegated roles and what they imply, global ones only (as
            // Keystone's trust tokens).
            state
                .global_roles(state.expand_implied(t.role_ids.iter().cloned()))
                .into_iter()
                .collect()
        }
    };
    let scoped = !matches!(payload.scope, TokenScope::Unscoped);
    let mut roles: Vec<(String, String)> = role_ids
        .iter()
        .filter_map(|id| state.roles.get(id).map(|r| (r.name.clone(), r.id.clone())))
        .collect();
    roles.sort();
    if scoped && roles.is_empty() {
        return Err(IdentityError::Unauthorized(
            "User has no access to the requested scope.".into(),
        ));
    }
    let dom_name = |id: &str| {
        state
            .domains
            .get(id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    let project = project_scope.as_ref().and_then(|p| state.projects.get(p));
    Ok(AuthContext {
        user_id: shown_user.id.clone(),
        user_name: shown_user.name.clone(),
        user_domain_id: shown_user.domain_id.clone(),
        user_domain_name: dom_name(&shown_user.domain_id),
        project_id: project.map(|p| p.id.clone()),
        project_name: project.map(|p| p.name.clone()),
        project_domain_id: project.map(|p| p.domain_id.clone()),
        project_domain_name: project.map(|p| dom_name(&p.domain_id)),
        domain_id: domain_scope.clone(),
        domain_name: domain_scope.as_deref().map(dom_name),
        system_scope: payload.scope == TokenScope::System,
        is_admin_project: project
            .is_some_and(|p| p.name == "admin" && p.domain_id == DEFAULT_DOMAIN_ID),
        role_ids: roles.iter().map(|r| r.1.clone()).collect(),
        roles: roles.into_iter().map(|r| r.0).collect(),
        methods: token::method_names(payload.methods)
            .into_iter()
            .map(String::from)
            .collect(),
        issued_at: payload.issued_at,
        expires_at: payload.expires_at,
        audit_ids,
        trust: trust_info,
        app_cred_id: payload.app_cred_id.clone(),
        password_expires_at: shown_user.password_expires_at,
        payload,
    })
}

#[cfg(test)]
#[path = "service_cache_tests.rs"]
mod cache_tests;
