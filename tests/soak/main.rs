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

mod hostile;
mod large;
mod replicas;
mod storm;
