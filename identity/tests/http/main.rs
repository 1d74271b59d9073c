//! HTTP tests of the identity API: the real router, a real SQLite file.

mod common;

mod catalog;
mod delegation;
mod errors;
mod resources;
mod roles;
mod tokens;
