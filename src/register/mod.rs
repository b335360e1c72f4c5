//! `srvd register`: the sidecar that keeps one service instance in etcd while it is healthy.
//!
//! One loop owns everything that changes: the health state (fed by the probe task in
//! [`check`]), the lease and the stored value. Each turn it computes the value the key *should*
//! hold (or none) and reconciles etcd with it, so every path (a new health state, a lost lease,
//! etcd back after an outage) ends in the same few lines of code. etcd trouble only delays the
//! next attempt (bounded backoff); it never ends the loop. The lease cadence is the Go client's:
//! a keep-alive every TTL/3, and a lease whose refresh failed for longer than its TTL is
//! presumed gone and re-granted: etcd may have expired it meanwhile, and a keep-alive cannot revive it.

pub mod check;
pub mod etcd;

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::check::{Check, Health};
use self::etcd::{Etcd, EtcdError, Keeper};

/// Where and in which form the instance is written.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `PREFIX/<service>/<instance>` = the service-instance JSON Go services write.
    Registry {
        /// e.g. `/services`.
        prefix: String,
    },
    /// The SkyDNS key of `<instance>._<service>._<proto>.ZONE` under `prefix` (e.g. `/skydns`).
    SkyDns {
        /// The zone (lower-case, fully qualified).
        zone: Name,
        /// e.g. `/skydns`.
        prefix: String,
    },
}

/// The instance as given on the command line.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Service name (`web`), an RFC 6335 service name.
    pub service: String,
    /// `tcp` or `udp`.
    pub proto: String,
    /// Instance id (`web-01`), one DNS label.
    pub id: String,
    /// The address clients connect to.
    pub addr: IpAddr,
    /// The port clients connect to (1..=65535).
    pub port: u16,
    /// SRV priority.
    pub priority: u16,
    /// SRV weight.
    pub weight: u16,
    /// `--tag`s, in order.
    pub tags: Vec<String>,
    /// `--meta` pairs, in order, keys unique.
    pub meta: Vec<(String, String)>,
}

/// The metadata pair added while the check reports a warning.
pub const WARNING_META: (&str, &str) = ("health", "warning");

impl Instance {
    /// The etcd key for this instance in `layout`.
    ///
    /// # Errors
    /// A name the SkyDNS layout cannot spell (a label over 63 bytes, a name over 255).
    pub fn key(&self, layout: &Layout) -> Result<String, String> {
        match layout {
            Layout::Registry { prefix } => Ok(format!(
                "{}/{}/{}",
                prefix.trim_end_matches('/'),
                self.service,
                self.id
            )),
            Layout::SkyDns { zone, prefix } => {
                let service = format!("_{}", self.service);
                let proto = format!("_{}", self.proto);
                let name =
                    Name::from_labels([self.id.as_bytes(), service.as_bytes(), proto.as_bytes()])
                        .and_then(|n| n.append_domain(zone))
                        .map_err(|e| {
                            format!("{}._{}._{}.{zone}: {e}", self.id, self.service, self.proto)
                        })?;
                let root = crate::backend::skydns::key::root_path(prefix);
                Ok(crate::backend::skydns::key::path(&name, &root))
            }
        }
    }

