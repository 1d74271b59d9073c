//! `weft`: the command line. Parsing and dispatch only; every subcommand's
//! work lives in a library crate, reached through one module per area in
//! `src/cmd/`.

mod cmd;

/// The API server builds and drops many small JSON values per request, and
/// glibc's malloc showed as a quarter of `GET /auth/tokens` in perf; mimalloc's
/// thread-local free lists make those allocations cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: a userspace SDN and a small OpenStack-compatible control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the datapath on its own from a config file (replaces br-int + br-phys).
    Switch(cmd::switch::SwitchArgs),
    /// Talk to a running switch over its control socket (ports, macs, reload, counters).
    Ctl(cmd::switch::CtlArgs),
    /// Ask a running switch what a frame would do, stage by stage (like ofproto/trace).
    Trace(cmd::switch::TraceArgs),
    /// Run everything on one host: API server, identity, networking, in-process agent.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run the datapath agent of a compute host that joins a controller.
    Agent(cmd::agent::AgentArgs),
    /// Create the default domain, admin project/user, roles and catalog.
    Bootstrap(cmd::identity::BootstrapArgs),
    /// Identity maintenance (Fernet key rotation).
    Identity(cmd::identity::IdentityArgs),
    /// Policy tools (the permissive-mode workplan).
    Policy(cmd::identity::PolicyArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Switch(a) => cmd::switch::run_switch(a),
        Command::Ctl(a) => cmd::switch::run_ctl(a),
        Command::Trace(a) => cmd::switch::run_trace(a),
        Command::Serve(a) => cmd::serve::run_serve(*a),
        Command::Agent(a) => cmd::agent::run_agent(a),
        Command::Bootstrap(a) => cmd::identity::run_bootstrap(a),
        Command::Identity(a) => cmd::identity::run_identity(a),
        Command::Policy(a) => cmd::identity::run_policy(a),
    }
}
