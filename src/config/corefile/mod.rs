//! `--conf Corefile`: CoreDNS's configuration file, read the way CoreDNS reads it, into the same
//! [`Config`](super::Config) the flags build.
//!
//! `lexer` makes words, `blocks` server blocks and directives (snippets, imports), `zones` turns
//! server block keys and zone arguments into zones and ports (CIDRs into reverse zones, split
//! as CoreDNS splits them), and this module gives each directive its meaning, with CoreDNS's
//! syntax, defaults and error texts where CoreDNS has them (`plugin/etcd/setup.go`: "unknown
//! property 'endpoints'", "credentials requires 2 arguments, username and password").
//!
//! Blocks on one port share its listener and route by zone; blocks on different ports may serve
//! different zones (each address then answers only its port's, REFUSED for the others), as
//! CoreDNS does. srvd mirrors one etcd prefix: two differently configured `etcd` backends are
//! refused with a "not supported yet" error rather than served differently.

pub mod blocks;
pub mod lexer;
#[cfg(test)]
mod tls_tests;
pub mod zones;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;

use self::blocks::{Directive, Disk, Files, Parser, ServerBlock};
use self::lexer::Token;
use super::{EtcdConfig, LogRule, LogServer, QueryLog, duration};
use crate::index::leases::LeaseBounds;
use crate::ops::querylog::{LogFormat, ResponseClass};
use crate::server::tls::Encrypted;

/// An error in a Corefile: where, in which directive, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", directive.as_ref().map(|d| format!("{d}: ")).unwrap_or_default())]
pub struct CorefileError {
    /// The file (the Corefile or an imported one).
    pub file: String,
    /// The line.
    pub line: usize,
    /// The directive it is about, if any.
    pub directive: Option<String>,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl CorefileError {
    /// An error at `line` of `file`.
    pub fn at(file: &Arc<str>, line: usize, message: &str) -> Self {
        Self {
            file: file.to_string(),
            line,
            directive: None,
            message: message.to_string(),
        }
    }

    /// An error about `directive`, at `token`.
    pub fn in_directive(token: &Token, directive: &str, message: &str) -> Self {
        Self {
            file: token.file.to_string(),
            line: token.line,
            directive: Some(directive.to_string()),
            message: message.to_string(),
        }
    }
}

/// A zone file for one zone (`file DBFILE [ZONES...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileSpec {
    /// The file.
    pub path: PathBuf,
    /// The zone it holds.
    pub origin: Name,
}

/// What a Corefile configures.
#[derive(Debug, Clone)]
pub struct Corefile {
    /// The DNS addresses (each block's ports on its `bind` addresses, or `[::]`: every interface).
    pub listen: Vec<SocketAddr>,
    /// When ports serve different zones: each address with the zones it serves.
    pub zones_by_listen: Vec<(SocketAddr, Vec<Name>)>,
    /// Zone files, one per zone.
    pub files: Vec<ZoneFileSpec>,
    /// The etcd backend, if a block has `etcd`.
    pub etcd: Option<EtcdConfig>,
    /// `health [ADDR] { lameduck D }`.
    pub health: Option<(SocketAddr, Duration)>,
    /// `ready [ADDR]`.
    pub ready: Option<SocketAddr>,
    /// `prometheus [ADDR]`.
    pub metrics: Option<SocketAddr>,
    /// `log [NAMES...] [FORMAT] { class CLASSES... }`: `None` when no block has `log`.
    pub log_queries: Option<QueryLog>,
    /// `errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`.
    pub log_errors: bool,
    /// `reload [INTERVAL [JITTER]]`.
    pub reload: Option<(Duration, Duration)>,
    /// Things to log once at start (directives accepted that change nothing, and why).
    pub notes: Vec<String>,
    /// `tls://` and `https://` blocks: each port on each `bind` address, with the block's
    /// certificate and zones.
    pub encrypted: Vec<super::EncryptedListen>,
}

impl Corefile {
    /// The `srvd serve` configuration: the Corefile's addresses, zone files, etcd backend and
    /// endpoints; no zones directory (a Corefile names each zone file with `file`).
    pub fn into_config(self) -> super::Config {
        super::Config {
            listen: self.listen,
            zones: super::ZoneSource::None,
            zone_files: self.files,
            zones_by_listen: self.zones_by_listen,
            etcd: self.etcd,
            health: self
                .health
                .map(|(addr, lameduck)| super::HealthConfig { addr, lameduck }),
            ready: self.ready,
            metrics: self.metrics,
            log_queries: self.log_queries,
            log_errors: self.log_errors,
            encrypted: self.encrypted,
            ..super::Config::default()
        }
    }
}

/// CoreDNS's bound on a `consolidate` pattern's length.
const MAX_REGEXP_LEN: usize = 10_000;
/// The compiled size a `consolidate` pattern may reach (bounded memory for any input).
const REGEXP_SIZE_LIMIT: usize = 1 << 20;

/// The names in `interfaces`, for an error message.
fn interface_names(interfaces: &[if_addrs::Interface]) -> String {
    let mut names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "none found".into()
    } else {
        names.join(", ")
    }
}

/// CoreDNS's DNS port when a key has none.
const DEFAULT_PORT: u16 = 53;
/// CoreDNS's `etcd` endpoint when none is given.
const DEFAULT_ENDPOINT: &str = "http://localhost:2379";

/// CoreDNS plugins srvd deliberately does not have, and why.
const NOT_IN_SRVD: &[(&str, &str)] = &[
    (
        "forward",
        "srvd never recurses; keep a resolver in front for other names",
    ),
    (
        "proxy",
        "srvd never recurses; keep a resolver in front for other names",
    ),
    (
        "loadbalance",
        "srvd already draws SRV records in RFC 2782 order for every response",
    ),
    (
        "dnssec",
        "srvd does not sign; its answers change with every etcd write",
    ),
    (
        "sign",
        "srvd does not sign; its answers change with every etcd write",
    ),
    (
        "kubernetes",
        "srvd serves etcd and zone files, not the Kubernetes API",
    ),
    (
        "k8s_external",
        "srvd serves etcd and zone files, not the Kubernetes API",
    ),
    ("hosts", "put the names in a zone file (`file`) or in etcd"),
    ("auto", "name each zone file with `file`"),
    ("secondary", "srvd does not transfer zones"),
    ("transfer", "srvd does not transfer zones"),
];

/// Other CoreDNS plugins (not in srvd either): named so the error says it is CoreDNS's.
const OTHER_COREDNS_PLUGINS: &[&str] = &[
    "acl",
    "any",
    "azure",
    "bufsize",
    "cancel",
    "chaos",
    "clouddns",
    "debug",
    "dns64",
    "erratic",
    "geoip",
    "grpc",
    "grpc_server",
    "header",
    "local",
    "loop",
    "metadata",
    "minimal",
    "multisocket",
    "nomad",
    "nsid",
    "pprof",
    "rewrite",
    "route53",
    "template",
    "timeouts",
    "tls",
    "trace",
    "tsig",
    "view",
    "whoami",
];

/// Reads the Corefile at `path` (and what it imports) from disk, with the process environment.
///
/// # Errors
/// Every error found (structural errors stop at the first).
pub fn load(path: &Path) -> Result<Corefile, Vec<CorefileError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![CorefileError {
            file: path.display().to_string(),
            line: 0,
            directive: None,
            message: format!("cannot read the Corefile: {e}"),
        }]
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, path, &Disk, &env)
}

/// Reads `text` (the Corefile at `path`), importing through `files`.
///
/// # Errors
/// Every directive error found, in order; structural errors stop at the first.
pub fn parse(
    text: &str,
    path: &Path,
    files: &dyn Files,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Corefile, Vec<CorefileError>> {
    let blocks = Parser::new(files, env)
        .parse(text, path)
        .map_err(|e| vec![e])?;
    let mut reader = Reader::default();
    for block in &blocks {
        reader.block(block);
    }
    reader.finish()
}

/// One `etcd` directive, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EtcdSettings {
    path: String,
    endpoints: Vec<String>,
    bounds: (u32, u32),
    security: super::EtcdSecurity,
}

