//! The identity service: state snapshots, writes, authentication and token
//! validation. HTTP lives in `api`; this module knows nothing of it.

mod bootstrap;
mod delegation;
mod issue;
mod validate;

use crate::error::IdentityError;
use crate::model::*;
use crate::policy::{self, Credentials, Enforcer, Mode};
use crate::state::{State, Tx, SERVICE};
use crate::token::{self, Payload};
use axum::body::Bytes;
use dashmap::DashMap;
pub use delegation::{BuildTrust, ServiceUser, STEP_TOKEN_TTL};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use validate::context_from_payload;
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
    /// Whether a token bound to one service ([`crate::token::Audience`]) is
    /// refused elsewhere, or let through with the refusal recorded.
    pub token_binding: TokenBinding,
}

/// What happens to a token used on a service other than its audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenBinding {
    /// Refused (401).
    #[default]
    Enforce,
    /// Let through; the would-be refusal is recorded with the policy's
    /// permissive-mode records, so `weft policy workplan` lists it.
    Permissive,
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
            token_binding: TokenBinding::Enforce,
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
    /// The one service the token may be used on (a build step's token).
    pub audience: Option<token::Audience>,
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
    /// Where permissive token binding records what it let through.
    binding_records: Option<policy::Recorder>,
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

pub use crate::model::new_id;

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
        let binding_records = (cfg.token_binding == TokenBinding::Permissive)
            .then(|| policy::Recorder::new(Some(policy::records_path(&cfg.state_dir))));
        Ok(Identity {
            binding_records,
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

#[cfg(test)]
mod cache_tests;
