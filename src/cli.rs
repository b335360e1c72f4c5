//! The command line: `srvd serve`, `srvd resolve`, `srvd register`. Parsing only; `daemon`,
//! `client` and `register` do the work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{
    Config, DEFAULT_ETCD_PREFIX, DEFAULT_ETCD_ZONE, DEFAULT_LISTEN, DEFAULT_REGISTRY_TTL,
    EtcdConfig, HealthConfig, ZoneSource, check_prefixes, duration, parse_endpoint, parse_zone,
};
use crate::index::leases::LeaseBounds;
use crate::server::TcpLimits;

/// srvd: an authoritative DNS-SD server.
#[derive(Debug, Parser)]
#[command(name = "srvd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS over UDP and TCP from zone files and, with --etcd, from an etcd mirror.
    Serve(Box<ServeArgs>),
    /// Resolve a service name (e.g. _http._tcp.web.service.local) into SRV records in the order
    /// a client would try them: `PRIORITY WEIGHT PORT TARGET ADDR[,ADDR...]` per line.
    Resolve(ResolveArgs),
    /// Browse a DNS-SD service type (e.g. _http._tcp.web.service.local): one line per instance,
    /// `NAME TARGET:PORT ADDR[,ADDR...] "TXT"...`; or, with --types, a domain's service types.
    Browse(BrowseArgs),
    /// Keep one service instance registered in etcd under a lease while its health check
    /// passes; deregister it on SIGTERM/SIGINT.
    Register(Box<RegisterArgs>),
    /// Check a Corefile (and the zone files it names) without contacting etcd or binding
    /// anything: exit 0 when srvd would start with it, else 1 with every error found.
    Check(CheckArgs),
}

/// `srvd check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Corefile to check.
    #[arg(long, value_name = "FILE")]
    pub conf: PathBuf,
}

/// The resolver options `srvd resolve` and `srvd browse` share.
#[derive(Debug, Args)]
pub struct ResolverArgs {
    /// Ask this DNS server (e.g. 127.0.0.1:1053) instead of /etc/resolv.conf.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<SocketAddr>,
    /// Seconds to wait for each answer (two attempts are made).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub timeout: u64,
}

impl ResolverArgs {
    /// A resolver for these options: the given server or /etc/resolv.conf, two attempts.
    fn build(&self) -> Result<crate::client::SrvResolver, crate::client::LookupError> {
        let mut builder = crate::client::SrvResolver::builder()
            .timeout(std::time::Duration::from_secs(self.timeout))
            .attempts(2);
        if let Some(addr) = self.server {
            builder = builder.server(addr);
        }
        builder.build()
    }
}

/// `srvd resolve` options.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The name to look up: `_service._proto.domain` or any name holding SRV records.
    pub name: String,
    /// Print one JSON array of {priority, weight, port, target, addrs} objects.
    #[arg(long)]
    pub json: bool,
    /// Where and how long to ask.
    #[command(flatten)]
    pub resolver: ResolverArgs,
}

/// The smallest `--etcd-max-response-bytes` accepted: below this, ordinary keys would not fit.
const MIN_RESPONSE_BYTES: usize = 1024 * 1024;

/// Exit status of `srvd resolve` when the service does not exist, has no SRV records, or is
/// decidedly not available.
pub const EXIT_NO_SUCH_SERVICE: u8 = 2;
/// Exit status of `srvd resolve` when the resolver cannot be reached.
pub const EXIT_RESOLVER_UNREACHABLE: u8 = 3;

/// A failure with the exit status it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ExitError {
    /// The error to print.
    pub error: anyhow::Error,
    /// The process exit status.
    pub code: u8,
}

