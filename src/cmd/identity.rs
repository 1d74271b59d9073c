//! `weft bootstrap`, `weft identity ...`, `weft policy ...`.

use clap::Args;

#[derive(Args)]
pub struct BootstrapArgs {}

#[derive(Args)]
pub struct IdentityArgs {}

#[derive(Args)]
pub struct PolicyArgs {}

pub fn run_bootstrap(_a: BootstrapArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft bootstrap: identity is not built yet")
}
pub fn run_identity(_a: IdentityArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft identity: identity is not built yet")
}
pub fn run_policy(_a: PolicyArgs) -> anyhow::Result<()> {
    anyhow::bail!("weft policy: identity is not built yet")
}
