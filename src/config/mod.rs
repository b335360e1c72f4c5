//! `Config`: what `srvd serve` runs with, typed and validated, with defaults applied.
//!
//! It is built from the command line today (and from a Corefile later) and is the only
//! configuration type other modules see. Building it opens no socket, reads no zone and
//! contacts no etcd.

pub mod corefile;
pub mod duration;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::index::leases::LeaseBounds;
use crate::ops::querylog::{LogFormat, ResponseClass};
use crate::server::TcpLimits;

/// The default listen address: loopback, and not 5353, which the mDNS responder (avahi) owns.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1053";
/// The zones directory used when none is given.
pub const DEFAULT_ZONES_DIR: &str = "zones";
/// The zone served from etcd when no `--zone` is given.
pub const DEFAULT_ETCD_ZONE: &str = "service.local.";
/// CoreDNS's default etcd path prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/skydns";

/// Where zone files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSource {
    /// `--zones-dir` given: it must exist.
    Dir(PathBuf),
    /// Nothing given: `zones/` if it exists; else, without etcd, the example zone compiled into
    /// the binary (with etcd, no zone files).
    DefaultDirOrEmbedded,
    /// No zone files at all (etcd only).
    None,
}

/// The etcd mirror's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://127.0.0.1:2379`); several for fail-over.
    pub endpoints: Vec<String>,
    /// The key prefix (`/skydns`).
    pub prefix: String,
    /// Zones answered from etcd, lower-case and absolute.
    pub zones: Vec<Name>,
    /// The clamp on lease-derived TTLs.
    pub lease_bounds: LeaseBounds,
    /// The largest etcd response srvd decodes (`--etcd-max-response-bytes`): at least etcd's
    /// largest key plus framing; listing pages are split to stay below it.
    pub max_response_bytes: usize,
    /// How long a watch may deliver nothing before srvd re-reads everything
    /// (`--etcd-watch-silence`).
    pub watch_silence: std::time::Duration,
    /// Key prefixes in the service-registry layout (`--registry /services`:
    /// `PREFIX/<service>/<id>`), listed and watched beside `prefix` by the same sync task. Empty
    /// by default; prefixes must not overlap each other or `prefix` ([`check_prefixes`]).
    pub registry_prefixes: Vec<String>,
    /// The zone the registry is answered in (`--registry-zone`); `None` means the first of
    /// `zones`. A zone not in `zones` is served from etcd as if it were.
    pub registry_zone: Option<Name>,
    /// TTL of registry records (`--registry-ttl`), lowered to the remaining lease time for keys
    /// with a lease. Short by default so that caches drop a dead instance quickly.
    pub registry_ttl: u32,
    /// TLS and user for a locked-down etcd (`--etcd-ca`, `--etcd-user`, Corefile `tls`,
    /// `credentials`); empty for a plaintext, open etcd.
    pub security: EtcdSecurity,
}

/// A password: kept out of every log line, error and `Debug` output, so that a configuration
/// can be printed whole while debugging without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it to etcd.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How srvd reaches an etcd that encrypts and authenticates its clients. The files are read
/// when srvd connects, so an error names the file it could not use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSecurity {
    /// TLS (`https://` endpoints): `None` for `http://`.
    pub tls: Option<EtcdTls>,
    /// etcd user and password (`--etcd-user`, `credentials`).
    pub user: Option<(String, Secret)>,
}

/// TLS files for etcd; with neither, the system's CAs check etcd and srvd shows no certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdTls {
    /// The CA that signed etcd's certificate (PEM); `None`: the system's CAs.
    pub ca: Option<PathBuf>,
    /// The client certificate and its key (PEM), for etcd's `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl EtcdSecurity {
    /// Checks the security settings against the endpoints: TLS options need `https://`
    /// endpoints (etcd-client refuses them on `http://`), and all endpoints use one scheme.
    /// `https://` endpoints without TLS options get TLS with the system's CAs.
    ///
    /// # Errors
    /// Mixed schemes, or TLS files given for `http://` endpoints.
    pub fn settle(mut self, endpoints: &[String]) -> Result<Self, String> {
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https != 0 && https != endpoints.len() {
            return Err(format!(
                "etcd endpoints {}: use https:// for all of them or for none",
                endpoints.join(",")
            ));
        }
        match (https != 0, &self.tls) {
            (true, None) => self.tls = Some(EtcdTls::default()),
            (false, Some(_)) => {
                return Err(format!(
                    "etcd TLS files are given but the endpoints ({}) are http://: use https:// URLs",
                    endpoints.join(",")
                ));
            }
            _ => {}
        }
        Ok(self)
    }
}

