//! srvd: an authoritative DNS-SD server that answers SRV, TXT, A and AAAA from an in-memory
//! snapshot, with SRV records in RFC 2782 order.
//!
//! ```text
//! zones/*.zone ─► zonefile ─► index (immutable snapshot, published through IndexHandle)
//!                                       │
//! UDP/TCP ─► server (decode, zone match, EDNS, truncation) ─► answer(zone, question) ◄─┘
//!                                          dnssd::srv_order (shared with the client library)
//! config + cli wire it; daemon runs it.
//! ```
//!
//! Modules: [`dnssd`] (RFC 2782 order, shared); with the `client` feature `client` (service
//! resolution for programs); with the `server` feature `zonefile`, `backend`, `index`, `sync`,
//! `answer`, `server`, `config`, `daemon`, `register` (the `srvd register` sidecar); `cli` with both; with the `hickory` feature `hickory`
//! (srvd's zones as hickory-server `ZoneHandler`s). See ARCHITECTURE.md.

pub mod dnssd;

#[cfg(feature = "server")]
pub mod answer;
#[cfg(feature = "server")]
pub mod backend;
#[cfg(all(feature = "server", feature = "client"))]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod daemon;
#[cfg(feature = "hickory")]
pub mod hickory;
#[cfg(feature = "server")]
pub mod index;
#[cfg(feature = "server")]
pub mod ops;
#[cfg(feature = "server")]
pub mod register;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod sync;
#[cfg(feature = "server")]
pub mod zonefile;