/// Collects settings across blocks, and errors.
#[derive(Default)]
struct Reader {
    errors: Vec<CorefileError>,
    listen: Vec<SocketAddr>,
    /// Per port, the zones its blocks' backends serve (etcd, file, registry).
    zones_by_port: Vec<(u16, BTreeSet<Name>)>,
    /// The zones the current block's backends declared.
    declared: Vec<Name>,
    files: Vec<ZoneFileSpec>,
    etcd: Option<(EtcdSettings, Token)>,
    etcd_zones: Vec<Name>,
    registry: Vec<(String, Option<Name>, Option<u32>, Token)>,
    health: Option<(SocketAddr, Duration)>,
    ready: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    /// Per block, its zones and `log` rules (every block, so a query meets its own block's).
    log_servers: Vec<LogServer>,
    log_errors: bool,
    reload: Option<(Duration, Duration)>,
    notes: Vec<String>,
    encrypted: Vec<super::EncryptedListen>,
}

/// CoreDNS's default port of a transport.
fn default_port(transport: Option<Encrypted>) -> u16 {
    match transport {
        None => DEFAULT_PORT,
        Some(Encrypted::Tls) => 853,
        Some(Encrypted::Https) => 443,
    }
}

fn error(token: &Token, directive: &str, message: impl Into<String>) -> CorefileError {
    CorefileError::in_directive(token, directive, &message.into())
}