/// Reads an etcd password file: the first line, without its `\n` or `\r\n`, is the password.
///
/// # Errors
/// The file cannot be read, or holds an empty password. The error never quotes the file's text.
pub fn read_password_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("etcd password file {}: {e}", path.display()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!(
            "etcd password file {}: the password is empty",
            path.display()
        ));
    }
    Ok(Secret::new(password))
}

/// The default `--registry-ttl`, in seconds.
pub const DEFAULT_REGISTRY_TTL: u32 = 5;

impl EtcdConfig {
    /// The zone the registry is answered in, when a registry prefix is configured.
    pub fn registry_zone(&self) -> Option<&Name> {
        if self.registry_prefixes.is_empty() {
            return None;
        }
        self.registry_zone.as_ref().or(self.zones.first())
    }

    /// The zones answered from etcd: `zones`, plus the registry zone when it is not one of them.
    pub fn etcd_zones(&self) -> Vec<Name> {
        let mut zones = self.zones.clone();
        if let Some(zone) = self.registry_zone()
            && !zones.contains(zone)
        {
            zones.push(zone.clone());
        }
        zones
    }
}

/// Checks that no watched prefix (the SkyDNS `prefix`, each registry prefix) contains another:
/// a key under two of them would be mirrored twice, in two layouts.
///
/// # Errors
/// The first two prefixes that overlap, as `/`-terminated key prefixes.
pub fn check_prefixes(etcd: &EtcdConfig) -> Result<(), String> {
    use crate::backend::skydns::key::{root_path, subtree_prefix};
    let mut watched = vec![(
        etcd.prefix.as_str(),
        subtree_prefix(&root_path(&etcd.prefix)),
    )];
    for given in &etcd.registry_prefixes {
        let prefix = subtree_prefix(&root_path(given));
        if let Some((other, _)) = watched
            .iter()
            .find(|(_, w)| w.starts_with(prefix.as_str()) || prefix.starts_with(w.as_str()))
        {
            return Err(format!(
                "etcd prefixes {other:?} and {given:?} overlap: each key must belong to one layout (--etcd-prefix and every --registry must be disjoint)"
            ));
        }
        watched.push((given, prefix));
    }
    Ok(())
}

/// Validated configuration for `srvd serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to serve UDP and TCP on.
    pub listen: Vec<SocketAddr>,
    /// Where zone files come from.
    pub zones: ZoneSource,
    /// Zone files named one by one, each for its zone (a Corefile's `file` directives).
    pub zone_files: Vec<corefile::ZoneFileSpec>,
    /// Listen addresses that serve only some zones (a Corefile whose blocks put different zones
    /// on different ports); an address not listed serves every zone.
    pub zones_by_listen: Vec<(SocketAddr, Vec<Name>)>,
    /// The etcd mirror, if any.
    pub etcd: Option<EtcdConfig>,
    /// Limits on TCP clients.
    pub tcp: TcpLimits,
    /// How long shutdown waits for in-flight TCP answers.
    pub shutdown_grace: Duration,
    /// Bytes of prepared responses kept per listen address (`server::prepared`); 0: none.
    pub answer_cache_bytes: usize,
    /// `/health` (CoreDNS `health ADDR { lameduck D }`): off when `None`.
    pub health: Option<HealthConfig>,
    /// `/ready` (CoreDNS `ready ADDR`): off when `None`.
    pub ready: Option<SocketAddr>,
    /// `/metrics` (CoreDNS `prometheus ADDR`): off when `None`; queries are counted only then.
    pub metrics: Option<SocketAddr>,
    /// One log line per query on the `srvd::query` target (CoreDNS `log`): off when `None`.
    pub log_queries: Option<QueryLog>,
    /// CoreDNS `errors`: srvd always logs what would make it answer SERVFAIL (an answer it
    /// cannot encode, at `warn`) and etcd trouble (once per outage), so this only records that
    /// the Corefile asked for it; it changes nothing.
    pub log_errors: bool,
    /// DNS over TLS and over HTTPS listeners (`--tls-listen`, `--https-listen`; Corefile
    /// `tls://` and `https://` blocks).
    pub encrypted: Vec<EncryptedListen>,
}

