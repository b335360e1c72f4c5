//! `Config`: what `srvd serve` runs with, typed and validated, with defaults applied.
//!
//! It is built from the command line today (and from a Corefile later) and is the only
//! configuration type other modules see. Building it opens no socket and reads no zone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::server::TcpLimits;

/// The default listen address: loopback, and not 5353, which avahi owns (FIELD-NOTES §3.3).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1053";
/// The zones directory used when none is given.
pub const DEFAULT_ZONES_DIR: &str = "zones";

/// Where zone files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSource {
    /// `--zones-dir` given: it must exist and hold zone files.
    Dir(PathBuf),
    /// Nothing given: `zones/` if it exists, else the example zone compiled into the binary.
    DefaultDirOrEmbedded,
}

/// Validated configuration for `srvd serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to serve UDP and TCP on.
    pub listen: Vec<SocketAddr>,
    /// Where zone files come from.
    pub zones: ZoneSource,
    /// Limits on TCP clients.
    pub tcp: TcpLimits,
    /// How long shutdown waits for in-flight TCP answers.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![
                DEFAULT_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1053))),
            ],
            zones: ZoneSource::DefaultDirOrEmbedded,
            tcp: TcpLimits::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