    /// The JSON value stored while the instance is registered; `warning` adds
    /// [`WARNING_META`] to the metadata (replacing a `--meta health=...`).
    pub fn value(&self, layout: &Layout, warning: bool) -> String {
        let mut meta: Vec<(&str, &str)> = self
            .meta
            .iter()
            .filter(|(k, _)| !(warning && k.eq_ignore_ascii_case(WARNING_META.0)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if warning {
            meta.push(WARNING_META);
        }
        let value = match layout {
            Layout::Registry { .. } => {
                let metadata: Map<String, Value> = meta
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
                    .collect();
                json!({
                    "Addr": self.addr.to_string(),
                    "Port": self.port,
                    "Priority": self.priority,
                    "Weight": self.weight,
                    "Proto": self.proto,
                    "Tags": self.tags,
                    "Metadata": metadata,
                })
            }
            Layout::SkyDns { .. } => {
                let mut value = json!({
                    "host": self.addr.to_string(),
                    "port": self.port,
                    "priority": self.priority,
                    "weight": self.weight,
                });
                // SkyDNS has one TXT string per key: the pairs, space-separated.
                if !meta.is_empty()
                    && let Some(object) = value.as_object_mut()
                {
                    let text: Vec<String> = meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    object.insert("text".into(), Value::from(text.join(" ")));
                }
                value
            }
        };
        value.to_string()
    }
}

/// Everything `srvd register` needs, validated.
#[derive(Debug, Clone)]
pub struct Registration {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// TLS and user for a locked-down etcd.
    pub security: crate::config::EtcdSecurity,
    /// The instance.
    pub instance: Instance,
    /// Its layout.
    pub layout: Layout,
    /// The key (from [`Instance::key`]).
    pub key: String,
    /// Lease TTL in whole seconds (at least 1).
    pub ttl_secs: i64,
    /// The health check, if any (none: always passing).
    pub check: Option<Check>,
    /// Time between checks.
    pub interval: Duration,
    /// Bound on one check.
    pub timeout: Duration,
    /// Consecutive critical results before the key is removed (at least 1).
    pub deregister_after: u32,
}

/// Shortest wait before retrying etcd after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between etcd retries: short enough to be back within seconds after an outage.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Connects to etcd and proves it answers; run this before anything else so an unreachable etcd
/// at start is an error, not a retry loop.
///
/// # Errors
/// etcd unreachable (within [`etcd::CALL_TIMEOUT`]) or a bad endpoint.
pub async fn connect(registration: &Registration) -> Result<Etcd, EtcdError> {
    Etcd::connect(&registration.endpoints, &registration.security).await
}

/// Runs until `shutdown` resolves, then deletes the key and revokes the lease.
pub async fn run(registration: Registration, etcd: Etcd, shutdown: impl Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(1);
    let prober = registration.check.clone().map(|check| {
        let (interval, timeout) = (registration.interval, registration.timeout);
        tokio::spawn(probe(check, interval, timeout, tx))
    });
    let mut sidecar = Sidecar::new(registration, etcd);
    sidecar.serve(rx, shutdown).await;
    if let Some(prober) = prober {
        prober.abort();
    }
    sidecar.deregister_for_shutdown().await;
}

/// Runs the check every `interval` (the first at once) and sends each result.
async fn probe(check: Check, interval: Duration, timeout: Duration, tx: mpsc::Sender<Health>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let health = check::run(&check, timeout).await;
        if tx.send(health).await.is_err() {
            return;
        }
    }
}

/// The lease the key is attached to.
struct Lease {
    id: i64,
    /// TTL etcd granted, in seconds.
    ttl: Duration,
    keeper: Option<Keeper>,
    /// When etcd last confirmed the lease alive.
    confirmed: Instant,
    next_refresh: Instant,
    /// The value last written with this lease (`None`: not written yet).
    stored: Option<String>,
}

/// What the probes say, reduced to what the key should hold: whether the instance is listed and
/// whether it carries `health=warning`. Kept apart from etcd so the rules are tested alone.
#[derive(Debug)]
pub struct Standing {
    /// The last probe result, for logging each change of state once.
    last: Option<Health>,
    /// Whether the stored metadata carries `health=warning`.
    pub warning: bool,
    /// Critical results in a row.
    pub criticals: u32,
    /// Whether the instance should be in etcd now.
    pub listed: bool,
    deregister_after: u32,
}

impl Standing {
    /// The state before any probe: without a check the instance is passing from the start; with
    /// one it is listed only after a result that is not critical.
    pub fn new(has_check: bool, deregister_after: u32) -> Self {
        Self {
            last: None,
            warning: false,
            criticals: 0,
            listed: !has_check,
            deregister_after,
        }
    }