/// An `ADDR` argument of `health`, `ready`, `prometheus`: `:8080`, `localhost:9153`, `IP:PORT`.
fn http_addr(text: &str) -> Result<SocketAddr, String> {
    let expected =
        || format!("{text:?}: expected an address such as :8080, localhost:8080 or 127.0.0.1:8080");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    let ip = match host.trim_start_matches('[').trim_end_matches(']') {
        // Every interface, IPv6 and IPv4, as Go's `:8080` means.
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other.parse().map_err(|_| expected())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// CoreDNS's `parseTTL` for the `etcd` property `property`: seconds, or a Go duration; never
/// negative.
fn lease_ttl(token: &Token, property: &str) -> Result<u32, CorefileError> {
    duration::parse(&token.text)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .map_err(|e| error(token, "etcd", format!("invalid {property} value: {e}")))
}

impl Reader {
    fn fail(&mut self, e: CorefileError) {
        self.errors.push(e);
    }

    fn block(&mut self, block: &ServerBlock) {
        if block.keys.is_empty() {
            return;
        }
        let mut zones = Vec::new();
        let mut ports = BTreeSet::new();
        let transport = zones::transport(&block.keys[0].text);
        for key in &block.keys {
            if zones::transport(&key.text) != transport {
                self.fail(CorefileError::at(
                    &key.file,
                    key.line,
                    &format!(
                        "{:?}: every key of a server block must use the same transport as {:?}",
                        key.text, block.keys[0].text
                    ),
                ));
            }
            match zones::key(&key.text) {
                Ok((names, port)) => {
                    zones.extend(names);
                    ports.insert(port.unwrap_or(default_port(transport)));
                }
                Err(e) => self.fail(CorefileError::at(&key.file, key.line, &e)),
            }
        }
        let root = block
            .directives
            .iter()
            .rev()
            .filter(|d| d.name.is("root"))
            .find_map(|d| d.args.first())
            .map(|a| PathBuf::from(&a.text));
        let mut binds: Vec<SocketAddr> = Vec::new();
        let mut bound: Option<&Token> = None;
        let mut log_rules = Vec::new();
        let mut errors_seen = false;
        let mut certificate = None;
        let mut tls_seen = false;
        let errors_before = self.errors.len();
        self.declared.clear();
        for directive in &block.directives {
            if directive.name.is("bind") {
                bound = bound.or(Some(&directive.name));
                for addr in self.bind(directive) {
                    if !binds.contains(&addr) {
                        binds.push(addr);
                    }
                }
            } else if directive.name.is("log") {
                log_rules.extend(self.log(directive));
            } else if directive.name.is("tls") {
                tls_seen = true;
                certificate = self
                    .tls(directive, transport, root.as_deref())
                    .or(certificate);
            } else if directive.name.is("errors") {
                if errors_seen {
                    // CoreDNS's plugin.ErrOnce.
                    self.fail(error(
                        &directive.name,
                        "errors",
                        "this plugin can only be used once per Server Block",
                    ));
                }
                errors_seen = true;
                self.errors_directive(directive);
            } else {
                self.directive(directive, &zones, root.as_deref());
            }
        }
        self.log_servers.push(LogServer {
            zones: zones.clone(),
            rules: log_rules,
        });
        match bound {
            // CoreDNS listens on every interface without `bind`: IPv6 and IPv4 (dual-stack).
            None => binds.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)),
            // Addresses that were given but all excepted (a bad address is reported already).
            Some(first) if binds.is_empty() && errors_before == self.errors.len() => {
                self.fail(error(
                    first,
                    "bind",
                    "no address is left once `except` removes its addresses (expected at least one to listen on)",
                ));
            }
            Some(_) => {}
        }
        if let Some(transport) = transport {
            let Some((cert, key)) = certificate else {
                if tls_seen {
                    // Its `tls` line is wrong, and said so.
                    return;
                }
                let first = &block.keys[0];
                self.fail(CorefileError::at(
                    &first.file,
                    first.line,
                    &format!(
                        "{:?}: a {}:// server block needs a certificate (expected tls CERT KEY [CA] in the block)",
                        first.text,
                        transport.scheme()
                    ),
                ));
                return;
            };
            for port in &ports {
                for bind in &binds {
                    let mut addr = *bind;
                    addr.set_port(*port);
                    self.encrypted.push(super::EncryptedListen {
                        transport,
                        addr,
                        cert: cert.clone(),
                        key: key.clone(),
                        zones: Some(self.declared.clone()),
                    });
                }
            }
            return;
        }
        for port in &ports {
            for bind in &binds {
                let mut addr = *bind;
                addr.set_port(*port);
                if !self.listen.contains(&addr) {
                    self.listen.push(addr);
                }
            }
            let declared = self.declared.iter().cloned();
            match self.zones_by_port.iter_mut().find(|(p, _)| p == port) {
                Some((_, set)) => set.extend(declared),
                None => self.zones_by_port.push((*port, declared.collect())),
            }
        }
    }

    /// `tls CERT KEY [CA] { client_auth nocert }`, as CoreDNS's `tls` plugin, in a `tls://` or
    /// `https://` block: the certificate and key (relative to `root`, as CoreDNS reads them).
    /// The CA only matters to client authentication, which CoreDNS leaves off by default
    /// (`client_auth nocert`) and srvd does not offer: any other `client_auth` is an error.
    fn tls(
        &mut self,
        d: &Directive,
        transport: Option<Encrypted>,
        root: Option<&Path>,
    ) -> Option<(PathBuf, PathBuf)> {
        if transport.is_none() {
            self.fail(error(
                &d.name,
                "tls",
                "a certificate belongs in a tls:// or https:// server block; this block serves plain DNS (dns://)",
            ));
            return None;
        }
        for sub in &d.block {
            match (sub.name.text.as_str(), sub.args.as_slice()) {
                ("client_auth", [policy]) if policy.text == "nocert" => {}
                ("client_auth", _) => self.fail(error(
                    &sub.name,
                    "tls",
                    "srvd does not authenticate DNS clients by certificate (expected client_auth nocert)",
                )),
                (other, _) => self.fail(error(
                    &sub.name,
                    "tls",
                    format!("unknown property '{other}' (expected client_auth nocert)"),
                )),
            }
        }
        let [cert, key, ..] = d.args.as_slice() else {
            self.fail(error(&d.name, "tls", "expected CERT KEY [CA]"));
            return None;
        };
        if d.args.len() > 3 {
            self.fail(error(&d.args[3], "tls", "expected CERT KEY [CA]"));
            return None;
        }
        let resolve = |text: &str| {
            let path = PathBuf::from(text);
            match root {
                Some(root) if path.is_relative() => root.join(path),
                _ => path,
            }
        };
        Some((resolve(&cert.text), resolve(&key.text)))
    }

    /// `bind ADDRESS|IFACE... { except ADDRESS|IFACE... }`, as CoreDNS's `bind`: a name of a
    /// network interface stands for every address it has now (a link-local IPv6 one with the
    /// interface as its scope); names are looked up before addresses, as CoreDNS does.
    fn bind(&mut self, directive: &Directive) -> Vec<SocketAddr> {
        if directive.args.is_empty() {
            self.fail(error(
                &directive.name,
                "bind",
                "at least one address or interface name is expected",
            ));
            return Vec::new();
        }
        let interfaces = match if_addrs::get_if_addrs() {
            Ok(list) => list,
            Err(e) => {
                // CoreDNS warns and goes on with addresses only; so does srvd, failing only
                // when a name needs the list.
                self.notes.push(format!(
                    "{}:{}: bind: cannot list the network interfaces ({e}); interface names will not be found",
                    directive.name.file, directive.name.line
                ));
                Vec::new()
            }
        };
        let mut except = Vec::new();
        for sub in &directive.block {
            if !sub.name.is("except") {
                self.fail(error(
                    &sub.name,
                    "bind",
                    format!(
                        "invalid option {:?} (expected except ADDRESS|IFACE...)",
                        sub.name.text
                    ),
                ));
            } else if sub.args.is_empty() {
                self.fail(error(
                    &sub.name,
                    "bind",
                    "at least one address or interface must be given to except subdirective",
                ));
            } else {
                except.extend(self.bind_addresses(&sub.args, &interfaces));
            }
        }
        let mut addrs = self.bind_addresses(&directive.args, &interfaces);
        addrs.retain(|a| !except.iter().any(|e| e.ip() == a.ip()));
        addrs
    }

    /// The addresses `args` name (port 0).
    fn bind_addresses(
        &mut self,
        args: &[Token],
        interfaces: &[if_addrs::Interface],
    ) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for arg in args {
            let mut found = false;
            for iface in interfaces.iter().filter(|i| i.name == arg.text) {
                found = true;
                let ip = iface.ip();
                let addr = match ip {
                    IpAddr::V6(v6) if v6.is_unicast_link_local() => SocketAddr::V6(
                        std::net::SocketAddrV6::new(v6, 0, 0, iface.index.unwrap_or(0)),
                    ),
                    _ => SocketAddr::new(ip, 0),
                };
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            if found {
                continue;
            }
            match arg.text.parse::<IpAddr>() {
                Ok(ip) => addrs.push(SocketAddr::new(ip, 0)),
                Err(_) => self.fail(error(
                    arg,
                    "bind",
                    format!(
                        "not a valid IP address or interface name: {:?} (interfaces here: {})",
                        arg.text,
                        interface_names(interfaces)
                    ),
                )),
            }
        }
        addrs
    }

    /// `log [NAMES...] [FORMAT] { class CLASSES... }`, read as CoreDNS's `logParse`: no
    /// argument logs every name; one argument is a name; with more, the last is the format when
    /// it has a `{`.
    fn log(&mut self, d: &Directive) -> Vec<LogRule> {
        let mut args: Vec<&Token> = d.args.iter().collect();
        let mut format = LogFormat::default();
        if let [only] = args.as_slice()
            && only.text.contains('{')
        {
            // CoreDNS takes a lone argument as a name, so `log {combined}` logs nothing there;
            // refusing says what was meant.
            self.fail(error(
                only,
                "log",
                format!(
                    "{:?}: a single argument is a name to log; to choose the format for every name write `log . {}`",
                    only.text, only.text
                ),
            ));
            return Vec::new();
        }
        if args.len() >= 2
            && let Some(last) = args.last()
            && last.text.contains('{')
        {
            match LogFormat::parse(&last.text) {
                Ok(parsed) => format = parsed,
                Err(e) => self.fail(error(last, "log", e)),
            }
            args.pop();
        }
        let mut names = Vec::new();
        for arg in &args {
            match Name::from_ascii(&arg.text) {
                Ok(mut name) => {
                    name.set_fqdn(true);
                    names.push(name.to_lowercase());
                }
                Err(e) => self.fail(error(
                    arg,
                    "log",
                    format!(
                        "{:?} is not a domain name: {e} (expected NAMES... [FORMAT])",
                        arg.text
                    ),
                )),
            }
        }
        if args.is_empty() {
            names.push(Name::root());
        }
        let mut classes = Vec::new();
        let mut all = false;
        for sub in &d.block {
            if !sub.name.is("class") {
                self.fail(error(
                    &sub.name,
                    "log",
                    format!(
                        "unknown property '{}' (expected class CLASSES...)",
                        sub.name.text
                    ),
                ));
                continue;
            }
            if sub.args.is_empty() {
                self.fail(error(
                    &sub.name,
                    "log",
                    "Wrong argument count or unexpected line ending after 'class'",
                ));
            }
            for arg in &sub.args {
                let class = match arg.text.as_str() {
                    "all" => {
                        all = true;
                        continue;
                    }
                    "success" => ResponseClass::Success,
                    "denial" => ResponseClass::Denial,
                    "error" => ResponseClass::Error,
                    other => {
                        self.fail(error(
                            arg,
                            "log",
                            format!(
                                "invalid Class: {other} (expected all, success, denial or error)"
                            ),
                        ));
                        continue;
                    }
                };
                if !classes.contains(&class) {
                    classes.push(class);
                }
            }
        }
        if all {
            classes.clear();
        }
        names
            .into_iter()
            .map(|name| LogRule {
                name,
                format: format.clone(),
                classes: classes.clone(),
            })
            .collect()
    }

    /// `errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`, read
    /// and checked as CoreDNS's `errorsParse`. srvd logs no error per query that consolidating
    /// would thin out (see docs/coredns.md), so a valid block changes nothing.
    fn errors_directive(&mut self, d: &Directive) {
        match d.args.as_slice() {
            [] => {}
            [out] if out.is("stdout") => {}
            [out] => self.fail(error(
                out,
                "errors",
                format!(
                    "invalid log file: {} (expected stdout or nothing)",
                    out.text
                ),
            )),
            [_, extra, ..] => self.fail(error(
                extra,
                "errors",
                "Wrong argument count or unexpected line ending after 'errors'",
            )),
        }
        for sub in &d.block {
            match sub.name.text.as_str() {
                "stacktrace" => {}
                "consolidate" => self.consolidate(sub),
                other => self.fail(error(
                    &sub.name,
                    "errors",
                    format!(
                        "Unknown field {other} (expected stacktrace or consolidate DURATION REGEXP [LEVEL] [show_first])"
                    ),
                )),
            }
        }
        self.log_errors = true;
    }

    /// `consolidate DURATION REGEXP [LEVEL] [show_first]`.
    fn consolidate(&mut self, sub: &Directive) {
        let args = &sub.args;
        if !(2..=4).contains(&args.len()) {
            self.fail(error(
                &sub.name,
                "errors",
                "Wrong argument count or unexpected line ending after 'consolidate' (expected consolidate DURATION REGEXP [LEVEL] [show_first])",
            ));
            return;
        }
        // Go's time.ParseDuration, which CoreDNS uses here, wants a unit.
        let period = &args[0];
        if period.text.parse::<u64>().is_ok_and(|n| n != 0) {
            self.fail(error(
                period,
                "errors",
                format!(
                    "time: missing unit in duration {:?} (expected e.g. 30s or 5m)",
                    period.text
                ),
            ));
        } else if let Err(e) = duration::parse(&period.text) {
            self.fail(error(period, "errors", format!("consolidate {e}")));
        }
        let pattern = &args[1];
        if pattern.text.len() > MAX_REGEXP_LEN {
            self.fail(error(
                pattern,
                "errors",
                format!(
                    "regex pattern too long: {} > {MAX_REGEXP_LEN}",
                    pattern.text.len()
                ),
            ));
        } else if let Err(e) = regex::RegexBuilder::new(&pattern.text)
            .size_limit(REGEXP_SIZE_LIMIT)
            .build()
        {
            self.fail(error(
                pattern,
                "errors",
                format!(
                    "consolidate: {:?} is not a regular expression: {e}",
                    pattern.text
                ),
            ));
        }
        let mut level = false;
        let mut show_first = false;
        for arg in &args[2..] {
            let message = match arg.text.as_str() {
                "warning" | "error" | "info" | "debug" if level => {
                    "multiple log levels specified in consolidate"
                }
                "warning" | "error" | "info" | "debug" if show_first => {
                    "log level must come before show_first in consolidate"
                }
                "warning" | "error" | "info" | "debug" => {
                    level = true;
                    continue;
                }
                "show_first" => {
                    show_first = true;
                    continue;
                }
                _ => {
                    "unknown option in consolidate (expected warning, error, info, debug or show_first)"
                }
            };
            self.fail(error(arg, "errors", format!("{}: {message}", arg.text)));
        }
    }

    fn directive(&mut self, d: &Directive, block_zones: &[Name], root: Option<&Path>) {
        let name = d.name.text.as_str();
        match name {
            "etcd" => self.etcd(d, block_zones, root),
            "file" => self.file(d, block_zones, root),
            "registry" => self.registry(d, block_zones),
            "root" => {
                if d.args.len() != 1 {
                    self.fail(error(&d.name, "root", "expected one directory"));
                }
            }
            "health" => {
                let addr = self.addr_arg(d, ":8080");
                let mut lameduck = Duration::ZERO;
                for sub in &d.block {
                    match (sub.name.text.as_str(), sub.args.as_slice()) {
                        ("lameduck", [value]) => match duration::parse(&value.text) {
                            Ok(v) => lameduck = v,
                            Err(e) => self.fail(error(value, "health", format!("lameduck {e}"))),
                        },
                        _ => self.fail(error(&sub.name, "health", format!("unknown property '{}' (expected lameduck DURATION)", sub.name.text))),
                    }
                }
                if let Some(addr) = addr {
                    self.once(d, "health", |r| &mut r.health, (addr, lameduck));
                }
            }
            "ready" => {
                if let Some(addr) = self.addr_arg(d, ":8181") {
                    self.once(d, "ready", |r| &mut r.ready, addr);
                }
            }
            "prometheus" => {
                if let Some(addr) = self.addr_arg(d, "localhost:9153") {
                    self.once(d, "prometheus", |r| &mut r.metrics, addr);
                }
            }
            "reload" => {
                let mut values = [Duration::from_secs(30), Duration::from_secs(15)];
                if d.args.len() > 2 {
                    self.fail(error(&d.name, "reload", "expected at most an interval and a jitter"));
                }
                for (slot, arg) in values.iter_mut().zip(&d.args) {
                    match duration::parse(&arg.text) {
                        Ok(v) => *slot = v,
                        Err(e) => self.fail(error(arg, "reload", e)),
                    }
                }
                self.reload = Some((values[0], values[1]));
            }
            "cache" => self.notes.push(format!(
                "{}:{}: cache: not needed: srvd answers from an in-memory mirror that is never stale, so the cache changes nothing",
                d.name.file, d.name.line
            )),
            other => {
                let message = if let Some((_, why)) = NOT_IN_SRVD.iter().find(|(n, _)| *n == other) {
                    format!("srvd does not have CoreDNS's {other} plugin: {why}")
                } else if OTHER_COREDNS_PLUGINS.contains(&other) {
                    format!("srvd does not have CoreDNS's {other} plugin: srvd is an authoritative server for etcd and zone files; remove it, or keep CoreDNS in front for it")
                } else {
                    format!("unknown directive '{other}' (expected etcd, file, registry, bind, root, health, ready, prometheus, log, errors, reload or cache)")
                };
                self.fail(CorefileError::at(&d.name.file, d.name.line, &message));
            }
        }
    }

    /// Sets a process-wide endpoint once; a second one must agree.
    fn once<T: PartialEq + Copy>(
        &mut self,
        d: &Directive,
        name: &str,
        slot: impl Fn(&mut Self) -> &mut Option<T>,
        value: T,
    ) {
        match *slot(self) {
            Some(existing) if existing != value => self.fail(error(
                &d.name,
                name,
                "given twice with different settings: srvd has one per process",
            )),
            _ => *slot(self) = Some(value),
        }
    }

    fn addr_arg(&mut self, d: &Directive, default: &str) -> Option<SocketAddr> {
        let name = d.name.text.clone();
        match d.args.as_slice() {
            [] => http_addr(default).ok(),
            [addr] => match http_addr(&addr.text) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.fail(error(addr, &name, e));
                    None
                }
            },
            [_, extra, ..] => {
                self.fail(error(extra, &name, "expected at most one address"));
                None
            }
        }
    }

    fn zones_or_block(&mut self, d: &Directive, args: &[Token], block_zones: &[Name]) -> Vec<Name> {
        if args.is_empty() {
            return block_zones.to_vec();
        }
        let mut out = Vec::new();
        for arg in args {
            match zones::key(&arg.text) {
                Ok((names, None)) => out.extend(names),
                Ok((_, Some(_))) => self.fail(error(
                    arg,
                    &d.name.text,
                    format!("{:?}: a zone here takes no port", arg.text),
                )),
                Err(e) => self.fail(error(arg, &d.name.text, e)),
            }
        }
        out
    }

    fn etcd(&mut self, d: &Directive, block_zones: &[Name], root: Option<&Path>) {
        let zones = self.zones_or_block(d, &d.args, block_zones);
        let mut settings = EtcdSettings {
            path: "skydns".into(),
            endpoints: vec![DEFAULT_ENDPOINT.into()],
            bounds: (
                LeaseBounds::default().min_secs,
                LeaseBounds::default().max_secs,
            ),
            security: super::EtcdSecurity::default(),
        };
        // CoreDNS resolves relative TLS file names against `root`.
        let file = |text: &str| {
            let path = PathBuf::from(text);
            match root {
                Some(root) if path.is_relative() => root.join(path),
                _ => path,
            }
        };
        for sub in &d.block {
            let args = sub.args.as_slice();
            let arg_error = |sub: &Directive| {
                error(
                    &sub.name,
                    "etcd",
                    "Wrong argument count or unexpected line ending after '".to_string()
                        + &sub.name.text
                        + "'",
                )
            };
            match sub.name.text.as_str() {
                "stubzones" | "debug" | "upstream" => {}
                "fallthrough" => self.notes.push(format!(
                    "{}:{}: etcd: fallthrough: nothing follows etcd in srvd, so there is nothing to fall through to; accepted, changes nothing",
                    sub.name.file, sub.name.line
                )),
                "path" => match args {
                    [path] => settings.path = path.text.clone(),
                    _ => self.fail(arg_error(sub)),
                },
                "endpoint" => {
                    if args.is_empty() {
                        self.fail(arg_error(sub));
                    } else {
                        let mut endpoints = Vec::new();
                        for arg in args {
                            // A bare host:port means http://host:port, as etcd's client takes it.
                            let url = if arg.text.contains("://") {
                                arg.text.clone()
                            } else {
                                format!("http://{}", arg.text)
                            };
                            match super::parse_endpoint(&url) {
                                Ok(url) => endpoints.push(url),
                                Err(e) => self.fail(error(arg, "etcd", e)),
                            }
                        }
                        settings.endpoints = endpoints;
                    }
                }
                "credentials" => match args {
                    [] => self.fail(arg_error(sub)),
                    [user, password] => {
                        settings.security.user =
                            Some((user.text.clone(), super::Secret::new(password.text.clone())));
                    }
                    _ => self.fail(error(&sub.name, "etcd", "credentials requires 2 arguments, username and password")),
                },
                // CoreDNS's `tls [CERT KEY] [CACERT]`: none, the system's CAs; one, a CA; two, a
                // client certificate with the system's CAs; three, both.
                "tls" => {
                    let tls = match args {
                        [] => Some(super::EtcdTls::default()),
                        [ca] => Some(super::EtcdTls { ca: Some(file(&ca.text)), identity: None }),
                        [cert, key] => Some(super::EtcdTls {
                            ca: None,
                            identity: Some((file(&cert.text), file(&key.text))),
                        }),
                        [cert, key, ca] => Some(super::EtcdTls {
                            ca: Some(file(&ca.text)),
                            identity: Some((file(&cert.text), file(&key.text))),
                        }),
                        _ => None,
                    };
                    match tls {
                        Some(tls) => settings.security.tls = Some(tls),
                        None => self.fail(error(&sub.name, "etcd", "tls: expected at most CERT KEY CACERT")),
                    }
                }
                "min-lease-ttl" | "max-lease-ttl" => match args {
                    [value] => match lease_ttl(value, &sub.name.text) {
                        Ok(secs) if sub.name.text == "min-lease-ttl" => settings.bounds.0 = secs,
                        Ok(secs) => settings.bounds.1 = secs,
                        Err(e) => self.fail(e),
                    },
                    _ => self.fail(arg_error(sub)),
                },
                other => self.fail(error(&sub.name, "etcd", format!("unknown property '{other}'"))),
            }
        }
        if settings.security.tls.is_some()
            || settings.endpoints.iter().any(|e| e.starts_with("https://"))
        {
            match std::mem::take(&mut settings.security).settle(&settings.endpoints) {
                Ok(security) => settings.security = security,
                Err(e) => self.fail(error(&d.name, "etcd", e)),
            }
        }
        match &self.etcd {
            Some((existing, _)) if *existing != settings => self.fail(error(
                &d.name,
                "etcd",
                "a second etcd backend with other settings (path, endpoint or lease TTLs): srvd mirrors one etcd prefix; not supported yet",
            )),
            _ => self.etcd = Some((settings, d.name.clone())),
        }
        for zone in zones {
            self.declared.push(zone.clone());
            if !self.etcd_zones.contains(&zone) {
                self.etcd_zones.push(zone);
            }
        }
    }

    fn file(&mut self, d: &Directive, block_zones: &[Name], root: Option<&Path>) {
        let Some((path, zone_args)) = d.args.split_first() else {
            self.fail(error(
                &d.name,
                "file",
                "expected a zone file: file DBFILE [ZONES...]",
            ));
            return;
        };
        if let Some(sub) = d.block.first() {
            self.fail(error(
                &sub.name,
                "file",
                format!("'{}' is not supported yet", sub.name.text),
            ));
        }
        let zones = self.zones_or_block(d, zone_args, block_zones);
        let mut file = PathBuf::from(&path.text);
        if file.is_relative()
            && let Some(root) = root
        {
            file = root.join(file);
        }
        for origin in zones {
            // The same file for the same zone in another block (a zone served over dns:// and
            // tls://, say) is the same zone, as a repeated identical `etcd` is.
            if self
                .files
                .iter()
                .any(|f| f.origin == origin && f.path == file)
            {
                self.declared.push(origin.clone());
                continue;
            }
            if self.files.iter().any(|f| f.origin == origin) {
                self.fail(error(
                    &d.name,
                    "file",
                    format!("a second zone file for {origin}"),
                ));
                continue;
            }
            self.declared.push(origin.clone());
            self.files.push(ZoneFileSpec {
                path: file.clone(),
                origin,
            });
        }
    }

    /// `registry PREFIX... { zone ZONE; ttl DURATION }`: srvd's own.
    fn registry(&mut self, d: &Directive, block_zones: &[Name]) {
        if d.args.is_empty() {
            self.fail(error(
                &d.name,
                "registry",
                "expected one or more etcd key prefixes such as /services",
            ));
        }
        let mut zone = block_zones.first().cloned();
        let mut ttl = None;
        for sub in &d.block {
            match (sub.name.text.as_str(), sub.args.as_slice()) {
                ("zone", [z]) => match super::parse_zone(&z.text) {
                    Ok(z) => zone = Some(z),
                    Err(e) => self.fail(error(z, "registry", e)),
                },
                ("ttl", [t]) => match duration::parse(&t.text) {
                    Ok(v) => ttl = Some(u32::try_from(v.as_secs()).unwrap_or(u32::MAX)),
                    Err(e) => self.fail(error(t, "registry", format!("ttl {e}"))),
                },
                (other, _) => self.fail(error(
                    &sub.name,
                    "registry",
                    format!("unknown property '{other}' (expected zone ZONE or ttl DURATION)"),
                )),
            }
        }
        self.declared.extend(zone.clone());
        for prefix in &d.args {
            self.registry
                .push((prefix.text.clone(), zone.clone(), ttl, prefix.clone()));
        }
    }

    fn finish(mut self) -> Result<Corefile, Vec<CorefileError>> {
        // As CoreDNS routes by port, then by zone: when ports serve different zones, each
        // address answers only its port's zones (REFUSED for the others).
        let uniform = self
            .zones_by_port
            .windows(2)
            .all(|pair| pair[0].1 == pair[1].1);
        let zones_by_listen = if uniform {
            Vec::new()
        } else {
            self.listen
                .iter()
                .map(|addr| {
                    let zones = self
                        .zones_by_port
                        .iter()
                        .find(|(port, _)| *port == addr.port())
                        .map(|(_, zones)| zones.iter().cloned().collect())
                        .unwrap_or_default();
                    (*addr, zones)
                })
                .collect()
        };
        let mut etcd = self.etcd.map(|(settings, _)| {
            let mut config = EtcdConfig::new(settings.endpoints);
            config.security = settings.security;
            config.prefix = format!("/{}", settings.path.trim_start_matches('/'));
            config.zones = self.etcd_zones.clone();
            config.lease_bounds = LeaseBounds {
                min_secs: settings.bounds.0,
                max_secs: settings.bounds.1,
            };
            config
        });
        if let Some((_, _, _, token)) = self.registry.first() {
            match &mut etcd {
                None => self.errors.push(error(
                    token,
                    "registry",
                    "the registry is kept in etcd: it needs an etcd directive",
                )),
                Some(config) => {
                    for (prefix, zone, ttl, _) in &self.registry {
                        config.registry_prefixes.push(prefix.clone());
                        if zone.is_some() {
                            config.registry_zone = zone.clone();
                        }
                        if let Some(ttl) = ttl {
                            config.registry_ttl = *ttl;
                        }
                    }
                    if let Err(e) = super::check_prefixes(config) {
                        self.errors.push(error(token, "registry", e));
                    }
                }
            }
        }
        if self.listen.is_empty() && self.encrypted.is_empty() && self.errors.is_empty() {
            self.errors.push(CorefileError {
                file: String::new(),
                line: 0,
                directive: None,
                message: "no server blocks (expected e.g. service.local:1053 { etcd })".into(),
            });
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(Corefile {
            zones_by_listen,
            listen: self.listen,
            encrypted: self.encrypted,
            files: self.files,
            etcd,
            health: self.health,
            ready: self.ready,
            metrics: self.metrics,
            log_queries: self
                .log_servers
                .iter()
                .any(|s| !s.rules.is_empty())
                .then_some(QueryLog {
                    servers: self.log_servers,
                }),
            log_errors: self.log_errors,
            reload: self.reload,
            notes: self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::querylog;

    struct NoFiles;

    impl Files for NoFiles {
        fn read(&self, _: &Path) -> Result<String, String> {
            Err("No such file or directory (os error 2)".into())
        }

        fn matching(&self, _: &Path, _: &str) -> Vec<PathBuf> {
            Vec::new()
        }
    }

    fn read(text: &str) -> Result<Corefile, Vec<String>> {
        let env = |name: &str| (name == "ETCD").then(|| "127.0.0.1:2379".to_string());
        parse(text, Path::new("Corefile"), &NoFiles, &env)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn etcd(text: &str) -> EtcdConfig {
        read(text).unwrap().etcd.unwrap()
    }

    /// CoreDNS's own `etcd` setup cases (`plugin/etcd/setup_test.go`): the same inputs are
    /// accepted or refused the same way, with the same path, endpoints and lease TTLs.
    #[test]
    fn coredns_etcd_setup_cases_are_read_alike() {
        let block = |etcd: &str| format!("service.local:1053 {{\n{etcd}\n}}\n");
        let e = etcd(&block("etcd"));
        assert_eq!(
            (e.prefix.as_str(), e.endpoints.as_slice()),
            ("/skydns", &["http://localhost:2379".to_string()][..])
        );
        let e = etcd(&block(
            "etcd {\n endpoint http://localhost:2379 http://localhost:3379 http://localhost:4379\n\n}",
        ));
        assert_eq!(e.endpoints.len(), 3);
        let e = etcd(&block("etcd skydns.local {\n endpoint localhost:300\n}"));
        assert_eq!(
            e.endpoints,
            ["http://localhost:300"],
            "a bare host:port is http://"
        );
        assert_eq!(e.zones, [Name::from_ascii("skydns.local.").unwrap()]);
        let e = etcd(&block(
            "etcd {\n endpoint http://localhost:2379\n min-lease-ttl 60\n}",
        ));
        assert_eq!(
            (e.lease_bounds.min_secs, e.lease_bounds.max_secs),
            (60, 86_400)
        );
        let e = etcd(&block("etcd {\n max-lease-ttl 1h\n}"));
        assert_eq!(e.lease_bounds.max_secs, 3600);
        let e = etcd(&block("etcd {\n min-lease-ttl 120\n max-lease-ttl 7200\n}"));
        assert_eq!(
            (e.lease_bounds.min_secs, e.lease_bounds.max_secs),
            (120, 7200)
        );
        for (etcd, want) in [
            (
                "etcd {\n endpoints localhost:300\n}",
                "Corefile:3: etcd: unknown property 'endpoints'",
            ),
            (
                "etcd {\n credentials username\n}",
                "Corefile:3: etcd: credentials requires 2 arguments, username and password",
            ),
            (
                "etcd {\n credentials\n}",
                "Corefile:3: etcd: Wrong argument count or unexpected line ending after 'credentials'",
            ),
            (
                "etcd {\n min-lease-ttl -30s\n}",
                "Corefile:3: etcd: invalid min-lease-ttl value: \"-30s\": expected seconds (e.g. 30) or a duration such as 90s, 5m, 2h30m",
            ),
            (
                "etcd {\n max-lease-ttl 1y\n}",
                "Corefile:3: etcd: invalid max-lease-ttl value: \"1y\": expected seconds (e.g. 30) or a duration such as 90s, 5m, 2h30m",
            ),
            (
                "etcd {\n path\n}",
                "Corefile:3: etcd: Wrong argument count or unexpected line ending after 'path'",
            ),
            (
                "etcd {\n tls a b c d\n}",
                "Corefile:3: etcd: tls: expected at most CERT KEY CACERT",
            ),
            (
                "etcd {\n credentials a b c\n}",
                "Corefile:3: etcd: credentials requires 2 arguments, username and password",
            ),
            (
                "etcd {\n endpoint http://localhost:2379\n tls ca.pem\n}",
                "Corefile:2: etcd: etcd TLS files are given but the endpoints (http://localhost:2379) are http://: use https:// URLs",
            ),
        ] {
            assert_eq!(read(&block(etcd)).unwrap_err(), [want], "{etcd}");
        }
        // Accepted and ignored, as CoreDNS does.
        etcd(&block(
            "etcd {\n stubzones\n debug\n upstream 8.8.8.8\n path /other\n}",
        ));
    }

    /// CoreDNS's `tls` argument rules (0: system CAs, 1: CA, 2: cert and key, 3: all three),
    /// relative files under `root`, and `credentials` kept out of `Debug` output.
    #[test]
    fn etcd_tls_and_credentials_follow_corefile_rules() {
        use crate::config::EtcdTls;
        let tls = |line: &str| {
            etcd(&format!(
                "service.local:1053 {{\n root /etc/srvd\n etcd {{\n  endpoint https://e:2379\n  {line}\n }}\n}}\n"
            ))
            .security
            .tls
            .unwrap()
        };
        let at = |f: &str| PathBuf::from("/etc/srvd").join(f);
        assert_eq!(tls("tls"), EtcdTls::default());
        assert_eq!(
            tls("tls ca.pem"),
            EtcdTls {
                ca: Some(at("ca.pem")),
                identity: None
            }
        );
        assert_eq!(
            tls("tls c.pem /abs/k.pem"),
            EtcdTls {
                ca: None,
                identity: Some((at("c.pem"), PathBuf::from("/abs/k.pem")))
            }
        );
        assert_eq!(
            tls("tls c.pem k.pem ca.pem"),
            EtcdTls {
                ca: Some(at("ca.pem")),
                identity: Some((at("c.pem"), at("k.pem")))
            }
        );
        // An https endpoint alone: TLS with the system's CAs.
        let e = etcd("service.local:1053 {\n etcd {\n  endpoint https://e:2379\n }\n}\n");
        assert_eq!(e.security.tls, Some(EtcdTls::default()));
        let e = etcd("service.local:1053 {\n etcd {\n  credentials root s3cr3t-pw\n }\n}\n");
        let (user, password) = e.security.user.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("root", "s3cr3t-pw"));
        assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
    }

    #[test]
    fn a_corefile_for_coredns_maps_onto_srvd() {
        let corefile = read(
            "(common) {\n  errors\n  log\n}\n\
             service.local:1053 10.0.0.0/24:1053 {\n  import common\n  bind 127.0.0.1 ::1\n  etcd service.local 10.0.0.0/24 {\n    path /skydns\n    endpoint {$ETCD}\n    fallthrough\n  }\n  registry /services {\n    ttl 10s\n  }\n  health :8080 {\n    lameduck 5s\n  }\n  ready 127.0.0.1:8181\n  prometheus\n  cache 30\n  reload\n}\n",
        )
        .unwrap();
        assert_eq!(
            corefile.listen,
            [
                "127.0.0.1:1053".parse::<SocketAddr>().unwrap(),
                "[::1]:1053".parse().unwrap()
            ]
        );
        let etcd = corefile.etcd.unwrap();
        assert_eq!(
            etcd.endpoints,
            ["http://127.0.0.1:2379"],
            "{{$ETCD}} substituted"
        );
        let zones: Vec<String> = etcd.zones.iter().map(ToString::to_string).collect();
        assert_eq!(zones, ["service.local.", "0.0.10.in-addr.arpa."]);
        assert_eq!(etcd.registry_prefixes, ["/services"]);
        assert_eq!(
            etcd.registry_zone(),
            Some(&Name::from_ascii("service.local.").unwrap())
        );
        assert_eq!(etcd.registry_ttl, 10);
        assert_eq!(
            corefile.health,
            Some(("[::]:8080".parse().unwrap(), Duration::from_secs(5)))
        );
        assert_eq!(corefile.ready, Some("127.0.0.1:8181".parse().unwrap()));
        assert_eq!(
            corefile.metrics,
            Some("127.0.0.1:9153".parse().unwrap()),
            "CoreDNS's localhost:9153"
        );
        assert!(corefile.log_errors);
        let log = corefile.log_queries.unwrap();
        assert_eq!(log.servers.len(), 1);
        assert_eq!(log.servers[0].rules, QueryLog::all().servers[0].rules);
        assert_eq!(
            corefile.reload,
            Some((Duration::from_secs(30), Duration::from_secs(15)))
        );
        assert_eq!(corefile.notes.len(), 2, "{:?}", corefile.notes);
        assert!(corefile.notes[0].contains("fallthrough"));
        assert!(corefile.notes[1].contains("cache: not needed"));
    }

    #[test]
    fn zone_files_and_blocks_without_bind() {
        let corefile = read(
            "example.test:1053 {\n  root /var/lib/dns\n  file db.example.test\n}\nother.test:1053 {\n  file /abs/db.other other.test\n}\n",
        )
        .unwrap();
        assert_eq!(
            corefile.listen,
            ["[::]:1053".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            corefile.files,
            [
                ZoneFileSpec {
                    path: "/var/lib/dns/db.example.test".into(),
                    origin: Name::from_ascii("example.test.").unwrap()
                },
                ZoneFileSpec {
                    path: "/abs/db.other".into(),
                    origin: Name::from_ascii("other.test.").unwrap()
                },
            ]
        );
        assert!(corefile.etcd.is_none());
    }

    #[test]
    fn errors_name_file_line_and_directive_and_all_are_reported() {
        let errors = read(
            "service.local:1053 {\n  forward . 8.8.8.8\n  whoami\n  frobnicate\n  log . \"{type} {nope}\"\n  health :80a\n  registry /services\n}\nother.test:1054 {\n  file db.other\n}\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "Corefile:2: srvd does not have CoreDNS's forward plugin: srvd never recurses; keep a resolver in front for other names",
                "Corefile:3: srvd does not have CoreDNS's whoami plugin: srvd is an authoritative server for etcd and zone files; remove it, or keep CoreDNS in front for it",
                "Corefile:4: unknown directive 'frobnicate' (expected etcd, file, registry, bind, root, health, ready, prometheus, log, errors, reload or cache)",
                "Corefile:5: log: unknown placeholder {nope} in format \"{type} {nope}\": expected one of {type} {name} {class} {proto} {remote} {port} {size} {>id} {>opcode} {>do} {>bufsize} {rcode} {rsize} {duration} {>rflags} {/log/class} {/log/type}, {common} or {combined}",
                "Corefile:6: health: \":80a\": expected an address such as :8080, localhost:8080 or 127.0.0.1:8080",
                "Corefile:7: registry: the registry is kept in etcd: it needs an etcd directive",
            ]
        );
        assert_eq!(
            read("a.test:1053 {\n  etcd\n}\nb.test:1053 {\n  etcd {\n    path /other\n  }\n}\n")
                .unwrap_err(),
            [
                "Corefile:5: etcd: a second etcd backend with other settings (path, endpoint or lease TTLs): srvd mirrors one etcd prefix; not supported yet"
            ]
        );
    }

    #[test]
    fn ports_with_other_zones_serve_only_their_own() {
        let corefile = read(
            "a.test:1053 {\n  bind 127.0.0.1\n  file db.a\n}\nb.test:1054 {\n  bind 127.0.0.1\n  etcd\n}\nc.test:1053 {\n  bind 127.0.0.1\n  etcd\n}\n",
        )
        .unwrap();
        let zones = |names: &[&str]| -> Vec<Name> {
            names.iter().map(|n| Name::from_ascii(n).unwrap()).collect()
        };
        assert_eq!(
            corefile.zones_by_listen,
            [
                (
                    "127.0.0.1:1053".parse().unwrap(),
                    zones(&["a.test.", "c.test."])
                ),
                ("127.0.0.1:1054".parse().unwrap(), zones(&["b.test."])),
            ]
        );
        let same = read("a.test:1053 {\n  etcd\n}\na.test:1054 {\n  etcd\n}\n").unwrap();
        assert!(
            same.zones_by_listen.is_empty(),
            "every port serves every zone"
        );
    }

    #[test]
    fn several_blocks_on_one_port_share_its_listener() {
        let corefile = read("a.test:1053 {\n  etcd\n}\nb.test:1053 {\n  etcd\n}\n").unwrap();
        assert_eq!(
            corefile.listen,
            ["[::]:1053".parse::<SocketAddr>().unwrap()]
        );
        let zones: Vec<String> = corefile
            .etcd
            .unwrap()
            .zones
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(zones, ["a.test.", "b.test."]);
    }

    fn names(list: &[&str]) -> Vec<Name> {
        list.iter().map(|n| Name::from_ascii(n).unwrap()).collect()
    }

    /// `(name, format, classes)` of each rule of the one block of `text`.
    fn log_rules(text: &str) -> Vec<(String, LogFormat, Vec<ResponseClass>)> {
        let log = read(text).unwrap().log_queries.unwrap();
        assert_eq!(log.servers.len(), 1);
        log.servers[0]
            .rules
            .iter()
            .map(|r| (r.name.to_string(), r.format.clone(), r.classes.clone()))
            .collect()
    }

    /// CoreDNS's `log` forms (plugin/log README and setup): names, formats and classes.
    #[test]
    fn log_forms_read_as_coredns_reads_them() {
        use ResponseClass::{Denial, Error, Success};
        let block = |log: &str| format!("example.org:1053 {{\n{log}\n}}\n");
        let common = LogFormat::parse(querylog::COMMON).unwrap();
        let combined = LogFormat::parse(querylog::COMBINED).unwrap();
        let custom = LogFormat::parse("{proto} Request: {name} {type} {>id}").unwrap();
        for (log, want) in [
            ("log", vec![(".", common.clone(), vec![])]),
            (
                "log example.org",
                vec![("example.org.", common.clone(), vec![])],
            ),
            (
                "log a.example.org B.example.org {combined}",
                vec![
                    ("a.example.org.", combined.clone(), vec![]),
                    ("b.example.org.", combined.clone(), vec![]),
                ],
            ),
            (
                "log . \"{proto} Request: {name} {type} {>id}\"",
                vec![(".", custom.clone(), vec![])],
            ),
            ("log . {common}", vec![(".", common.clone(), vec![])]),
            (
                "log example.org {\n class denial\n}",
                vec![("example.org.", common.clone(), vec![Denial])],
            ),
            (
                "log . {combined} {\n class denial error\n}",
                vec![(".", combined.clone(), vec![Denial, Error])],
            ),
            (
                "log . {\n class denial\n class success\n}",
                vec![(".", common.clone(), vec![Denial, Success])],
            ),
            (
                "log {\n class success all\n}",
                vec![(".", common.clone(), vec![])],
            ),
            // Several `log` lines in a block: their rules in order (the first match decides).
            (
                "log sub.example.org {\n class error\n}\nlog",
                vec![
                    ("sub.example.org.", common.clone(), vec![Error]),
                    (".", common.clone(), vec![]),
                ],
            ),
        ] {
            let want: Vec<_> = want
                .into_iter()
                .map(|(n, f, c)| (n.to_string(), f, c))
                .collect();
            assert_eq!(log_rules(&block(log)), want, "{log}");
        }
    }

    #[test]
    fn log_errors_name_the_line() {
        let block = |log: &str| format!("example.org:1053 {{\n{log}\n}}\n");
        for (log, want) in [
            (
                "log . \"{local} {type}\"",
                "Corefile:2: log: unknown placeholder {local} in format \"{local} {type}\": srvd does not pass the local address to the query log yet",
            ),
            (
                "log . \"{/geoip/city/name}\"",
                "Corefile:2: log: unknown placeholder {/geoip/city/name} in format \"{/geoip/city/name}\": srvd has no metadata plugin; of the metadata only {/log/class} and {/log/type} exist",
            ),
            (
                "log {combined}",
                "Corefile:2: log: \"{combined}\": a single argument is a name to log; to choose the format for every name write `log . {combined}`",
            ),
            (
                "log {\n class denial weird\n}",
                "Corefile:3: log: invalid Class: weird (expected all, success, denial or error)",
            ),
            (
                "log {\n class\n}",
                "Corefile:3: log: Wrong argument count or unexpected line ending after 'class'",
            ),
            (
                "log {\n format {common}\n}",
                "Corefile:3: log: unknown property 'format' (expected class CLASSES...)",
            ),
            (
                "log a..b",
                "Corefile:2: log: \"a..b\" is not a domain name: Malformed label:  (expected NAMES... [FORMAT])",
            ),
        ] {
            assert_eq!(read(&block(log)).unwrap_err(), [want], "{log}");
        }
    }

    /// A query meets the rules of the block that serves it (the most specific zone), and the
    /// first of them whose name covers it decides.
    #[test]
    fn a_query_meets_the_log_rules_of_its_own_block() {
        let log = read(
            "a.test:1053 {\n  log b.a.test {\n    class denial\n  }\n  log\n}\nsub.a.test:1053 {\n  file db.sub\n}\nc.test:1053 {\n  log . {combined}\n}\n",
        )
        .unwrap()
        .log_queries
        .unwrap();
        assert_eq!(
            log.servers
                .iter()
                .map(|s| s.zones.clone())
                .collect::<Vec<_>>(),
            [
                names(&["a.test."]),
                names(&["sub.a.test."]),
                names(&["c.test."])
            ]
        );
        let rule = |name: &str| {
            log.rule_for(&Name::from_ascii(name).unwrap())
                .map(|r| (r.name.to_string(), r.classes.clone()))
        };
        assert_eq!(
            rule("x.B.a.test."),
            Some(("b.a.test.".into(), vec![ResponseClass::Denial]))
        );
        assert_eq!(rule("x.a.test."), Some((".".into(), vec![])));
        assert_eq!(rule("x.sub.a.test."), None, "its block has no log");
        assert_eq!(rule("c.test."), Some((".".into(), vec![])));
        assert_eq!(rule("d.test."), None, "no block serves it");
        assert!(
            read("a.test:1053 {\n  file db.a\n}\n")
                .unwrap()
                .log_queries
                .is_none()
        );
    }

    /// CoreDNS's `errors` block: accepted when valid, each mistake named with its line.
    #[test]
    fn errors_blocks_are_checked_as_coredns_checks_them() {
        let block = |errors: &str| format!("example.org:1053 {{\n{errors}\n}}\n");
        for errors in [
            "errors",
            "errors stdout",
            "errors {\n stacktrace\n consolidate 5m \".* i/o timeout$\" warning\n consolidate 30s \"^Failed to .+\"\n consolidate 1m ^x debug show_first\n consolidate 1m ^y show_first\n}",
        ] {
            assert!(read(&block(errors)).unwrap().log_errors, "{errors}");
        }
        for (errors, want) in [
            (
                "errors {\n consolidate 5m \"(unclosed\"\n}",
                "Corefile:3: errors: consolidate: \"(unclosed\" is not a regular expression: regex parse error:\n    (unclosed\n    ^\nerror: unclosed group",
            ),
            (
                "errors {\n consolidate 30 x\n}",
                "Corefile:3: errors: time: missing unit in duration \"30\" (expected e.g. 30s or 5m)",
            ),
            (
                "errors {\n consolidate 5m\n}",
                "Corefile:3: errors: Wrong argument count or unexpected line ending after 'consolidate' (expected consolidate DURATION REGEXP [LEVEL] [show_first])",
            ),
            (
                "errors {\n consolidate 5m x loud\n}",
                "Corefile:3: errors: loud: unknown option in consolidate (expected warning, error, info, debug or show_first)",
            ),
            (
                "errors {\n consolidate 5m x show_first warning\n}",
                "Corefile:3: errors: warning: log level must come before show_first in consolidate",
            ),
            (
                "errors {\n consolidate 5m x info error\n}",
                "Corefile:3: errors: error: multiple log levels specified in consolidate",
            ),
            (
                "errors {\n frob\n}",
                "Corefile:3: errors: Unknown field frob (expected stacktrace or consolidate DURATION REGEXP [LEVEL] [show_first])",
            ),
            (
                "errors stderr",
                "Corefile:2: errors: invalid log file: stderr (expected stdout or nothing)",
            ),
            (
                "errors\nerrors",
                "Corefile:3: errors: this plugin can only be used once per Server Block",
            ),
        ] {
            assert_eq!(read(&block(errors)).unwrap_err(), [want], "{errors}");
        }
        let long = format!("errors {{\n consolidate 5m {}\n}}", "a".repeat(10_001));
        assert_eq!(
            read(&block(&long)).unwrap_err(),
            ["Corefile:3: errors: regex pattern too long: 10001 > 10000"]
        );
    }

    /// `bind IFACE` and `except`, with the real loopback interface (its IPv6 address may or may
    /// not be there, so the expected list is read from the system too).
    #[test]
    fn bind_takes_interface_names_and_except() {
        let lo: Vec<IpAddr> = if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .filter(|i| i.name == "lo")
            .map(|i| i.ip())
            .collect();
        assert!(lo.contains(&IpAddr::from([127, 0, 0, 1])), "{lo:?}");
        let listen = |bind: &str| {
            read(&format!("example.org:1053 {{\n{bind}\n}}\n")).map(|c| {
                c.listen
                    .iter()
                    .map(|a| {
                        assert_eq!(a.port(), 1053);
                        a.ip()
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(listen("bind lo").unwrap(), lo);
        assert_eq!(listen("bind 127.0.0.1 lo").unwrap(), lo, "no address twice");
        assert_eq!(
            listen("bind lo 192.0.2.1 {\n except 127.0.0.1\n}").unwrap(),
            lo.iter()
                .copied()
                .filter(|ip| !ip.is_ipv4())
                .chain([IpAddr::from([192, 0, 2, 1])])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            listen("bind 127.0.0.1 {\n except lo\n}\nbind ::1").unwrap(),
            [IpAddr::from(std::net::Ipv6Addr::LOCALHOST)],
            "except applies to its own bind line"
        );
        let unknown = listen("bind 127.0.0.1 nosuch0").unwrap_err();
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with(
                "Corefile:2: bind: not a valid IP address or interface name: \"nosuch0\" (interfaces here: "
            ) && unknown[0].contains("lo"),
            "{unknown:?}"
        );
        for (bind, want) in [
            (
                "bind 127.0.0.1 {\n except lo\n}",
                "Corefile:2: bind: no address is left once `except` removes its addresses (expected at least one to listen on)",
            ),
            (
                "bind 127.0.0.1 {\n except\n}",
                "Corefile:3: bind: at least one address or interface must be given to except subdirective",
            ),
            (
                "bind 127.0.0.1 {\n only lo\n}",
                "Corefile:3: bind: invalid option \"only\" (expected except ADDRESS|IFACE...)",
            ),
            (
                "bind",
                "Corefile:2: bind: at least one address or interface name is expected",
            ),
        ] {
            assert_eq!(listen(bind).unwrap_err(), [want], "{bind}");
        }
    }
}