/// `srvd serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Take the configuration from this Corefile (CoreDNS's format) instead of the flags below
    /// (the TCP limits, --answer-cache-mib, --etcd-max-response-bytes and --etcd-watch-silence
    /// still apply).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "listen", "zones_dir", "etcd", "zones", "etcd_prefix", "min_lease_ttl", "max_lease_ttl",
        "registry", "registry_zone", "registry_ttl",
        "etcd_ca", "etcd_cert", "etcd_key", "etcd_user", "etcd_password_file",
    ])]
    pub conf: Option<PathBuf>,
    /// Address to serve UDP and TCP on; repeat for several (IPv6: `[::1]:1053`).
    #[arg(long = "listen", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,
    /// Directory of `<zone>.zone` files [default: `zones`, or the embedded example zone when
    /// `zones` does not exist].
    #[arg(long, value_name = "DIR")]
    pub zones_dir: Option<PathBuf>,
    /// Close a TCP connection after this many seconds without a query.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tcp_idle_timeout: u64,
    /// Most TCP connections served at once; at the bound, the connection idle the longest (at
    /// least a second) is closed to make room, else the new one.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub tcp_max_connections: usize,
    /// Mirror etcd at these client URLs (comma-separated, or repeat the option) and answer the
    /// --zone zones from it, as CoreDNS's etcd plugin does.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// TLS and user for a locked-down etcd.
    #[command(flatten)]
    pub etcd_access: EtcdAccessArgs,
    /// A zone answered from etcd; repeat for several (reverse zones such as
    /// 10.in-addr.arpa. too) [default: service.local.; needs --etcd].
    #[arg(long = "zone", value_name = "ZONE")]
    pub zones: Vec<String>,
    /// The etcd key prefix (CoreDNS `path`).
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_ETCD_PREFIX)]
    pub etcd_prefix: String,
    /// Lower bound on the TTL of records whose keys have a lease (seconds, or 90s, 5m, 2h30m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub min_lease_ttl: String,
    /// Upper bound on the TTL of records whose keys have a lease.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub max_lease_ttl: String,
    /// Largest etcd response srvd accepts, in bytes. Must exceed etcd's --max-request-bytes
    /// (the largest key and transaction); larger listings are read in smaller pages, and a
    /// larger watch response (a long catch-up) is replaced by a full re-read.
    #[arg(long, value_name = "BYTES", default_value_t = crate::sync::etcd::DEFAULT_MAX_RESPONSE_BYTES)]
    pub etcd_max_response_bytes: usize,
    /// How long a watch may deliver nothing, not even etcd's periodic progress notification,
    /// before srvd re-reads everything: etcd sends an idle watch one every one or two
    /// --experimental-watch-progress-notify-interval (10m by default), so keep this above twice
    /// that interval.
    #[arg(long, value_name = "DURATION", default_value = "21m", value_parser = parse_watch_silence)]
    pub etcd_watch_silence: Duration,
    /// Also serve the service registry under this etcd prefix (`PREFIX/<service>/<instance>`,
    /// e.g. /services) as DNS-SD names; repeat for several [needs --etcd].
    #[arg(long = "registry", value_name = "PREFIX")]
    pub registry: Vec<String>,
    /// The zone the registry is answered in [default: the first --zone, or service.local.].
    #[arg(long, value_name = "ZONE")]
    pub registry_zone: Option<String>,
    /// TTL of registry records, never more than the remaining lease time of the key.
    #[arg(long, value_name = "DURATION")]
    pub registry_ttl: Option<String>,
    /// Serve `GET /health` on this address (200 `OK` while serving; CoreDNS `health ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub health: Option<SocketAddr>,
    /// After SIGTERM, keep answering this long while /health fails (CoreDNS `lameduck`)
    /// [needs --health].
    #[arg(long, value_name = "DURATION")]
    pub health_lameduck: Option<String>,
    /// Serve `GET /ready` on this address (200 once every zone is loaded and etcd has been read
    /// in full; CoreDNS `ready ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub ready: Option<SocketAddr>,
    /// Serve Prometheus `GET /metrics` on this address (CoreDNS `prometheus ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log one line per query, in CoreDNS's `log` format, on the `srvd::query` target.
    #[arg(long)]
    pub log_queries: bool,
    /// Memory for prepared responses, per listen address, in MiB: a question asked again is
    /// answered by a look-up and a copy until a key its answer read changes. 0 answers every
    /// query from scratch.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub answer_cache_mib: usize,
    /// Serve DNS over TLS (RFC 7858, ALPN `dot`) on this address; repeat for several [needs
    /// --tls-cert and --tls-key].
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// Serve DNS over HTTPS (RFC 8484: GET and POST at /dns-query, HTTP/2 and HTTP/1.1) on this
    /// address; repeat for several [needs --tls-cert and --tls-key].
    #[arg(long, value_name = "ADDR")]
    pub https_listen: Vec<SocketAddr>,
    /// PEM certificate chain (leaf first) for --tls-listen and --https-listen.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// `config` (from a Corefile) with the flags that still apply beside `--conf`.
    fn with_flags(&self, mut config: Config) -> Config {
        if let Some(etcd) = &mut config.etcd {
            etcd.max_response_bytes = self.etcd_max_response_bytes;
            etcd.watch_silence = self.etcd_watch_silence;
        }
        config.tcp = TcpLimits {
            idle_timeout: Duration::from_secs(self.tcp_idle_timeout),
            max_connections: self.tcp_max_connections,
            ..TcpLimits::default()
        };
        config.answer_cache_bytes = self.answer_cache_bytes();
        config
    }

    fn answer_cache_bytes(&self) -> usize {
        self.answer_cache_mib.saturating_mul(1 << 20)
    }

    /// The validated configuration.
    ///
    /// # Errors
    /// A limit of zero.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        anyhow::ensure!(
            self.tcp_max_connections > 0,
            "--tcp-max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.tcp_idle_timeout > 0,
            "--tcp-idle-timeout must be at least 1 second"
        );
        if let Some(path) = &self.conf {
            anyhow::ensure!(
                self.tls_listen.is_empty()
                    && self.https_listen.is_empty()
                    && self.tls_cert.is_none()
                    && self.tls_key.is_none(),
                "with --conf, DNS over TLS and HTTPS come from the Corefile's tls:// and https:// blocks, not from --tls-listen, --https-listen, --tls-cert or --tls-key"
            );
            let (config, _, _) = corefile_config(path)?;
            return Ok(self.with_flags(config));
        }
        let encrypted = self.encrypted()?;
        let etcd = self.etcd_config()?;
        anyhow::ensure!(
            self.health_lameduck.is_none() || self.health.is_some(),
            "--health-lameduck delays shutdown while /health fails: it needs --health"
        );
        let health = match self.health {
            None => None,
            Some(addr) => Some(HealthConfig {
                addr,
                lameduck: match &self.health_lameduck {
                    None => Duration::ZERO,
                    Some(text) => duration::parse(text)
                        .map_err(|e| anyhow::anyhow!("--health-lameduck {e}"))?,
                },
            }),
        };
        Ok(Config {
            etcd,
            health,
            ready: self.ready,
            metrics: self.metrics,
            log_queries: self.log_queries.then(crate::config::QueryLog::all),
            listen: self.listen.clone(),
            zones: match &self.zones_dir {
                Some(dir) => ZoneSource::Dir(dir.clone()),
                None => ZoneSource::DefaultDirOrEmbedded,
            },
            tcp: TcpLimits {
                idle_timeout: Duration::from_secs(self.tcp_idle_timeout),
                max_connections: self.tcp_max_connections,
                ..TcpLimits::default()
            },
            answer_cache_bytes: self.answer_cache_bytes(),
            encrypted,
            ..Config::default()
        })
    }

    /// The DNS over TLS and HTTPS listeners; the files are read at start.
    fn encrypted(&self) -> anyhow::Result<Vec<crate::config::EncryptedListen>> {
        use crate::server::tls::Encrypted;
        if self.tls_listen.is_empty() && self.https_listen.is_empty() {
            anyhow::ensure!(
                self.tls_cert.is_none() && self.tls_key.is_none(),
                "--tls-cert and --tls-key are for --tls-listen or --https-listen: give one of them"
            );
            return Ok(Vec::new());
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            anyhow::bail!(
                "--tls-listen and --https-listen need a certificate: give --tls-cert FILE and --tls-key FILE (PEM)"
            );
        };
        let listeners = self.tls_listen.iter().map(|a| (Encrypted::Tls, a));
        let listeners = listeners.chain(self.https_listen.iter().map(|a| (Encrypted::Https, a)));
        Ok(listeners
            .map(|(transport, addr)| crate::config::EncryptedListen {
                transport,
                addr: *addr,
                cert: cert.clone(),
                key: key.clone(),
                zones: None,
            })
            .collect())
    }
}

