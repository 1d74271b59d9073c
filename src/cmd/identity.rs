//! `weft bootstrap`, `weft identity rotate-keys`, `weft policy workplan`.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use weft_identity::{policy, Identity, IdentityConfig};

#[derive(Args)]
pub struct BootstrapArgs {
    /// State directory (as for weft serve).
    #[arg(long, env = "WEFT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Base URL for the identity catalog entry and admin-openrc.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Admin password (else WEFT_ADMIN_PASSWORD, else generated and printed once).
    #[arg(long, env = "WEFT_ADMIN_PASSWORD", hide_env_values = true)]
    pub bootstrap_password: Option<String>,
    /// The database (as for weft serve --database); default STATE_DIR/weft.sqlite.
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Args)]
pub struct IdentityArgs {
    #[command(subcommand)]
    pub command: IdentityCommand,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Promote the staged Fernet key to primary and stage a new one; tokens made
    /// with the kept keys stay valid. The keys live in the store: replicas on
    /// a PostgreSQL database follow at once; a weft serve on SQLite at its
    /// next write or restart.
    RotateKeys {
        #[arg(long, env = "WEFT_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// The database (as for weft serve --database); default STATE_DIR/weft.sqlite.
        #[arg(long)]
        database: Option<String>,
        /// Keys kept: staged + primary + secondaries (as Keystone's max_active_keys).
        #[arg(long, default_value_t = 3)]
        max_active_keys: usize,
    },
}

#[derive(Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// From the denials recorded in permissive mode, the role assignments (and
    /// trusts) each user or workflow needs.
    Workplan {
        #[arg(long, env = "WEFT_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// A records file instead of STATE_DIR/policy-denials.jsonl.
        #[arg(long)]
        records: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn state_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(super::serve::default_state_dir)
}

fn open_identity(
    dir: &std::path::Path,
    database: Option<&str>,
    public_url: &str,
) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(dir)?;
    let store = weft_store::open(database, dir)?;
    Ok(Identity::open(
        IdentityConfig::new(dir, public_url.trim_end_matches('/')),
        store,
    )?)
}

pub fn run_bootstrap(a: BootstrapArgs) -> anyhow::Result<()> {
    let dir = state_dir(a.state_dir);
    let id = open_identity(&dir, a.database.as_deref(), &a.public_url)?;
    let rep = id.bootstrap(a.bootstrap_password.as_deref().filter(|p| !p.is_empty()))?;
    id.register_service("identity", "keystone", &id.v3_url())?;
    if rep.already_bootstrapped {
        println!(
            "weft bootstrap: already done (admin user {}); nothing changed",
            rep.admin_user_id
        );
    } else {
        println!(
            "weft bootstrap: admin user {} on project {}",
            rep.admin_user_id, rep.admin_project_id
        );
    }
    let pw = rep
        .generated_password
        .clone()
        .or(a.bootstrap_password.filter(|p| !p.is_empty()));
    if let Some(g) = &rep.generated_password {
        println!("weft bootstrap: admin password (shown once): {g}");
    }
    if let Some(pw) = pw {
        let path = dir.join("admin-openrc");
        weft_ctrl::server::write_openrc(&path, &id.v3_url(), &pw)?;
        println!("weft bootstrap: wrote {}", path.display());
    }
    Ok(())
}

pub fn run_identity(a: IdentityArgs) -> anyhow::Result<()> {
    match a.command {
        IdentityCommand::RotateKeys {
            state_dir: d,
            database,
            max_active_keys,
        } => {
            let dir = state_dir(d);
            let id = open_identity(&dir, database.as_deref(), "http://127.0.0.1:8080")?;
            let keys = id.rotate_keys(max_active_keys)?;
            println!(
                "weft identity rotate-keys: the store now holds keys {:?} (primary {}, staged 0)",
                keys,
                keys.last().copied().unwrap_or(0)
            );
            Ok(())
        }
    }
}

pub fn run_policy(a: PolicyArgs) -> anyhow::Result<()> {
    match a.command {
        PolicyCommand::Workplan {
            state_dir: d,
            records,
            json,
        } => {
            let path = records.unwrap_or_else(|| policy::records_path(&state_dir(d)));
            let recs = policy::read_records(&path)?;
            let plan = policy::workplan(&recs);
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{plan}");
            }
            Ok(())
        }
    }
}
