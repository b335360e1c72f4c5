//! Shared test helpers: an in-process srvd, the srvd binary, a real etcd (and a proxy that cuts
//! its connections), and a DNS client over real sockets.

pub mod dns;
pub mod etcd;
pub mod hostile;
pub mod http;
pub mod load;
pub mod proxy;
pub mod skydns;
pub mod srvd;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `tests/data/zones`: the fixture zones (example.test. and big.test.).
pub fn fixture_zones() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zones")
}

/// `zones/`: the shipped example zone.
pub fn shipped_zones() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("zones")
}

/// Polls `check` until it returns `Some`, for at most `limit`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