impl ServeArgs {
    fn etcd_config(&self) -> anyhow::Result<Option<EtcdConfig>> {
        if self.etcd.is_empty() {
            anyhow::ensure!(
                self.zones.is_empty(),
                "--zone names a zone served from etcd: it needs --etcd"
            );
            anyhow::ensure!(
                self.registry.is_empty(),
                "--registry serves a registry kept in etcd: it needs --etcd"
            );
            anyhow::ensure!(
                self.registry_zone.is_none() && self.registry_ttl.is_none(),
                "--registry-zone and --registry-ttl need --etcd and --registry"
            );
            let a = &self.etcd_access;
            anyhow::ensure!(
                a.etcd_ca.is_none()
                    && a.etcd_cert.is_none()
                    && a.etcd_key.is_none()
                    && a.etcd_user.is_none()
                    && a.etcd_password_file.is_none(),
                "--etcd-ca, --etcd-cert, --etcd-key, --etcd-user and --etcd-password-file need --etcd"
            );
            return Ok(None);
        }
        anyhow::ensure!(
            !self.registry.is_empty()
                || (self.registry_zone.is_none() && self.registry_ttl.is_none()),
            "--registry-zone and --registry-ttl need --registry PREFIX"
        );
        let endpoints = parse_endpoints(&self.etcd)?;
        let zone_args: Vec<&str> = if self.zones.is_empty() {
            vec![DEFAULT_ETCD_ZONE]
        } else {
            self.zones.iter().map(String::as_str).collect()
        };
        let mut zones = Vec::new();
        for zone in zone_args {
            let zone = parse_zone(zone).map_err(|e| anyhow::anyhow!("--zone: {e}"))?;
            if !zones.contains(&zone) {
                zones.push(zone);
            }
        }
        let secs = |flag: &str, text: &str| -> anyhow::Result<u32> {
            let d = duration::parse(text).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
            Ok(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        };
        let lease_bounds = LeaseBounds {
            min_secs: secs("--min-lease-ttl", &self.min_lease_ttl)?,
            max_secs: secs("--max-lease-ttl", &self.max_lease_ttl)?,
        };
        anyhow::ensure!(
            lease_bounds.min_secs <= lease_bounds.max_secs,
            "--min-lease-ttl ({}s) is above --max-lease-ttl ({}s)",
            lease_bounds.min_secs,
            lease_bounds.max_secs
        );
        anyhow::ensure!(
            self.etcd_max_response_bytes >= MIN_RESPONSE_BYTES,
            "--etcd-max-response-bytes must be at least {MIN_RESPONSE_BYTES} (1 MiB): one etcd \
             key or transaction can be up to etcd's --max-request-bytes (1.5 MiB by default)"
        );
        let registry_zone = match &self.registry_zone {
            Some(zone) => {
                Some(parse_zone(zone).map_err(|e| anyhow::anyhow!("--registry-zone: {e}"))?)
            }
            None => None,
        };
        let registry_ttl = match &self.registry_ttl {
            Some(text) => {
                let ttl = secs("--registry-ttl", text)?;
                // RFC 2181 §8: a TTL is at most 2^31 - 1 seconds.
                anyhow::ensure!(
                    ttl <= i32::MAX as u32,
                    "--registry-ttl {text:?}: at most 2147483647 seconds (RFC 2181)"
                );
                ttl
            }
            None => DEFAULT_REGISTRY_TTL,
        };
        for prefix in &self.registry {
            anyhow::ensure!(
                prefix.starts_with('/') && prefix.split('/').any(|s| !s.is_empty()),
                "--registry {prefix:?}: expected an etcd key prefix such as /services"
            );
        }
        let config = EtcdConfig {
            max_response_bytes: self.etcd_max_response_bytes,
            watch_silence: self.etcd_watch_silence,
            endpoints: endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            zones,
            lease_bounds,
            registry_prefixes: self.registry.clone(),
            registry_zone,
            registry_ttl,
            security: self.etcd_access.security(&endpoints)?,
        };
        check_prefixes(&config).map_err(anyhow::Error::msg)?;
        Ok(Some(config))
    }
}

/// Runs the parsed command line to completion.
///
/// # Errors
/// Start-up failures (a zone file, a busy address), with context.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Resolve(args) => resolve(&args),
        Command::Browse(args) => browse(&args),
        Command::Check(args) => check(&args),
        Command::Serve(args) => {
            // The bytes the configuration is parsed from: a reload compares against these, so an
            // edit made while srvd starts is not mistaken for the running configuration.
            let parsed = args.conf.as_ref().and_then(|path| std::fs::read(path).ok());
            let config = args.to_config()?;
            let mut poll = None;
            if let Some(path) = &args.conf {
                let (_, notes, reload) = corefile_config(path)?;
                for note in notes {
                    tracing::info!("{note}");
                }
                poll = reload;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(serve(config, &args, poll, parsed))
        }
        Command::Register(args) => register(&args),
    }
}

