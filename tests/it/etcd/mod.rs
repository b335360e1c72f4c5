//! srvd against a real etcd: CoreDNS-compatible answers and the mirror's sync guarantees.

mod catch_up;
mod cluster;
mod huge;
mod large;
mod leases;
mod proxy;
mod registry;
mod registry_answers;
mod replicas;
mod restarts;
mod scenarios;
mod secure;
mod sync;