/// One DNS over TLS or HTTPS listener: its address, certificate and the zones it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedListen {
    /// DoT or DoH.
    pub transport: crate::server::tls::Encrypted,
    /// The TCP address.
    pub addr: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The zones it serves (a Corefile block's); `None`: every zone.
    pub zones: Option<Vec<Name>>,
}

/// CoreDNS `log`: which queries get a line, and in which format.
///
/// CoreDNS gives each server block its own `log` rules, and a query meets only the rules of the
/// block that serves it; so the rules are kept per block, with the block's zones, and a query is
/// matched to the block whose zone is the most specific for its name. Within a block the first
/// rule whose name covers the query decides, as in CoreDNS: it logs the query when the response's
/// class is one it names, and no later rule is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLog {
    /// Per server block (with or without `log`), its zones and its rules in order.
    pub servers: Vec<LogServer>,
}

/// One server block's zones and `log` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogServer {
    /// The block's zones (lower-case, absolute).
    pub zones: Vec<Name>,
    /// Its rules, one per name of each `log` line, in order.
    pub rules: Vec<LogRule>,
}

/// One name of a `log` line: `log NAME FORMAT { class CLASSES }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRule {
    /// Queries for this name or below it (lower-case, absolute; `.` for all).
    pub name: Name,
    /// The line's format.
    pub format: LogFormat,
    /// The response classes logged; empty means all (CoreDNS's `class all`, its default).
    pub classes: Vec<ResponseClass>,
}

impl QueryLog {
    /// Every query, in the common format: `log` alone, or `--log-queries`.
    pub fn all() -> Self {
        Self {
            servers: vec![LogServer {
                zones: vec![Name::root()],
                rules: vec![LogRule {
                    name: Name::root(),
                    format: LogFormat::default(),
                    classes: Vec::new(),
                }],
            }],
        }
    }

    /// The rule that decides about a query for `name` (the root for a query without one), if
    /// any.
    pub fn rule_for(&self, name: &Name) -> Option<&LogRule> {
        let server = self
            .servers
            .iter()
            .filter_map(|s| {
                s.zones
                    .iter()
                    .filter(|z| z.zone_of(name))
                    .map(|z| z.num_labels())
                    .max()
                    .map(|labels| (labels, s))
            })
            // The first of the most specific: `max_by_key` keeps the last, so compare by hand.
            .fold(None::<(u8, &LogServer)>, |best, (labels, s)| match best {
                Some((b, _)) if b >= labels => best,
                _ => Some((labels, s)),
            })?
            .1;
        server.rules.iter().find(|r| r.name.zone_of(name))
    }
}

impl LogRule {
    /// Whether the response's class must be known to decide (a `class` other than `all`).
    pub fn filters(&self) -> bool {
        !self.classes.is_empty()
    }

    /// Whether a response of `class` is logged.
    pub fn logs(&self, class: ResponseClass) -> bool {
        self.classes.is_empty() || self.classes.contains(&class)
    }
}

/// `/health` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Where `/health` is served.
    pub addr: SocketAddr,
    /// After SIGTERM or SIGINT, keep answering DNS this long while `/health` fails, so load
    /// balancers stop sending queries before the sockets close (zero: stop at once).
    pub lameduck: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1053))],
            zones: ZoneSource::DefaultDirOrEmbedded,
            zone_files: Vec::new(),
            zones_by_listen: Vec::new(),
            etcd: None,
            tcp: TcpLimits::default(),
            shutdown_grace: Duration::from_secs(5),
            answer_cache_bytes: crate::server::handler::DEFAULT_PREPARED_BYTES,
            health: None,
            ready: None,
            metrics: None,
            log_queries: None,
            log_errors: false,
            encrypted: Vec::new(),
        }
    }
}

