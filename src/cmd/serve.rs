//! `weft serve`: the all-in-one control plane.

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {}

pub fn run_serve(_a: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft serve: the API server is not built yet")
}
