//! Shared test helpers: an in-process srvd, the srvd binary, and a DNS client over real sockets.

pub mod dns;
pub mod srvd;

use std::path::PathBuf;

/// `tests/data/zones`: the fixture zones (example.test. and big.test.).
pub fn fixture_zones() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zones")
}

/// `zones/`: the shipped example zone.
pub fn shipped_zones() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("zones")
}
