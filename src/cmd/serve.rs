//! `weft serve`: the all-in-one control plane.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weft_ctrl::server::{Server, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// State directory (SQLite, Fernet keys, admin-openrc). Default: /var/lib/weft for root,
    /// ~/.local/state/weft otherwise.
    #[arg(long, env = "WEFT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL clients reach this server by (catalog URLs); default http://LISTEN.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Token lifetime in minutes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=525_600))]
    pub token_ttl_minutes: u64,
    /// A YAML or JSON policy file overriding the default rules.
    #[arg(long)]
    pub policy_file: Option<PathBuf>,
    /// Allow every action but record the ones the policy would deny (see `weft policy workplan`).
    #[arg(long)]
    pub policy_permissive: bool,
    /// Tokens bound to one service (a build step's): `enforce` refuses them on
    /// any other API; `permissive` lets them through and records the refusal
    /// (see `weft policy workplan`).
    #[arg(long, value_enum, default_value = "enforce")]
    pub token_binding: TokenBindingArg,
    /// The database every service stores in: `postgresql://user@host/db` for several
    /// replicas serving one cloud, or a SQLite file path. Default: STATE_DIR/weft.sqlite.
    #[arg(long)]
    pub database: Option<String>,
    /// Placement's `noauth2` mode, for running Placement's own functional
    /// tests only: X-Auth-Token names the caller (`admin` is the admin), unchecked.
    #[arg(long)]
    pub placement_noauth2: bool,
    /// Also serve Placement alone at the root of this address (as a standalone
    /// placement-api on port 8778), besides /placement on --listen.
    #[arg(long)]
    pub placement_listen: Option<SocketAddr>,
    /// Send image downloads with writev from their mapped windows instead of
    /// sendfile(2): for measuring what sendfile saves, or a file system
    /// whose sendfile misbehaves.
    #[arg(long)]
    pub no_sendfile: bool,
    #[command(flatten)]
    pub net: super::agent::NetServeArgs,
    #[command(flatten)]
    pub compute: super::compute::ComputeServeArgs,
    #[command(flatten)]
    pub image: super::image::ImageServeArgs,
}

/// `--token-binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenBindingArg {
    /// Refuse a bound token on any service but its own.
    Enforce,
    /// Let it through and record the would-be refusal.
    Permissive,
}

/// `/var/lib/weft` for root, `~/.local/state/weft` for anyone else.
pub fn default_state_dir() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        PathBuf::from("/var/lib/weft")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/state/weft")
    }
}

pub fn server_config(a: &ServeArgs) -> ServerConfig {
    let mut cfg = ServerConfig::new(
        a.state_dir.clone().unwrap_or_else(default_state_dir),
        a.listen,
    );
    if let Some(u) = &a.public_url {
        cfg.public_url = u.trim_end_matches('/').to_string();
    }
    cfg.token_ttl = Duration::from_secs(a.token_ttl_minutes * 60);
    cfg.policy_file = a.policy_file.clone();
    cfg.policy_permissive = a.policy_permissive;
    cfg.token_binding = match a.token_binding {
        TokenBindingArg::Enforce => weft_identity::service::TokenBinding::Enforce,
        TokenBindingArg::Permissive => weft_identity::service::TokenBinding::Permissive,
    };
    cfg.database = a.database.clone();
    cfg.sendfile = !a.no_sendfile;
    cfg.admin_password = std::env::var("WEFT_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    cfg
}

pub fn run_serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = server_config(&a);
    std::fs::create_dir_all(&cfg.state_dir)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut server = Server::open(cfg)?;
    let (net, _agent) = super::agent::start_in_serve(&mut server, &a.net, &rt)?;
    let images = super::image::start_in_serve(&mut server, &a.image)?;
    let placement = mount_placement(&mut server, a.placement_noauth2)?;
    if let Some(addr) = a.placement_listen {
        let router = weft_compute::placement::router(placement.clone());
        rt.block_on(server.spawn_alone("placement", addr, router))?;
        println!("weft: serving placement alone on http://{addr}/");
    }
    let compute = weft_ctrl::compute::mount(
        &mut server,
        images.clone(),
        net.clone(),
        placement.clone(),
        rt.handle(),
    )
    .map_err(anyhow::Error::msg)?;
    // The same host name as the in-process datapath agent: the ports a build
    // binds to it are the ones this host's switch wires.
    let host = a.net.host.clone().unwrap_or_else(weft_agent::default_host);
    super::compute::start_in_serve(
        &a.compute,
        &host,
        &server.config().state_dir.clone(),
        &compute,
        &placement,
        weft_ctrl::compute_host::HostServices::new(
            images,
            net,
            server.identity(),
            compute
                .delegation()
                .ok_or_else(|| anyhow::anyhow!("compute: no delegation for builds"))?,
        ),
        rt.handle(),
    )?;
    let rep = server.start_report();
    if let Some(pw) = &rep.generated_password {
        // Printed once, on the first start; it is also in admin-openrc (mode 0600).
        println!("weft: bootstrapped; admin password: {pw}");
    }
    if let Some(p) = &rep.openrc {
        println!(
            "weft: credentials in {} (source it, then: openstack token issue)",
            p.display()
        );
    }
    println!(
        "weft: serving {}/identity/v3 on {}",
        server.config().public_url,
        server.config().listen
    );
    rt.block_on(server.run())?;
    Ok(())
}

/// Placement under `/placement` (catalog type `placement`), on the shared
/// store and the server's policy settings.
fn mount_placement(
    server: &mut Server,
    noauth2: bool,
) -> anyhow::Result<std::sync::Arc<weft_compute::placement::Placement>> {
    use weft_compute::placement;
    let sc = server.config().clone();
    let pl = if noauth2 {
        tracing::warn!(
            "placement: --placement-noauth2 is on: X-Auth-Token values are taken as user names \
             unchecked (`admin` is the admin); for test deployments only"
        );
        eprintln!("weft: WARNING: placement noauth2 mode: anyone can act as admin on /placement");
        placement::Placement::open_noauth2(server.store(), Some(&sc.state_dir))
    } else {
        let mode = if sc.policy_permissive {
            weft_identity::policy::Mode::Permissive
        } else {
            weft_identity::policy::Mode::Enforce
        };
        placement::Placement::open(
            server.store(),
            Some(&sc.state_dir),
            sc.policy_file.as_deref(),
            mode,
            Some(server.identity() as std::sync::Arc<dyn placement::Authenticator>),
        )
    }
    .map_err(anyhow::Error::msg)?;
    server.mount(weft_ctrl::server::ServiceMount::new(
        placement::MOUNT,
        "placement",
        "placement",
        placement::router(pl.clone()),
    ))?;
    server.follow(pl.replica());
    Ok(pl)
}
