//! srvd against a real etcd: CoreDNS-compatible answers and the mirror's sync guarantees.

mod large;
mod scenarios;
mod sync;