impl EtcdConfig {
    /// Settings for `endpoints` with every default: zone `service.local.`, prefix `/skydns`,
    /// lease TTLs clamped to [30 s, 86,400 s], responses up to 16 MiB.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_ETCD_PREFIX.into(),
            zones: vec![Name::from_ascii(DEFAULT_ETCD_ZONE).unwrap_or_else(|_| Name::root())],
            lease_bounds: LeaseBounds::default(),
            max_response_bytes: crate::sync::etcd::DEFAULT_MAX_RESPONSE_BYTES,
            watch_silence: crate::sync::etcd::DEFAULT_WATCH_SILENCE,
            registry_prefixes: Vec::new(),
            registry_zone: None,
            registry_ttl: DEFAULT_REGISTRY_TTL,
            security: EtcdSecurity::default(),
        }
    }
}

/// Normalises a zone argument to a lower-case absolute name.
///
/// # Errors
/// Not a domain name, or `local.` itself (it belongs to mDNS).
pub fn parse_zone(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text)
        .map_err(|e| format!("zone {text:?} is not a domain name: {e}"))?
        .to_lowercase();
    name.set_fqdn(true);
    if name == Name::from_ascii("local.").unwrap_or_default() {
        return Err(
            "refusing to be authoritative for `local.` itself: it belongs to mDNS (RFC 6762); use a zone below it, such as service.local"
                .into(),
        );
    }
    Ok(name)
}

/// Validates an etcd endpoint URL.
///
/// # Errors
/// Anything but `http://host:port` or `https://host:port`.
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        && !rest.is_empty()
    {
        return Ok(text.to_string());
    }
    Err(format!(
        "etcd endpoint {text:?}: expected a URL such as http://127.0.0.1:2379 or https://127.0.0.1:2379"
    ))
}

#[cfg(test)]
mod security_tests {
    use super::{EtcdSecurity, EtcdTls, Secret, read_password_file};

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let security = EtcdSecurity {
            tls: None,
            user: Some(("root".into(), Secret::new("hunter2-secret"))),
        };
        let shown = format!("{security:?} {security:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("root"),
            "{shown}"
        );
    }

    #[test]
    fn a_password_file_loses_one_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        for (text, want) in [
            ("s3cret\n", Some("s3cret")),
            ("s3cret\r\n", Some("s3cret")),
            ("s3cret", Some("s3cret")),
            (" spaced \n", Some(" spaced ")),
            ("\n", None),
            ("", None),
        ] {
            std::fs::write(&file, text).unwrap();
            let got = read_password_file(&file);
            assert_eq!(
                got.as_ref().ok().map(Secret::expose),
                want,
                "{text:?}: {got:?}"
            );
            if want.is_none() {
                assert!(got.unwrap_err().contains("the password is empty"));
            }
        }
        let missing = read_password_file(&dir.path().join("absent")).unwrap_err();
        assert!(missing.contains("absent"), "{missing}");
    }

    #[test]
    fn tls_files_need_https_and_https_alone_means_system_roots() {
        let http = vec!["http://127.0.0.1:2379".to_string()];
        let https = vec!["https://127.0.0.1:2379".to_string()];
        let with_ca = EtcdSecurity {
            tls: Some(EtcdTls {
                ca: Some("ca.pem".into()),
                identity: None,
            }),
            user: None,
        };
        let err = with_ca.clone().settle(&http).unwrap_err();
        assert!(err.contains("http://") && err.contains("https://"), "{err}");
        assert_eq!(with_ca.clone().settle(&https).unwrap(), with_ca);
        assert_eq!(
            EtcdSecurity::default().settle(&https).unwrap().tls,
            Some(EtcdTls::default())
        );
        assert_eq!(EtcdSecurity::default().settle(&http).unwrap().tls, None);
        let mixed = [https[0].clone(), http[0].clone()];
        assert!(EtcdSecurity::default().settle(&mixed).is_err());
    }
}
