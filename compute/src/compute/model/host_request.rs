//! A question the API puts to a remote compute host and waits for (console
//! output, os-interface attach/detach: synchronous calls in Nova): stored,
//! so that whichever ctrl replica the host's agent polls hands it out and
//! takes the answer, and the replica holding the API request reads it from
//! its state. Removed by the asker once answered (or given up on).

use serde::{Deserialize, Serialize};

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ask {
    /// `os-getConsoleOutput`: the last `lines` lines (all with None).
    Console {
        /// Lines wanted.
        lines: Option<usize>,
    },
    /// os-interface attach: a port given, or made on a network.
    Attach {
        /// The port to take.
        port_id: Option<String>,
        /// Or the network to make one on,
        net_id: Option<String>,
        /// with this address.
        fixed_ip: Option<String>,
    },
    /// os-interface detach of a port (its NIC of MAC `mac`).
    Detach {
        /// The port.
        port_id: String,
        /// Its MAC.
        mac: String,
    },
}

/// The host's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// The console's output.
    Console {
        /// The text.
        output: String,
    },
    /// The NIC of `port_id` is plugged (`created`: the port was made for it).
    Attached {
        /// The port.
        port_id: String,
        /// Made for this attach.
        created: bool,
    },
    /// The NIC is unplugged and the port let go.
    Detached,
    /// It could not be done.
    Failed {
        /// Why.
        message: String,
    },
}

/// One stored question to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRequest {
    /// Its id (a UUID).
    pub id: String,
    /// The server it is about.
    pub server_id: String,
    /// The host asked.
    pub host: String,
    /// When asked (RFC 3339): the asker gives up after a while.
    pub created: String,
    /// The question.
    pub ask: Ask,
    /// The answer, once the host gave it.
    pub answer: Option<Answer>,
}
