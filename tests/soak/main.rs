//! srvd's soak runs: the reliability cases too heavy for the normal suite (write storms, a
//! million keys, thousands of connections, replicas through etcd's gRPC proxy). Each prints its
//! figures on lines starting `figure:` and asserts what srvd promises (nothing lost, nothing
//! wrong, bounded memory); none asserts a speed. Run them with `scripts/soak`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

/// The integration tests' helpers (real etcd, the srvd binary, DNS over real sockets); each
/// soak run uses some of them.
#[allow(dead_code)]
#[path = "../it/support/mod.rs"]
mod support;

/// A soak knob: the environment variable `name` parsed as `T`, or `default` when it is unset
/// (or not a `T`). Each case's file lists its knobs.
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

mod hostile;
mod large;
mod replicas;
mod storm;
