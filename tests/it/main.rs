//! srvd integration tests: a real server on loopback, real UDP and TCP sockets, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod answers;
mod binary;
mod browse;
mod client;
mod corefile;
mod encrypted;
mod etcd;
mod fuzz_corpus;
#[cfg(feature = "hickory")]
mod hickory;
mod hostile;
mod ops;
mod order;
mod protocol;
mod readme;
mod register;
mod registry_cli;
mod resolvers;
mod support;
mod tcp;
mod truncation;
