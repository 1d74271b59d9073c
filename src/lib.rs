//! The `weft` package's library half: the glue between crates that the binary
//! and the root tests and benches share. Today: the in-process agent protocol.
#![forbid(unsafe_code)]

pub mod in_process;
