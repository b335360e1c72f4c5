//! Query metrics under CoreDNS's names and labels, and srvd's own sync metrics.
//!
//! The query path must not pay for a labelled-counter lookup (a hash of the label values per
//! call). Instead each UDP receive loop owns a [`LoopCounters`]: a flat array of plain counters
//! indexed by (zone, family, type, rcode, ...) computed from small integers, which only that loop
//! writes (a relaxed load and store, no locked instruction). TCP connections of one listener share
//! one array and add atomically (TCP is the rare path). A scrape sums every array into CoreDNS's
//! label sets through a `prometheus-client` collector; nothing is aggregated between scrapes.
//!
//! Durations: reading the clock twice costs about a tenth of a cached answer, so a UDP receive
//! loop times one query in [`DURATION_SAMPLE`] (TCP, and every query when the query log is on,
//! are timed in full). The histogram's
//! buckets, sum and count all come from that sample, so quantiles and the mean are unbiased;
//! only `coredns_dns_request_duration_seconds_count` is smaller than `coredns_dns_requests_total`
//! (a deliberate difference from CoreDNS, which times every query).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::sync::SyncStatus;

/// One query in this many is timed per receive loop (see the module docs).
pub const DURATION_SAMPLE: u32 = 16;

/// Types CoreDNS counts by name (`plugin/metrics/vars/report.go`); every other is `other`.
const MONITORED: [RecordType; 17] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::DNSKEY,
    RecordType::DS,
    RecordType::MX,
    RecordType::NSEC3,
    RecordType::NSEC,
    RecordType::NS,
    RecordType::PTR,
    RecordType::RRSIG,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::IXFR,
    RecordType::AXFR,
    RecordType::ANY,
];
const TYPES: usize = MONITORED.len() + 1;
/// RCODEs 0..=23 have names; anything above is counted in the last slot.
const RCODES: usize = 24;
/// The `plugin` label of `coredns_dns_responses_total`: who wrote the response.
const PLUGINS: [&str; 3] = ["", "file", "etcd"];

/// CoreDNS's `plugin.TimeBuckets`: 0.25 ms doubling 16 times.
const TIME_BUCKETS: usize = 16;
/// CoreDNS's size buckets, in bytes.
const SIZE_BOUNDS: [u64; 14] = [
    0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16_000, 32_000, 48_000, 64_000,
];

// The cells of one zone, in one loop's array: counters, then three histograms (buckets incl.
// +Inf, then the sum).
const REQUESTS: usize = 0; // [family 2][type]
const RESPONSES: usize = REQUESTS + 2 * TYPES; // [rcode][plugin]
const DURATION: usize = RESPONSES + RCODES * PLUGINS.len(); // [bucket + inf], sum in ns
const REQUEST_SIZE: usize = DURATION + TIME_BUCKETS + 2; // [bucket + inf], sum in bytes
const RESPONSE_SIZE: usize = REQUEST_SIZE + SIZE_BOUNDS.len() + 2;
const DO_BIT: usize = RESPONSE_SIZE + SIZE_BOUNDS.len() + 2;
const ZONE_CELLS: usize = DO_BIT + 1;

/// The slot of `qtype` in [`MONITORED`] (`other` last): a jump table on the type code, not a
/// search, since it runs per query.
fn type_slot(qtype: RecordType) -> usize {
    match u16::from(qtype) {
        1 => 0,    // A
        28 => 1,   // AAAA
        5 => 2,    // CNAME
        48 => 3,   // DNSKEY
        43 => 4,   // DS
        15 => 5,   // MX
        50 => 6,   // NSEC3
        47 => 7,   // NSEC
        2 => 8,    // NS
        12 => 9,   // PTR
        46 => 10,  // RRSIG
        6 => 11,   // SOA
        33 => 12,  // SRV
        16 => 13,  // TXT
        251 => 14, // IXFR
        252 => 15, // AXFR
        255 => 16, // ANY
        _ => MONITORED.len(),
    }
}

