//! The datapath agent: keeps a host's switch in line with ctrl.
//!
//! ```text
//!   ctrl ──(host state since rev R: long-poll / in-process)──► Agent
//!                                                               │ plan(): pure
//!                                                               ▼
//!            ◄──(port status ACTIVE/DOWN)──────────  switch.apply(config TOML)
//! ```
//!
//! After a restart the agent starts from revision 0 and applies the whole
//! state; the switch's live diff leaves ports whose config did not change alone.

pub mod client;
pub mod run;
pub mod translate;

pub use client::{AgentAuth, AgentError, Ctrl, HttpCtrl, LocalCtrl};
pub use run::{Agent, Datapath};
pub use translate::{plan, Plan};
