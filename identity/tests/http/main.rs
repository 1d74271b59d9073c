//! Tests of the identity service through its HTTP API (the real router on a
//! real store: SQLite, or PostgreSQL with WEFT_TEST_STORE=postgresql), and of
//! replicas sharing one PostgreSQL database.

mod common;

mod audience;
mod catalog;
mod delegation;
mod errors;
mod legacy;
mod replicas;
mod resources;
mod roles;
mod tokens;