fn time_bucket(duration: Duration) -> usize {
    let nanos = duration.as_nanos();
    (0..TIME_BUCKETS)
        .find(|i| nanos <= 250_000u128 << i)
        .unwrap_or(TIME_BUCKETS)
        .min(TIME_BUCKETS)
}

fn size_bucket(size: usize) -> usize {
    let size = size as u64;
    SIZE_BOUNDS
        .iter()
        .position(|b| size <= *b)
        .unwrap_or(SIZE_BOUNDS.len())
        .min(SIZE_BOUNDS.len())
}

/// The RCODE's name as CoreDNS writes it (miekg/dns `RcodeToString`).
pub fn rcode_name(rcode: u16) -> std::borrow::Cow<'static, str> {
    const NAMES: [&str; 24] = [
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "YXDOMAIN",
        "YXRRSET",
        "NXRRSET",
        "NOTAUTH",
        "NOTZONE",
        "RCODE11",
        "RCODE12",
        "RCODE13",
        "RCODE14",
        "RCODE15",
        "BADVERS",
        "BADKEY",
        "BADTIME",
        "BADMODE",
        "BADNAME",
        "BADALG",
        "BADTRUNC",
        "BADCOOKIE",
    ];
    match NAMES.get(usize::from(rcode)) {
        Some(name) => (*name).into(),
        None => format!("RCODE{rcode}").into(),
    }
}

/// `udp` or `tcp`: a loop serves one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Datagrams.
    Udp,
    /// Streams.
    Tcp,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// What one answered query adds to the counters.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The zone's metrics slot ([`crate::index::Zone::metrics_slot`]); 0 for `dropped`.
    pub zone: usize,
    /// Whether the client came over IPv6 (CoreDNS's family 2).
    pub ipv6: bool,
    /// The question's type (`None` when no question decoded: counted as `other`).
    pub qtype: Option<RecordType>,
    /// The response code sent.
    pub rcode: u16,
    /// Index into `PLUGINS`: 0 server, 1 file, 2 etcd.
    pub plugin: u8,
    /// The request's DO bit.
    pub dnssec_ok: bool,
    /// Request bytes.
    pub request_size: usize,
    /// Response bytes (0 when nothing was sent).
    pub response_size: usize,
    /// The time taken, when this query was timed.
    pub duration: Option<Duration>,
}

/// The counters of one receive loop (or of one listener's TCP connections).
#[derive(Debug)]
pub struct LoopCounters {
    server: usize,
    proto: Proto,
    /// Only one thread writes: plain load + store. Otherwise (TCP) atomic adds.
    single_writer: bool,
    /// `ZONE_CELLS` per zone slot covered, `dropped` (0) first.
    cells: Box<[AtomicU64]>,
}

impl LoopCounters {
    /// Counts one query; false (nothing counted) when its zone slot is newer than these
    /// counters, which a reload that added a zone causes: the caller takes larger counters
    /// ([`DnsMetrics::counters`]) and records again.
    #[inline]
    #[must_use]
    pub fn record(&self, o: &Observation) -> bool {
        // One bounds check for the zone; the offsets below are in range by construction, which
        // the fixed-size array lets the compiler see (no check per cell).
        let Some(cells) = o
            .zone
            .checked_mul(ZONE_CELLS)
            .and_then(|base| self.cells.get(base..base + ZONE_CELLS))
            .and_then(|cells| <&[AtomicU64; ZONE_CELLS]>::try_from(cells).ok())
        else {
            return false;
        };
        let add = |cell: &AtomicU64, n: u64| {
            if self.single_writer {
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            } else {
                cell.fetch_add(n, Ordering::Relaxed);
            }
        };
        let ty = o.qtype.map_or(MONITORED.len(), type_slot).min(TYPES - 1);
        add(&cells[REQUESTS + usize::from(o.ipv6) * TYPES + ty], 1);
        let rcode = usize::from(o.rcode).min(RCODES - 1);
        let plugin = usize::from(o.plugin).min(PLUGINS.len() - 1);
        add(&cells[RESPONSES + rcode * PLUGINS.len() + plugin], 1);
        if let Some(d) = o.duration {
            add(&cells[DURATION + time_bucket(d)], 1);
            add(
                &cells[DURATION + TIME_BUCKETS + 1],
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            );
        }
        add(&cells[REQUEST_SIZE + size_bucket(o.request_size)], 1);
        add(
            &cells[REQUEST_SIZE + SIZE_BOUNDS.len() + 1],
            o.request_size as u64,
        );
        add(&cells[RESPONSE_SIZE + size_bucket(o.response_size)], 1);
        add(
            &cells[RESPONSE_SIZE + SIZE_BOUNDS.len() + 1],
            o.response_size as u64,
        );
        if o.dnssec_ok {
            add(&cells[DO_BIT], 1);
        }
        true
    }
}