/// The configuration a Corefile gives, and the notes to log once at start.
///
/// # Errors
/// Every error in the Corefile, one per line, each naming file, line and directive.
type Reload = Option<(Duration, Duration)>;

fn corefile_config(path: &std::path::Path) -> anyhow::Result<(Config, Vec<String>, Reload)> {
    let corefile = crate::config::corefile::load(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\nsrvd: "))
    })?;
    let notes = corefile.notes.clone();
    let reload = corefile.reload;
    Ok((corefile.into_config(), notes, reload))
}

/// `srvd check`: the Corefile and the zone files it names, validated; nothing bound or contacted.
fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let (config, notes, _) = corefile_config(&args.conf)?;
    for spec in &config.zone_files {
        crate::zonefile::load_file_for(&spec.path, &spec.origin)?;
    }
    let mut zones: Vec<String> = config
        .zone_files
        .iter()
        .map(|f| format!("{} (file {})", f.origin, f.path.display()))
        .collect();
    if let Some(etcd) = &config.etcd {
        zones.extend(etcd.etcd_zones().iter().map(|z| format!("{z} (etcd)")));
    }
    // The certificates are read as `serve` reads them: a bad one fails here, naming the file.
    for encrypted in &config.encrypted {
        crate::server::tls::server_config(encrypted.transport, &encrypted.cert, &encrypted.key)?;
    }
    let listen: Vec<String> = config
        .listen
        .iter()
        .map(ToString::to_string)
        .chain(
            config
                .encrypted
                .iter()
                .map(|e| format!("{}://{}", e.transport.scheme(), e.addr)),
        )
        .collect();
    println!(
        "{}: valid; serves {} on {}",
        args.conf.display(),
        zones.join(", "),
        listen.join(", ")
    );
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

