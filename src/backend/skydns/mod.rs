//! The SkyDNS layout under `/skydns` that CoreDNS's `etcd` plugin reads: keys are reversed names
//! ([`key`]), values are JSON ([`value`]), as CoreDNS's `plugin/etcd/msg`
//! (`path.go`, `service.go`) defines them; docs/coredns.md §1–§2 is the contract, §5 where srvd
//! differs.

pub mod key;
pub mod value;

pub use value::{decode, decode_owned};
