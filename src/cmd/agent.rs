//! `weft agent`: the datapath agent of a compute host that joins a controller.

use clap::Args;

#[derive(Args)]
pub struct AgentArgs {}

pub fn run_agent(_a: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft agent: the agent is not built yet")
}