async fn serve(
    config: Config,
    args: &ServeArgs,
    poll: Reload,
    parsed: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    // Install the handlers before anything is served: a SIGTERM that arrives just after the
    // "serving" line must stop srvd gracefully, not kill it with the default action.
    let signals = Signals::install()?;
    let mut running = crate::daemon::start(&config).await?;
    match &args.conf {
        Some(path) => reload_until_stopped(&mut running, signals, path, args, poll, parsed).await?,
        None => signals.wait(&mut running).await,
    }
    // A reload may have changed them: the configuration served last decides.
    let (health, grace) = (running.config().health, running.config().shutdown_grace);
    if let Some(health) = health.filter(|h| !h.lameduck.is_zero()) {
        tracing::info!(lameduck = ?health.lameduck, "lameduck: still answering, /health fails");
        running.enter_lameduck();
        tokio::time::sleep(health.lameduck).await;
    }
    tracing::info!("shutting down");
    running.shutdown();
    if tokio::time::timeout(grace, running.wait()).await.is_err() {
        tracing::warn!(?grace, "in-flight TCP answers did not finish in time");
    }
    Ok(())
}

/// Serves a Corefile until SIGINT or SIGTERM, switching to it again whenever it changes (with
/// `reload`: checked every INTERVAL ± JITTER, as CoreDNS does) or on SIGHUP or SIGUSR1. An
/// invalid Corefile keeps the running configuration and is logged once per content.
async fn reload_until_stopped(
    running: &mut crate::daemon::Running,
    mut signals: Signals,
    path: &std::path::Path,
    args: &ServeArgs,
    poll: Reload,
    parsed: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut last = parsed;
    let mut reported: Option<Vec<u8>> = None;
    let mut rng = {
        use rand::SeedableRng;
        rand::rngs::SmallRng::from_os_rng()
    };
    loop {
        let wait = poll.map(|(interval, jitter)| {
            let spread = jitter.as_secs_f64() * rand::Rng::random_range(&mut rng, -1.0..=1.0);
            Duration::from_secs_f64((interval.as_secs_f64() + spread).max(1.0))
        });
        let forced = tokio::select! {
            _ = signals.interrupt.recv() => return Ok(()),
            _ = signals.terminate.recv() => return Ok(()),
            _ = signals.hangup.recv() => true,
            _ = signals.user1.recv() => true,
            () = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            } => false,
        };
        let text = std::fs::read(path).ok();
        if !forced && text == last {
            continue;
        }
        last.clone_from(&text);
        match corefile_config(path) {
            Err(error) => {
                if reported != text {
                    tracing::warn!(%error, "reload: the Corefile is not valid; still serving the previous configuration");
                    reported = text;
                }
            }
            Ok((config, notes, _)) => match running.reload(&args.with_flags(config)).await {
                Ok(()) => {
                    reported = None;
                    for note in notes {
                        tracing::info!("{note}");
                    }
                    tracing::info!(corefile = %path.display(), "reloaded");
                }
                Err(error) => {
                    if reported != text {
                        tracing::warn!(%error, "reload: still serving the previous configuration");
                        reported = text;
                    }
                }
            },
        }
    }
}

/// SIGINT and SIGTERM (stop), SIGHUP and SIGUSR1 (reload), listened for from the moment they
/// are installed: before anything is served, so that a signal sent just after the "serving"
/// line never meets the default action (which ends the process).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
            user1: signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?,
        })
    }

    /// Waits for SIGINT, SIGTERM or SIGHUP (a closed terminal ends `srvd register` as before
    /// the handlers existed, but through its graceful path).
    async fn stopped(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }

    /// Serves the flags' configuration until SIGINT or SIGTERM; SIGHUP or SIGUSR1 reads its
    /// zone files again (as a Corefile reload does).
    async fn wait(mut self, running: &mut crate::daemon::Running) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                _ = self.hangup.recv() => {}
                _ = self.user1.recv() => {}
            }
            let config = running.config().clone();
            match running.reload(&config).await {
                Ok(()) => tracing::info!("reloaded"),
                Err(error) => {
                    tracing::warn!(%error, "reload: still serving the previous configuration");
                }
            }
        }
    }
}