    /// Takes one probe result: logs a state change once and decides whether to be listed.
    pub fn observe(&mut self, health: Health, key: &str) {
        let changed = self
            .last
            .as_ref()
            .is_none_or(|h| std::mem::discriminant(h) != std::mem::discriminant(&health));
        match &health {
            Health::Passing => {
                if changed {
                    tracing::info!(key = %key, "health check passing");
                }
                self.criticals = 0;
                self.warning = false;
                self.listed = true;
            }
            Health::Warning(why) => {
                if changed {
                    tracing::info!(key = %key, %why, "health check warning: staying registered with health=warning");
                }
                self.criticals = 0;
                self.warning = true;
                self.listed = true;
            }
            Health::Critical(why) => {
                self.criticals = self.criticals.saturating_add(1);
                if changed {
                    tracing::info!(key = %key, %why, "health check critical");
                }
                if self.listed && self.criticals >= self.deregister_after {
                    tracing::info!(
                        key = %key,
                        criticals = self.criticals,
                        "deregistering after consecutive critical checks"
                    );
                    self.listed = false;
                }
            }
        }
        self.last = Some(health);
    }
}

struct Sidecar {
    reg: Registration,
    etcd: Etcd,
    standing: Standing,
    lease: Option<Lease>,
    etcd_down_since: Option<Instant>,
    backoff: Duration,
    next_attempt: Instant,
}

impl Sidecar {
    fn new(reg: Registration, etcd: Etcd) -> Self {
        let standing = Standing::new(reg.check.is_some(), reg.deregister_after);
        Self {
            reg,
            etcd,
            standing,
            lease: None,
            etcd_down_since: None,
            backoff: MIN_BACKOFF,
            next_attempt: Instant::now(),
        }
    }

    fn desired(&self) -> Option<String> {
        self.standing.listed.then(|| {
            self.reg
                .instance
                .value(&self.reg.layout, self.standing.warning)
        })
    }