/// The query metrics of the process, kept across reloads: label values only ever added (a
/// counter that vanished or went back would break `rate()` on a dashboard), and every loop's
/// counters.
#[derive(Debug, Default)]
pub struct DnsMetrics {
    labels: Mutex<LabelTables>,
    loops: Mutex<Loops>,
}

#[derive(Debug, Default)]
struct LabelTables {
    /// `dns://IP:PORT` per server slot.
    servers: Vec<String>,
    /// Zone origins; zone slot `s` is `zones[s - 1]` (slot 0 is `dropped`).
    zones: Vec<String>,
    /// `coredns_plugin_enabled` now: (server slot, zone slot, plugins).
    enabled: Vec<(usize, usize, Vec<&'static str>)>,
}

#[derive(Debug, Default)]
struct Loops {
    live: Vec<Arc<LoopCounters>>,
    /// Sums of counters no loop writes any more (a reload replaced or stopped their loop), per
    /// (server, proto).
    retired: Vec<((usize, Proto), Vec<u64>)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn add_into(totals: &mut Vec<((usize, Proto), Vec<u64>)>, key: (usize, Proto), cells: &[u64]) {
    let i = match totals.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            totals.push((key, Vec::new()));
            totals.len() - 1
        }
    };
    let sums = &mut totals[i].1;
    if sums.len() < cells.len() {
        sums.resize(cells.len(), 0);
    }
    for (sum, cell) in sums.iter_mut().zip(cells) {
        *sum = sum.wrapping_add(*cell);
    }
}

impl DnsMetrics {
    /// No servers, no zones yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot of the `server` label `label` (`dns://127.0.0.1:53`), added when new.
    pub fn server_slot(&self, label: &str) -> usize {
        let mut labels = lock(&self.labels);
        match labels.servers.iter().position(|s| s == label) {
            Some(i) => i,
            None => {
                labels.servers.push(label.to_string());
                labels.servers.len() - 1
            }
        }
    }

    /// The slot of the zone `origin` (the `zone` label), added when new; never 0.
    pub fn zone_slot(&self, origin: &str) -> usize {
        let mut labels = lock(&self.labels);
        match labels.zones.iter().position(|z| z == origin) {
            Some(i) => i + 1,
            None => {
                labels.zones.push(origin.to_string());
                labels.zones.len()
            }
        }
    }