fn resolve(args: &ResolveArgs) -> anyhow::Result<()> {
    use crate::client::LookupError;
    use std::io::Write;

    let resolver = args.resolver.build();
    let lookup = resolver.and_then(|r| r.lookup_srv_blocking("", "", &args.name));
    let lookup = match lookup {
        Ok(lookup) => lookup,
        Err(error) => {
            let code = match &error {
                LookupError::NoSuchName { .. }
                | LookupError::NoRecords { .. }
                | LookupError::ServiceUnavailable { .. } => EXIT_NO_SUCH_SERVICE,
                LookupError::Unreachable { .. } => EXIT_RESOLVER_UNREACHABLE,
                _ => 1,
            };
            return Err(ExitError {
                error: error.into(),
                code,
            }
            .into());
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let items: Vec<serde_json::Value> = lookup.targets.iter().map(target_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
    } else {
        for t in &lookup.targets {
            let addrs = if t.addrs.is_empty() {
                "-".to_string()
            } else {
                t.addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            writeln!(
                out,
                "{} {} {} {} {}",
                t.priority, t.weight, t.port, t.target, addrs
            )?;
        }
    }
    Ok(())
}

/// `srvd browse` options.
#[derive(Debug, Args)]
pub struct BrowseArgs {
    /// The service type to browse (`_service._proto.domain`), or with --types the domain.
    pub name: String,
    /// List the domain's service types (RFC 6763 §9) instead of a service type's instances.
    #[arg(long)]
    pub types: bool,
    /// Print JSON: an array of {name, label, targets, txt} objects (with --types: of names).
    #[arg(long)]
    pub json: bool,
    /// Where and how long to ask.
    #[command(flatten)]
    pub resolver: ResolverArgs,
}

fn browse(args: &BrowseArgs) -> anyhow::Result<()> {
    use crate::client::LookupError;
    use std::io::Write;

    // The same statuses as `srvd resolve`: scripts handle both alike.
    let exit = |error: LookupError| -> anyhow::Error {
        let code = match &error {
            LookupError::NoSuchName { .. } => EXIT_NO_SUCH_SERVICE,
            LookupError::Unreachable { .. } => EXIT_RESOLVER_UNREACHABLE,
            _ => 1,
        };
        ExitError {
            error: error.into(),
            code,
        }
        .into()
    };
    let none_found = |what: String| -> anyhow::Error {
        ExitError {
            error: anyhow::anyhow!("{what}"),
            code: EXIT_NO_SUCH_SERVICE,
        }
        .into()
    };
    let resolver = args.resolver.build().map_err(exit)?;
    let mut out = std::io::stdout().lock();
    if args.types {
        let types = resolver.service_types_blocking(&args.name).map_err(exit)?;
        if types.is_empty() {
            return Err(none_found(format!("{} lists no service types", args.name)));
        }
        if args.json {
            writeln!(out, "{}", serde_json::json!(types))?;
        } else {
            for name in types {
                writeln!(out, "{name}")?;
            }
        }
        return Ok(());
    }
    let instances = resolver.browse_blocking(&args.name, "").map_err(exit)?;
    if instances.is_empty() {
        return Err(none_found(format!("no instances of {}", args.name)));
    }
    if args.json {
        let items: Vec<serde_json::Value> = instances.iter().map(instance_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
    } else {
        for instance in &instances {
            writeln!(out, "{}", instance_line(instance))?;
        }
    }
    Ok(())
}

/// `NAME TARGET:PORT[,...] ADDR[,...] "TXT"...`: `-` for no addresses; each attribute quoted as
/// dig quotes TXT strings (`\"`, `\\`, `\DDD` for bytes outside printable ASCII), so a line
/// splits on unquoted spaces.
fn instance_line(instance: &crate::client::ServiceInstance) -> String {
    let join = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    let targets = join(
        instance
            .targets
            .iter()
            .map(|t| format!("{}:{}", t.target, t.port))
            .collect(),
    );
    let addrs = join(
        instance
            .targets
            .iter()
            .flat_map(|t| &t.addrs)
            .map(ToString::to_string)
            .collect(),
    );
    let mut line = format!("{} {targets} {addrs}", instance.name);
    for (key, value) in instance.txt.iter() {
        let mut string = key.as_bytes().to_vec();
        if let Some(value) = value {
            string.push(b'=');
            string.extend_from_slice(value);
        }
        line.push_str(" \"");
        for &b in &string {
            match b {
                b'"' | b'\\' => {
                    line.push('\\');
                    line.push(char::from(b));
                }
                0x20..=0x7e => line.push(char::from(b)),
                _ => line.push_str(&format!("\\{b:03}")),
            }
        }
        line.push('"');
    }
    line
}

/// One SRV target as JSON, as `srvd resolve --json` and `srvd browse --json` print it.
fn target_json(t: &crate::client::SrvTarget) -> serde_json::Value {
    serde_json::json!({
        "priority": t.priority,
        "weight": t.weight,
        "port": t.port,
        "target": t.target,
        "addrs": t.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// One instance as JSON; TXT values as text (`null` for a boolean attribute; bytes that are not
/// UTF-8 replaced by U+FFFD).
fn instance_json(instance: &crate::client::ServiceInstance) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = instance.targets.iter().map(target_json).collect();
    let txt: serde_json::Map<String, serde_json::Value> = instance
        .txt
        .iter()
        .map(|(key, value)| {
            let value = value.map_or(serde_json::Value::Null, |v| {
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
            });
            (key.to_string(), value)
        })
        .collect();
    serde_json::json!({
        "name": instance.name,
        "label": instance.label,
        "targets": targets,
        "txt": txt,
    })
}

/// `srvd register` options. Numbers and durations are read as text and checked in
/// [`RegisterArgs::to_registration`], so every bad value gives one line naming the flag.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// etcd client URLs (comma-separated, or repeat the option).
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        required = true
    )]
    pub etcd: Vec<String>,
    /// TLS and user for a locked-down etcd.
    #[command(flatten)]
    pub etcd_access: EtcdAccessArgs,
    /// Service name (`web`): letters, digits and hyphens.
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Transport protocol: tcp or udp.
    #[arg(long, value_name = "PROTO", default_value = "tcp")]
    pub proto: String,
    /// Instance id (`web-01`): one DNS label, no `/` or `.`.
    #[arg(long, value_name = "ID")]
    pub instance: String,
    /// The instance's IP address.
    #[arg(long, value_name = "IP")]
    pub addr: String,
    /// The instance's port (1-65535).
    #[arg(long, value_name = "PORT")]
    pub port: String,
    /// SRV priority (0-65535, lower is tried first).
    #[arg(long, value_name = "N", default_value = "10")]
    pub priority: String,
    /// SRV weight (0-65535).
    #[arg(long, value_name = "N", default_value = "1")]
    pub weight: String,
    /// Metadata `key=value` (becomes TXT); repeat for several.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// A tag (DNS-SD subtype); repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Lease TTL: the key leaves this long after srvd register dies (whole seconds, at least 1).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub ttl: String,
    /// Health check: http://HOST:PORT/PATH, tcp://HOST:PORT or 'exec:CMD ARGS' [default: none,
    /// always passing].
    #[arg(long, value_name = "CHECK")]
    pub check: Option<String>,
    /// Time between health checks.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub interval: String,
    /// Bound on one health check.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub timeout: String,
    /// Consecutive critical checks before the key is deleted.
    #[arg(long, value_name = "N", default_value = "3")]
    pub deregister_after: String,
    /// Key prefix [default: /services, or /skydns with --layout skydns].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Value layout: registry (`PREFIX/<service>/<instance>`) or skydns (needs --zone).
    #[arg(long, value_name = "LAYOUT", default_value = "registry")]
    pub layout: String,
    /// The zone of the SkyDNS name `<instance>._<service>._<proto>.ZONE` (--layout skydns).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
}

impl RegisterArgs {
    /// The validated registration.
    ///
    /// # Errors
    /// One line naming the flag and what it expects.
    pub fn to_registration(&self) -> anyhow::Result<crate::register::Registration> {
        use crate::register::{Instance, Layout, Registration, check};

        let endpoints = parse_endpoints(&self.etcd)?;
        let number = |flag: &str, text: &str, min: u32, max: u32| -> anyhow::Result<u32> {
            text.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| anyhow::anyhow!("{flag} {text:?}: expected a number {min}-{max}"))
        };
        let u16_of = |flag: &str, text: &str, min: u32| -> anyhow::Result<u16> {
            Ok(u16::try_from(number(flag, text, min, 65_535)?).unwrap_or(u16::MAX))
        };
        let span = |flag: &str, text: &str| -> anyhow::Result<Duration> {
            let d = duration::parse(text).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
            anyhow::ensure!(!d.is_zero(), "{flag} {text:?}: must be more than zero");
            Ok(d)
        };
        let service = self.service.trim();
        anyhow::ensure!(
            !service.is_empty()
                && service.len() <= 62
                && service
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !service.starts_with('-')
                && !service.ends_with('-'),
            "--service {service:?}: expected letters, digits and inner hyphens, 1-62 characters"
        );
        let proto = self.proto.trim().to_ascii_lowercase();
        anyhow::ensure!(
            proto == "tcp" || proto == "udp",
            "--proto {:?}: expected tcp or udp",
            self.proto
        );
        let id = &self.instance;
        anyhow::ensure!(
            !id.is_empty()
                && id.len() <= 63
                && !id.contains(['/', '.'])
                && !id.chars().any(char::is_control),
            "--instance {id:?}: expected one DNS label (1-63 bytes, no '/' or '.')"
        );
        let addr: std::net::IpAddr = self.addr.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "--addr {:?}: expected an IP address such as 10.0.1.10",
                self.addr
            )
        })?;
        let mut meta: Vec<(String, String)> = Vec::new();
        for pair in &self.meta {
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--meta {pair:?}: expected key=value"))?;
            anyhow::ensure!(
                pair.len() <= 255,
                "--meta {key:?}: key=value is over 255 bytes (one TXT string)"
            );
            anyhow::ensure!(
                !meta.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)),
                "--meta {key:?} is given twice (TXT keys are case-insensitive)"
            );
            meta.push((key.to_string(), value.to_string()));
        }
        let layout = match (self.layout.as_str(), &self.zone) {
            ("registry", None) => Layout::Registry {
                prefix: self.prefix.clone().unwrap_or_else(|| "/services".into()),
            },
            ("registry", Some(_)) => anyhow::bail!("--zone is only for --layout skydns"),
            ("skydns", Some(zone)) => Layout::SkyDns {
                zone: parse_zone(zone).map_err(anyhow::Error::msg)?,
                prefix: self
                    .prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.into()),
            },
            ("skydns", None) => anyhow::bail!("--layout skydns needs --zone"),
            (other, _) => anyhow::bail!("--layout {other:?}: expected registry or skydns"),
        };
        let instance = Instance {
            service: service.to_string(),
            proto,
            id: id.clone(),
            addr,
            port: u16_of("--port", &self.port, 1)?,
            priority: u16_of("--priority", &self.priority, 0)?,
            weight: u16_of("--weight", &self.weight, 0)?,
            tags: self.tags.clone(),
            meta,
        };
        let key = instance.key(&layout).map_err(anyhow::Error::msg)?;
        let ttl = span("--ttl", &self.ttl)?;
        // etcd's MaxLeaseTTL: a longer lease would be refused on every grant, forever.
        anyhow::ensure!(
            ttl <= Duration::from_secs(9_000_000_000),
            "--ttl {:?}: etcd grants leases of at most 9000000000s",
            self.ttl
        );
        let security = self.etcd_access.security(&endpoints)?;
        Ok(Registration {
            security,
            endpoints,
            key,
            instance,
            layout,
            // etcd leases are whole seconds: round up.
            ttl_secs: i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
                .unwrap_or(i64::MAX),
            check: self
                .check
                .as_deref()
                .map(check::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            interval: span("--interval", &self.interval)?,
            timeout: span("--timeout", &self.timeout)?,
            deregister_after: number("--deregister-after", &self.deregister_after, 1, 1_000_000)?,
        })
    }
}

