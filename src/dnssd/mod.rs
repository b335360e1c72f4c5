//! DNS-SD knowledge shared by the server and the client: RFC 2782 ordering today, RFC 6763 names later.
//!
//! Nothing here does I/O or depends on the `server` or `client` features, so both sides use the very
//! same code and the same property tests cover both.

pub mod srv_order;