    /// What `coredns_plugin_enabled` reports: per (server slot, zone slot), the plugins that
    /// answer there now.
    pub fn set_enabled(&self, enabled: Vec<(usize, usize, Vec<&'static str>)>) {
        lock(&self.labels).enabled = enabled;
    }

    /// Counters for a new receive loop on server slot `server`, covering every zone known now;
    /// `shared` when several tasks write them (a listener's TCP connections).
    pub fn counters(&self, server: usize, proto: Proto, shared: bool) -> Arc<LoopCounters> {
        self.counters_covering(server, proto, shared, 0)
    }

    /// [`DnsMetrics::counters`] covering at least zone slot `zone` too.
    pub fn counters_covering(
        &self,
        server: usize,
        proto: Proto,
        shared: bool,
        zone: usize,
    ) -> Arc<LoopCounters> {
        let zones = (lock(&self.labels).zones.len() + 1).max(zone + 1);
        let counters = Arc::new(LoopCounters {
            server,
            proto,
            single_writer: !shared,
            cells: (0..zones * ZONE_CELLS).map(|_| AtomicU64::new(0)).collect(),
        });
        lock(&self.loops).live.push(counters.clone());
        counters
    }

    /// Every loop's counters summed per (server, proto), retired ones included. Counters that
    /// only this list still holds belong to loops that ended: they are folded into the retired
    /// sums here, under the same lock, so no scrape sees them twice or not at all.
    fn totals(&self) -> Vec<((usize, Proto), Vec<u64>)> {
        let mut loops = lock(&self.loops);
        let Loops { live, retired } = &mut *loops;
        live.retain(|l| {
            if Arc::strong_count(l) > 1 {
                return true;
            }
            let cells: Vec<u64> = l.cells.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            add_into(retired, (l.server, l.proto), &cells);
            false
        });
        let mut totals = retired.clone();
        for l in live.iter() {
            let cells: Vec<u64> = l.cells.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            add_into(&mut totals, (l.server, l.proto), &cells);
        }
        totals.sort_by_key(|((s, p), _)| (*s, *p == Proto::Tcp));
        totals
    }
}

/// srvd's own view of the etcd sync, beside [`SyncStatus`]: last contact and propagation delay.
#[derive(Debug)]
pub struct SyncMetrics {
    started: Instant,
    /// Milliseconds after `started` of the last answer from etcd (0: none yet).
    last_contact_ms: AtomicU64,
    /// Propagation delay buckets ([`PROPAGATION_BOUNDS`] + Inf), sum in ns.
    propagation: [AtomicU64; PROPAGATION_BOUNDS.len() + 2],
}

/// Seconds from a watch event's arrival to the published snapshot that serves it.
const PROPAGATION_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for SyncMetrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_contact_ms: AtomicU64::new(0),
            propagation: Default::default(),
        }
    }
}

impl SyncMetrics {
    /// etcd answered (a listing, a watch batch, a progress reply).
    pub fn contact(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.last_contact_ms.store(ms, Ordering::Relaxed);
    }

    /// A batch of watch events that arrived at `arrived` is now published.
    pub fn propagated(&self, arrived: Instant) {
        let delay = arrived.elapsed();
        let seconds = delay.as_secs_f64();
        let bucket = PROPAGATION_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(PROPAGATION_BOUNDS.len());
        self.propagation[bucket].fetch_add(1, Ordering::Relaxed);
        self.propagation[PROPAGATION_BOUNDS.len() + 1].fetch_add(
            u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn seconds_since_contact(&self) -> Option<f64> {
        let ms = self.last_contact_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(ms))
                .as_secs_f64()
        })
    }
}

/// Everything `/metrics` shows: the collector registered with `prometheus-client`.
#[derive(Debug)]
pub struct Collected {
    /// Query counters.
    pub dns: Arc<DnsMetrics>,
    /// The etcd backend now (its sync status is shown when srvd mirrors etcd).
    pub backend: super::SharedBackend,
    /// The sync's timing, kept across reloads.
    pub sync: Arc<SyncMetrics>,
}

/// The registry `/metrics` encodes.
pub fn registry(collected: Collected) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collected));
    registry
}

/// Encodes `registry` in the Prometheus text format.
///
/// # Errors
/// Only a formatting error from the encoder.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[Series],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, sum, count, buckets) in series {
        family
            .encode_family(labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                *sum, *count, buckets, None,
            )?;
    }
    Ok(())
}

