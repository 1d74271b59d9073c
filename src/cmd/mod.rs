//! One module per area; each owns its subcommands' arguments and dispatch.
pub mod agent;
pub mod compute;
pub mod identity;
pub mod image;
pub mod serve;
pub mod switch;
