//! `weft serve` and `weft agent`: the control plane and the host agent.

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {}

#[derive(Args)]
pub struct AgentArgs {}

pub fn run_serve(_a: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft serve: the API server is not built yet")
}
pub fn run_agent(_a: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft agent: the agent is not built yet")
}