/// Buckets as the encoder takes them: per-bucket counts (it accumulates them itself), with
/// +Inf last, and the total.
fn per_bucket(counts: &[u64], bounds: impl Iterator<Item = f64>) -> (u64, Vec<(f64, u64)>) {
    let buckets: Vec<(f64, u64)> = bounds
        .chain(std::iter::once(f64::INFINITY))
        .zip(counts.iter().copied())
        .collect();
    (buckets.iter().map(|(_, n)| n).sum(), buckets)
}

type Labels = Vec<(&'static str, String)>;
/// One histogram series: labels, sum, count, cumulative buckets.
type Series = (Labels, f64, u64, Vec<(f64, u64)>);

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let dns = &*self.dns;
        let totals = dns.totals();
        let tables = lock(&dns.labels);
        let zones = tables.zones.len() + 1;
        let labels = |server: usize, zone: usize| -> Labels {
            vec![
                (
                    "server",
                    tables.servers.get(server).cloned().unwrap_or_default(),
                ),
                (
                    "zone",
                    zone.checked_sub(1)
                        .and_then(|z| tables.zones.get(z))
                        .map_or_else(|| "dropped".to_string(), Clone::clone),
                ),
                ("view", String::new()),
            ]
        };

        let mut requests = Vec::new();
        let mut responses: Vec<(Labels, u64)> = Vec::new();
        let mut do_requests: Vec<(Labels, u64)> = Vec::new();
        let mut durations = Vec::new();
        let mut request_sizes = Vec::new();
        let mut response_sizes = Vec::new();
        for ((server, proto), cells) in &totals {
            for zone in 0..zones {
                let base = zone * ZONE_CELLS;
                let cell = |i: usize| cells.get(base + i).copied().unwrap_or(0);
                for family in 0..2 {
                    for ty in 0..TYPES {
                        let n = cell(REQUESTS + family * TYPES + ty);
                        if n == 0 {
                            continue;
                        }
                        let mut l = labels(*server, zone);
                        l.push(("proto", proto.label().into()));
                        l.push(("family", (family + 1).to_string()));
                        l.push((
                            "type",
                            MONITORED
                                .get(ty)
                                .map_or_else(|| "other".to_string(), ToString::to_string),
                        ));
                        requests.push((l, n));
                    }
                }
                for rcode in 0..RCODES {
                    for (p, plugin) in PLUGINS.iter().enumerate() {
                        let n = cell(RESPONSES + rcode * PLUGINS.len() + p);
                        if n == 0 {
                            continue;
                        }
                        let mut l = labels(*server, zone);
                        l.push(("rcode", rcode_name(rcode as u16).into_owned()));
                        l.push(("plugin", (*plugin).to_string()));
                        // UDP and TCP loops of one server add up in the same series.
                        match responses.iter_mut().find(|(k, _)| *k == l) {
                            Some((_, total)) => *total += n,
                            None => responses.push((l, n)),
                        }
                    }
                }
                let dos = cell(DO_BIT);
                if dos > 0 {
                    let l = labels(*server, zone);
                    match do_requests.iter_mut().find(|(k, _)| *k == l) {
                        Some((_, total)) => *total += dos,
                        None => do_requests.push((l, dos)),
                    }
                }
                let time: Vec<u64> = (0..=TIME_BUCKETS).map(|i| cell(DURATION + i)).collect();
                let (count, buckets) = per_bucket(
                    &time,
                    (0..TIME_BUCKETS).map(|i| 0.00025 * f64::from(1u32 << i)),
                );
                if count > 0 {
                    let sum = cell(DURATION + TIME_BUCKETS + 1) as f64 / 1e9;
                    let l = labels(*server, zone);
                    // Summed over UDP and TCP: the duration histogram has no proto label.
                    match durations
                        .iter_mut()
                        .find(|(k, _, _, _): &&mut Series| *k == l)
                    {
                        Some((_, s, c, b)) => {
                            *s += sum;
                            *c += count;
                            for (mine, new) in b.iter_mut().zip(&buckets) {
                                mine.1 += new.1;
                            }
                        }
                        None => durations.push((l, sum, count, buckets)),
                    }
                }
                for (offset, out) in [
                    (REQUEST_SIZE, &mut request_sizes),
                    (RESPONSE_SIZE, &mut response_sizes),
                ] {
                    let counts: Vec<u64> =
                        (0..=SIZE_BOUNDS.len()).map(|i| cell(offset + i)).collect();
                    let (count, buckets) =
                        per_bucket(&counts, SIZE_BOUNDS.iter().map(|b| *b as f64));
                    if count > 0 {
                        let mut l = labels(*server, zone);
                        l.push(("proto", proto.label().into()));
                        let sum = cell(offset + SIZE_BOUNDS.len() + 1) as f64;
                        out.push((l, sum, count, buckets));
                    }
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            None,
            MetricType::Counter,
        )?;
        for (l, n) in &requests {
            ConstCounter::new(*n).encode(family.encode_family(l)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "coredns_dns_responses",
            "Counter of response status codes.",
            None,
            MetricType::Counter,
        )?;
        for (l, n) in &responses {
            ConstCounter::new(*n).encode(family.encode_family(l)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            None,
            MetricType::Counter,
        )?;
        for (l, n) in &do_requests {
            ConstCounter::new(*n).encode(family.encode_family(l)?)?;
        }
        histogram(
            &mut encoder,
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took (UDP: one query in 16 per receive loop).",
            &durations,
        )?;
        histogram(
            &mut encoder,
            "coredns_dns_request_size_bytes",
            "Size of the request in bytes.",
            &request_sizes,
        )?;
        histogram(
            &mut encoder,
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            &response_sizes,
        )?;
        // srvd recovers from no panic in the query path (a panic ends the process), so this
        // stays 0; it exists so CoreDNS alerts on it find the series.
        ConstCounter::new(0u64).encode(encoder.encode_descriptor(
            "coredns_panics",
            "A metrics that counts the number of panics.",
            None,
            MetricType::Counter,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            None,
            MetricType::Gauge,
        )?;
        for (server, zone, plugins) in &tables.enabled {
            for plugin in plugins {
                let mut l = labels(*server, *zone);
                l.push(("name", (*plugin).to_string()));
                ConstGauge::new(1i64).encode(family.encode_family(&l)?)?;
            }
        }
        let build: Labels = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "revision",
                option_env!("SRVD_REVISION").unwrap_or("").to_string(),
            ),
            // CoreDNS reports its Go version; srvd is not written in Go.
            ("goversion", String::new()),
        ];
        ConstGauge::new(1i64).encode(
            encoder
                .encode_descriptor(
                    "coredns_build_info",
                    "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_family(&build)?,
        )?;

        drop(tables);
        if let Some(status) = super::read_backend(&self.backend).sync {
            let status = status.borrow().clone();
            encode_sync(&mut encoder, &status, &self.sync)?;
        }
        Ok(())
    }
}

fn encode_sync(
    encoder: &mut DescriptorEncoder,
    status: &SyncStatus,
    sync: &SyncMetrics,
) -> std::fmt::Result {
    let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64| {
        ConstGauge::new(value).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?)
    };
    let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
        ConstCounter::new(value).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?)
    };
    gauge(
        encoder,
        "srvd_etcd_mirror_revision",
        "The etcd revision the published mirror reflects (0 before the first full read).",
        status.revision.unwrap_or(0),
    )?;
    let mut family = encoder.encode_descriptor(
        "srvd_etcd_keys_mirrored",
        "etcd keys in the published mirror, by layout.",
        None,
        MetricType::Gauge,
    )?;
    for (layout, keys) in [("skydns", status.keys), ("registry", status.registry_keys)] {
        ConstGauge::new(i64::try_from(keys).unwrap_or(i64::MAX))
            .encode(family.encode_family(&[("layout", layout)])?)?;
    }
    counter(
        encoder,
        "srvd_etcd_keys_skipped",
        "etcd keys skipped because their value cannot be served (process-wide).",
        crate::sync::SKIPPED_KEYS.load(Ordering::Relaxed),
    )?;
    counter(
        encoder,
        "srvd_etcd_full_reads",
        "Full reads of the etcd prefixes (1 after start, one more per compaction recovery).",
        status.full_reads,
    )?;
    if let Some(seconds) = sync.seconds_since_contact() {
        ConstGauge::new(seconds).encode(encoder.encode_descriptor(
            "srvd_etcd_seconds_since_contact",
            "Seconds since etcd last answered (absent before the first answer).",
            None,
            MetricType::Gauge,
        )?)?;
    }
    let counts: Vec<u64> = sync.propagation[..=PROPAGATION_BOUNDS.len()]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let (count, buckets) = per_bucket(&counts, PROPAGATION_BOUNDS.iter().copied());
    let sum = sync.propagation[PROPAGATION_BOUNDS.len() + 1].load(Ordering::Relaxed) as f64 / 1e9;
    histogram(
        encoder,
        "srvd_etcd_propagation_seconds",
        "From a watch batch's arrival to the published snapshot that serves it.",
        &[(Vec::new(), sum, count, buckets)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_slots_follow_the_monitored_list() {
        for (i, qtype) in MONITORED.iter().enumerate() {
            assert_eq!(type_slot(*qtype), i, "{qtype}");
        }
        assert_eq!(type_slot(RecordType::CAA), MONITORED.len());
    }

    fn observation(zone: usize) -> Observation {
        Observation {
            zone,
            ipv6: false,
            qtype: Some(RecordType::A),
            rcode: 0,
            plugin: 1,
            dnssec_ok: false,
            request_size: 40,
            response_size: 60,
            duration: None,
        }
    }

    fn requests(totals: &[((usize, Proto), Vec<u64>)], zone: usize) -> u64 {
        totals
            .iter()
            .map(|(_, cells)| {
                cells
                    .get(zone * ZONE_CELLS + REQUESTS)
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    #[test]
    fn counts_survive_the_loop_that_made_them_and_a_zone_added_later() {
        let metrics = DnsMetrics::new();
        let server = metrics.server_slot("dns://127.0.0.1:53");
        let first = metrics.zone_slot("example.test.");
        let counters = metrics.counters(server, Proto::Udp, false);
        assert!(counters.record(&observation(first)));
        assert!(counters.record(&observation(first)));
        // A reload adds a zone: these counters do not cover it, larger ones do.
        let added = metrics.zone_slot("other.test.");
        assert!(!counters.record(&observation(added)));
        let grown = metrics.counters_covering(server, Proto::Udp, false, added);
        assert!(grown.record(&observation(added)));
        // The loop ends: its counts are folded, not lost, and not counted twice.
        drop(counters);
        let once = metrics.totals();
        let twice = metrics.totals();
        assert_eq!(requests(&once, first), 2);
        assert_eq!(requests(&twice, first), 2);
        assert_eq!(requests(&twice, added), 1);
        assert_eq!(
            lock(&metrics.loops).live.len(),
            1,
            "only the grown counters are live"
        );
    }

    #[test]
    fn durations_land_in_corednss_buckets() {
        assert_eq!(time_bucket(Duration::from_micros(100)), 0);
        assert_eq!(time_bucket(Duration::from_micros(250)), 0);
        assert_eq!(time_bucket(Duration::from_micros(251)), 1);
        assert_eq!(time_bucket(Duration::from_millis(8192)), TIME_BUCKETS - 1);
        assert_eq!(time_bucket(Duration::from_secs(9)), TIME_BUCKETS);
    }
}
