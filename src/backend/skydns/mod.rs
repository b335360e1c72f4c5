//! The SkyDNS layout under `/skydns` that CoreDNS's `etcd` plugin reads: keys are reversed names
//! ([`key`]), values are JSON ([`value`]). `../shared/coredns-etcd.md` §1–§2 is the contract.

pub mod key;
pub mod value;

pub use value::decode;