    async fn serve(
        &mut self,
        mut results: mpsc::Receiver<Health>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut probing = self.reg.check.is_some();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                health = results.recv(), if probing => match health {
                    Some(health) => {
                        self.standing.observe(health, &self.reg.key);
                        self.next_attempt = Instant::now();
                    }
                    None => probing = false,
                },
                () = tokio::time::sleep_until(self.next_attempt) => {}
            }
            if Instant::now() >= self.next_attempt {
                // A signal must not wait for an etcd call that is timing out; a half-done attempt
                // leaves at most a lease nobody refreshes, which expires with its key.
                tokio::select! {
                    () = &mut shutdown => return,
                    () = self.attempt() => {}
                }
            }
        }
    }

    /// One reconciliation with etcd; schedules the next.
    async fn attempt(&mut self) {
        match self.reconcile().await {
            Ok(next) => {
                if let Some(since) = self.etcd_down_since.take() {
                    tracing::info!(key = %self.reg.key, after = ?since.elapsed(), "etcd requests succeed again");
                }
                self.backoff = MIN_BACKOFF;
                self.next_attempt = next;
            }
            Err(error) => {
                if self.etcd_down_since.is_none() {
                    tracing::warn!(key = %self.reg.key, %error, "etcd request failed; retrying");
                    self.etcd_down_since = Some(Instant::now());
                }
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Brings etcd in line with [`Self::desired`] and keeps the lease alive; returns when to come
    /// back.
    async fn reconcile(&mut self) -> Result<Instant, EtcdError> {
        let Some(value) = self.desired() else {
            if let Some(lease) = self.lease.take() {
                // Whatever happens, the lease is no longer refreshed: at worst the key leaves
                // when it expires.
                self.etcd.delete_and_revoke(&self.reg.key, lease.id).await?;
                tracing::info!(key = %self.reg.key, "deregistered");
            }
            return Ok(Instant::now() + self.reg.interval.max(MIN_BACKOFF));
        };
        let now = Instant::now();
        if let Some(lease) = &self.lease
            && now.duration_since(lease.confirmed) > lease.ttl
        {
            tracing::info!(key = %self.reg.key, lease = lease.id, "lease presumed expired; registering anew");
            self.lease = None;
        }
        let lease = match &mut self.lease {
            Some(lease) => lease,
            None => {
                let (id, ttl) = self.etcd.grant(self.reg.ttl_secs).await?;
                let ttl = Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1));
                self.lease.insert(Lease {
                    id,
                    ttl,
                    keeper: None,
                    confirmed: Instant::now(),
                    next_refresh: Instant::now() + ttl / 3,
                    stored: None,
                })
            }
        };
        if lease.stored.as_ref() != Some(&value) {
            match self.etcd.put(&self.reg.key, &value, lease.id).await {
                Ok(()) => {
                    if lease.stored.is_none() {
                        tracing::info!(key = %self.reg.key, lease = lease.id, ttl = ?lease.ttl, "registered");
                    }
                    lease.stored = Some(value);
                }
                Err(e) if e.is_lease_gone() => {
                    tracing::info!(key = %self.reg.key, lease = lease.id, "lease lost; registering anew");
                    self.lease = None;
                    return Ok(Instant::now());
                }
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= lease.next_refresh {
            let refreshed = match &mut lease.keeper {
                Some(keeper) => keeper.refresh().await,
                None => match self.etcd.keeper(lease.id).await {
                    Ok(keeper) => {
                        lease.keeper = Some(keeper);
                        Ok(Some(1))
                    }
                    Err(e) => Err(e),
                },
            };
            match refreshed {
                Ok(Some(_)) => {
                    lease.confirmed = Instant::now();
                    lease.next_refresh = lease.confirmed + lease.ttl / 3;
                }
                Ok(None) => {
                    tracing::info!(key = %self.reg.key, lease = lease.id, "lease lost; registering anew");
                    self.lease = None;
                    return Ok(Instant::now());
                }
                Err(e) if e.is_lease_gone() => {
                    tracing::info!(key = %self.reg.key, lease = lease.id, "lease lost; registering anew");
                    self.lease = None;
                    return Ok(Instant::now());
                }
                Err(e) => {
                    // A broken stream stays broken: open a new one on the next attempt.
                    lease.keeper = None;
                    return Err(e);
                }
            }
        }
        Ok(lease.next_refresh)
    }

    /// On SIGTERM/SIGINT: remove the key now rather than at lease expiry (bounded: each call
    /// has its own timeout).
    async fn deregister_for_shutdown(&mut self) {
        match self.lease.take() {
            Some(lease) => match self.etcd.delete_and_revoke(&self.reg.key, lease.id).await {
                Ok(()) => tracing::info!(key = %self.reg.key, "deregistered on shutdown"),
                Err(error) => tracing::warn!(
                    key = %self.reg.key,
                    %error,
                    "could not deregister on shutdown; the key leaves when its lease expires"
                ),
            },
            None => tracing::info!(key = %self.reg.key, "shutting down (not registered)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Instance {
        Instance {
            service: "web".into(),
            proto: "tcp".into(),
            id: "Web-01".into(),
            addr: "10.0.1.10".parse().unwrap(),
            port: 8080,
            priority: 10,
            weight: 50,
            tags: vec!["canary".into()],
            meta: vec![("version".into(), "2".into())],
        }
    }

    #[test]
    fn standing_follows_the_three_states() {
        let critical = || Health::Critical("refused".into());
        let mut s = Standing::new(true, 3);
        assert!(!s.listed, "not listed before a check passes");
        s.observe(critical(), "k");
        assert!(!s.listed);
        s.observe(Health::Passing, "k");
        assert!(s.listed && !s.warning);
        s.observe(critical(), "k");
        s.observe(critical(), "k");
        assert!(s.listed, "two criticals of three");
        s.observe(Health::Warning("HTTP status 500".into()), "k");
        assert!(
            s.listed && s.warning && s.criticals == 0,
            "a warning resets the count"
        );
        for _ in 0..2 {
            s.observe(critical(), "k");
        }
        assert!(s.listed);
        s.observe(critical(), "k");
        assert!(!s.listed, "deregistered at the third in a row");
        s.observe(Health::Passing, "k");
        assert!(s.listed && !s.warning, "back, without the warning");
        assert!(Standing::new(false, 3).listed, "no check: listed at once");
    }

    #[test]
    fn registry_key_and_value() {
        let layout = Layout::Registry {
            prefix: "/services/".into(),
        };
        assert_eq!(web().key(&layout).unwrap(), "/services/web/Web-01");
        assert_eq!(
            web().value(&layout, false),
            r#"{"Addr":"10.0.1.10","Port":8080,"Priority":10,"Weight":50,"Proto":"tcp","Tags":["canary"],"Metadata":{"version":"2"}}"#
        );
        assert!(
            web()
                .value(&layout, true)
                .contains(r#""Metadata":{"version":"2","health":"warning"}"#)
        );
    }

    #[test]
    fn skydns_key_and_value() {
        let layout = Layout::SkyDns {
            zone: Name::from_ascii("svc.example.").unwrap(),
            prefix: "/skydns".into(),
        };
        assert_eq!(
            web().key(&layout).unwrap(),
            "/skydns/example/svc/_tcp/_web/web-01"
        );
        assert_eq!(
            web().value(&layout, true),
            r#"{"host":"10.0.1.10","port":8080,"priority":10,"weight":50,"text":"version=2 health=warning"}"#
        );
    }
}
