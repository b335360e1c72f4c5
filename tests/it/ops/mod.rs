//! Operations: start-up without etcd, health, readiness, metrics and the query log.

mod endpoints;
mod querylog;
mod startup;
