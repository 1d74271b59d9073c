//! `weft switch`, `weft ctl`, `weft trace`: the standalone datapath.

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SwitchArgs {
    /// Switch config (TOML): physnets, networks, ports.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Args)]
pub struct CtlArgs {
    /// Subcommand and its arguments (ports, macs, reload, counters).
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct TraceArgs {
    /// Frame description.
    pub args: Vec<String>,
}

pub fn run_switch(_a: SwitchArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft switch: the datapath is not built yet")
}
pub fn run_ctl(_a: CtlArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft ctl: the datapath is not built yet")
}
pub fn run_trace(_a: TraceArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft trace: the datapath is not built yet")
}