fn register(args: &RegisterArgs) -> anyhow::Result<()> {
    let registration = args.to_registration()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let signals = Signals::install()?;
        let etcd = crate::register::connect(&registration).await.map_err(|e| {
            let endpoints = registration.endpoints.join(",");
            match &e {
                crate::register::etcd::EtcdError::Etcd(error)
                    if let Some(refusal) = crate::sync::access::refusal(error) =>
                {
                    anyhow::anyhow!("etcd at {endpoints}: {}: {e}", refusal.describe())
                }
                crate::register::etcd::EtcdError::File(_) => anyhow::anyhow!("{e}"),
                _ => anyhow::anyhow!("etcd at {endpoints} is unreachable: {e}"),
            }
        })?;
        tracing::info!(key = %registration.key, "srvd register running");
        crate::register::run(registration, etcd, signals.stopped()).await;
        Ok(())
    })
}

/// How `srvd serve` and `srvd register` reach an etcd that encrypts and authenticates clients.
#[derive(Debug, Args, Default)]
pub struct EtcdAccessArgs {
    /// CA certificate (PEM) that signed etcd's certificate [default: the system's CAs, for
    /// https:// endpoints].
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) shown to an etcd run with --client-cert-auth; needs --etcd-key.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs --etcd-cert.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, for an etcd with auth enabled; needs --etcd-password-file.
    #[arg(long, value_name = "USER")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (a trailing newline is not part of it): a file,
    /// not an argument, so `ps` never shows it.
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdAccessArgs {
    /// The checked settings for `endpoints` (the password file is read here).
    ///
    /// # Errors
    /// A certificate without its key (or the reverse), a user without a password file (or the
    /// reverse), an unreadable or empty password file, TLS files with http:// endpoints.
    pub fn security(&self, endpoints: &[String]) -> anyhow::Result<crate::config::EtcdSecurity> {
        use crate::config::{EtcdSecurity, EtcdTls, read_password_file};
        let identity = match (&self.etcd_cert, &self.etcd_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("--etcd-cert needs --etcd-key (the certificate's private key)")
            }
            (None, Some(_)) => {
                anyhow::bail!("--etcd-key needs --etcd-cert (the client certificate)")
            }
        };
        let user = match (&self.etcd_user, &self.etcd_password_file) {
            (Some(user), Some(file)) => {
                anyhow::ensure!(!user.is_empty(), "--etcd-user: the user name is empty");
                Some((
                    user.clone(),
                    read_password_file(file).map_err(anyhow::Error::msg)?,
                ))
            }
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("--etcd-user needs --etcd-password-file"),
            (None, Some(_)) => anyhow::bail!("--etcd-password-file needs --etcd-user"),
        };
        let tls = (self.etcd_ca.is_some() || identity.is_some()).then(|| EtcdTls {
            ca: self.etcd_ca.clone(),
            identity,
        });
        EtcdSecurity { tls, user }
            .settle(endpoints)
            .map_err(anyhow::Error::msg)
    }
}

/// `--etcd-watch-silence`: a duration of at least a second (etcd's progress notification
/// interval cannot be set below one).
fn parse_watch_silence(text: &str) -> Result<Duration, String> {
    let silence = duration::parse(text)?;
    if silence < Duration::from_secs(1) {
        return Err(format!("{text:?} is under a second"));
    }
    Ok(silence)
}

/// Every `--etcd` URL, checked as `srvd serve` and `srvd register` both take them.
fn parse_endpoints(urls: &[String]) -> anyhow::Result<Vec<String>> {
    urls.iter()
        .map(|url| parse_endpoint(url))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)
}
