//! Operations: start-up without etcd, health, readiness, metrics and the query log.

pub(crate) mod endpoints;
mod querylog;
mod startup;
