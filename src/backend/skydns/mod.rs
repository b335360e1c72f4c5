//! The SkyDNS layout under `/skydns` that CoreDNS's `etcd` plugin reads: keys are reversed names
//! ([`key`]), values are JSON ([`value`]), as CoreDNS's `plugin/etcd/msg`
//! (`path.go`, `service.go`) defines them; README.md ("Services in etcd") lists where srvd differs.

pub mod key;
pub mod value;

pub use value::decode;
