//! SkyDNS A keys written to a 3-member etcd cluster and srvd replicas (the binary) compared with
//! it: the cluster, replica and storm tests share one definition of a name's key, value and
//! right answer, so a replica that differs from etcd is a finding and not a test's own drift.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::dns::{a_of, query, udp_raw};
use super::etcd::EtcdCluster;
use super::eventually;
use super::http::sum_samples;
use super::srvd::{SrvdProcess, spawn_binary_logging};

/// The zone every name lives in.
pub const ZONE: &str = "skydns.test.";
/// The etcd key of the zone's apex (`/skydns/` + the reversed labels).
pub const ZONE_KEY: &str = "/skydns/test/skydns/";

/// Names the query loop asks for; never changed, so each has one right answer.
pub const STABLE: u32 = 10;

/// The etcd key of `name` (one label, directly under the zone).
pub fn key(name: &str) -> String {
    format!("{ZONE_KEY}{name}")
}

/// The SkyDNS value giving `ip` as the name's address.
pub fn value(ip: Ipv4Addr) -> String {
    format!(r#"{{"host":"{ip}"}}"#)
}

/// The address of stable name `s<i>`.
pub fn stable_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, u8::try_from(i).unwrap())
}

/// Writes the stable names through `client`.
pub async fn put_stable(client: &mut Client) {
    for i in 0..STABLE {
        client
            .put(key(&format!("s{i}")), value(stable_ip(i)), None)
            .await
            .unwrap();
    }
}

/// Waits (bounded) until the srvd at `addr` answers `name` (under the test zone) with `ip`;
/// returns how long after `since` it did.
pub async fn arrives(
    addr: SocketAddr,
    name: &str,
    ip: Ipv4Addr,
    limit: Duration,
    since: Instant,
) -> Duration {
    let fqdn = format!("{name}.{ZONE}");
    let fqdn = &fqdn;
    eventually(limit, &format!("{name} arrives"), || async move {
        (a_of(addr, fqdn).await == Some(vec![ip])).then_some(())
    })
    .await;
    since.elapsed()
}

/// Writes through member `via`, retrying (bounded) while the cluster elects a new leader.
pub async fn put_via(cluster: &EtcdCluster, via: usize, name: &str, ip: Ipv4Addr) -> i64 {
    eventually(
        Duration::from_secs(15),
        "a write through a survivor",
        || async move {
            let mut client = cluster.client(via).await;
            let put = client.put(key(name), value(ip), None);
            match tokio::time::timeout(Duration::from_secs(2), put).await {
                Ok(Ok(r)) => r.header().map(|h| h.revision()),
                _ => None,
            }
        },
    )
    .await
}

/// The query loop: asks for the stable names round-robin until `stop` (or 200,000 queries /
/// 120 s, whichever comes first), counting queries and wrong or missing answers.
pub struct QueryLoop {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl QueryLoop {
    /// Starts asking `addr`.
    pub fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut failures = Vec::new();
            let mut n = 0u32;
            while !flag.load(Ordering::Relaxed) && n < 200_000 && Instant::now() < deadline {
                let i = n % STABLE;
                let name = format!("s{i}.{ZONE}");
                let bytes = query(&name, RecordType::A).to_vec().unwrap();
                let got = udp_raw(addr, &bytes)
                    .await
                    .and_then(|b| Message::from_vec(&b).ok());
                let right = got.as_ref().is_some_and(|m| {
                    m.metadata.response_code == ResponseCode::NoError
                        && m.answers
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::A(a) => Some(a.0),
                                _ => None,
                            })
                            .eq([stable_ip(i)])
                });
                if !right {
                    failures.push(format!(
                        "query {n} for {name}: {:?}",
                        got.map(|m| (m.metadata.response_code, m.answers))
                    ));
                }
                n += 1;
                count.store(u64::from(n), Ordering::Relaxed);
            }
            failures
        });
        Self {
            stop,
            queries,
            task,
        }
    }

    /// Stops the loop and asserts that it asked something and every answer was right (`what`
    /// names the loop in the failure and in the `figure:` line); returns how many it asked.
    pub async fn finish_without_failures(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        let count = self.queries.load(Ordering::Relaxed);
        assert!(count > 0, "{what}: no query asked");
        assert!(
            failures.is_empty(),
            "{what}: {} of {count} queries failed: {failures:#?}",
            failures.len()
        );
        eprintln!("figure: {what}: {count} queries, 0 failed");
        count
    }
}

/// Every name under the zone in etcd, read in full through `client`, with its address, and the
/// revision of that read.
pub async fn etcd_names(client: &mut Client) -> (i64, BTreeMap<String, Ipv4Addr>) {
    // In pages of 10,000 pinned to the first page's revision: one response of 100,000 keys
    // exceeds the client's 4 MiB decode limit.
    let end = format!("{}0", ZONE_KEY.trim_end_matches('/'));
    let mut from = ZONE_KEY.as_bytes().to_vec();
    let mut revision = 0;
    let mut names = BTreeMap::new();
    for _ in 0..10_000 {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(10_000);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = client.get(from.clone(), Some(options)).await.unwrap();
        if revision == 0 {
            revision = page.header().unwrap().revision();
        }
        for kv in page.kvs() {
            let name = kv
                .key_str()
                .unwrap()
                .trim_start_matches(ZONE_KEY)
                .to_string();
            let host: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
            names.insert(name, host["host"].as_str().unwrap().parse().unwrap());
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return (revision, names),
        }
    }
    panic!("more than 10,000 pages under {ZONE_KEY}");
}

/// The names (of `etcd`, and of `also`, which etcd may no longer hold) whose answer from srvd at
/// `addr` is not what `etcd` says: the address for a name etcd holds, NXDOMAIN for one it
/// does not. Each mismatch is described.
pub async fn mismatches<'a>(
    addr: SocketAddr,
    etcd: &'a BTreeMap<String, Ipv4Addr>,
    also: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut names: Vec<&str> = etcd.keys().map(String::as_str).collect();
    names.extend(also.into_iter().filter(|n| !etcd.contains_key(*n)));
    let mut wrong = Vec::new();
    for name in names {
        let want = etcd.get(name).map(|ip| vec![*ip]);
        let got = a_of(addr, &format!("{name}.{ZONE}")).await;
        if got != want {
            wrong.push(format!("{name}: etcd {want:?}, srvd {got:?}"));
        }
    }
    wrong
}

/// Every key under the zone in etcd, read in full through `client`, answers in srvd as etcd
/// holds it, and srvd answers nothing for a name in `gone`.
pub async fn assert_mirror_equals_etcd(addr: SocketAddr, client: &mut Client, gone: &[&str]) {
    let (_, etcd) = etcd_names(client).await;
    assert!(etcd.len() > STABLE as usize, "{} keys", etcd.len());
    let wrong = mismatches(addr, &etcd, gone.iter().copied()).await;
    assert!(wrong.is_empty(), "srvd differs from etcd: {wrong:#?}");
}

/// srvd (the binary) mirroring the zone from `endpoints`, with its `/metrics` to read the
/// revision and key count the published mirror holds.
pub struct Replica {
    /// The process (killed on drop).
    pub srvd: SrvdProcess,
    /// Its DNS address.
    pub addr: SocketAddr,
    metrics: SocketAddr,
}

impl Replica {
    /// Starts srvd on `endpoints` (comma-separated client URLs); returns once it serves, which
    /// is before its first read finishes.
    pub fn start(dir: &std::path::Path, endpoints: &str) -> Self {
        let srvd = spawn_binary_logging(
            dir,
            &[
                "--etcd",
                endpoints,
                "--zone",
                ZONE,
                "--metrics",
                "127.0.0.1:0",
            ],
            "srvd=info",
        );
        let metrics = super::http::addr_in_log(&srvd.log, "metrics");
        Self {
            addr: srvd.addr,
            srvd,
            metrics,
        }
    }

    /// (mirror revision, SkyDNS keys mirrored) from its `/metrics`.
    pub async fn progress(&self) -> (i64, u64) {
        let (_, body) = super::http::get(self.metrics, "/metrics").await;
        let revision = sum_samples(&body, "srvd_etcd_mirror_revision") as i64;
        let keys = sum_samples(&body, r#"srvd_etcd_keys_mirrored{layout="skydns"}"#) as u64;
        (revision, keys)
    }

    /// How many full reads of the prefix it has made (1 after start, one more per recovery).
    pub async fn full_reads(&self) -> u64 {
        let (_, body) = super::http::get(self.metrics, "/metrics").await;
        sum_samples(&body, "srvd_etcd_full_reads_total") as u64
    }

    /// Waits (bounded by `limit`) until the mirror has reached `revision`; on failure the
    /// message holds the revision reached and the replica's log.
    pub async fn until_revision(&mut self, revision: i64, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let (reached, keys) = self.progress().await;
            if reached >= revision {
                return;
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "replica {} not at {revision} within {limit:?}: at {reached} with {keys} keys; \
                     log: {:#?}",
                    self.addr,
                    self.srvd.collect_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts that this replica's mirror equals `etcd` (read at `revision`, after the last
    /// write): once it has reached that revision, it holds as many keys as etcd and answers
    /// every name (and each of `gone`) as etcd does.
    pub async fn assert_equals(
        &mut self,
        what: &str,
        revision: i64,
        etcd: &BTreeMap<String, Ipv4Addr>,
        gone: &[String],
    ) {
        self.until_revision(revision, Duration::from_secs(30)).await;
        let (_, keys) = self.progress().await;
        assert_eq!(keys, etcd.len() as u64, "{what}: keys mirrored");
        let wrong = mismatches(self.addr, etcd, gone.iter().map(String::as_str)).await;
        assert!(
            wrong.is_empty(),
            "{what} differs from etcd in {} names: {:#?}",
            wrong.len(),
            &wrong[..wrong.len().min(20)]
        );
    }
}

/// A write storm: `writers` tasks, writer `w` writing through member `w % 3` on names of its
/// own (`w<w>-<k>`, `keys` per writer), puts of fresh addresses and deletes mixed 3:1, in
/// transactions of `per_txn` distinct keys, paced to `ops_per_sec` in all, for `seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    /// Writer tasks (one etcd client each).
    pub writers: usize,
    /// Target rate over all writers.
    pub ops_per_sec: u32,
    /// Operations per transaction (etcd's default `--max-txn-ops` is 128).
    pub per_txn: usize,
    /// Names per writer.
    pub keys: u32,
    /// Transactions each writer keeps in flight at most.
    pub in_flight: usize,
    /// How long it writes.
    pub seconds: f64,
}

/// What a storm did.
#[derive(Debug)]
pub struct StormDone {
    /// Operations in committed transactions.
    pub ops: u64,
    /// Transactions that failed (retried by nobody: their keys are simply as etcd holds them).
    pub failed_txns: u64,
    /// From the first transaction sent to the last one answered.
    pub elapsed: Duration,
    /// Every name the storm may have written.
    pub names: Vec<String>,
}

/// A tiny deterministic generator (SplitMix64): a storm's choices repeat from run to run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Storm {
    /// Runs the storm against `cluster`; returns once every writer has stopped.
    pub async fn run(self, cluster: &EtcdCluster) -> StormDone {
        let per_writer_txns_per_sec =
            f64::from(self.ops_per_sec) / self.per_txn as f64 / self.writers as f64;
        let period = Duration::from_secs_f64(1.0 / per_writer_txns_per_sec);
        let total_txns = (per_writer_txns_per_sec * self.seconds).ceil() as u64;
        let ops = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..self.writers {
            let client = cluster.client(w % 3).await;
            let (ops, failed) = (ops.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = SplitMix(w as u64 + 1);
                let gate = Arc::new(tokio::sync::Semaphore::new(self.in_flight));
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent = Vec::new();
                for _ in 0..total_txns {
                    ticks.tick().await;
                    let permit = gate.clone().acquire_owned().await.unwrap();
                    let txn = self.txn(w, &mut rng);
                    let mut client = client.clone();
                    let (ops, failed) = (ops.clone(), failed.clone());
                    let n = self.per_txn as u64;
                    sent.push(tokio::spawn(async move {
                        let done = tokio::time::timeout(Duration::from_secs(10), client.txn(txn));
                        match done.await {
                            Ok(Ok(_)) => ops.fetch_add(n, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        drop(permit);
                    }));
                }
                for task in sent {
                    task.await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        StormDone {
            ops: ops.load(Ordering::Relaxed),
            failed_txns: failed.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            names: (0..self.writers)
                .flat_map(|w| (0..self.keys).map(move |k| format!("w{w}-{k}")))
                .collect(),
        }
    }

    /// One transaction of writer `w`: `per_txn` distinct names (etcd refuses a key twice in one
    /// transaction), each put with a fresh address or, one time in four, deleted.
    fn txn(&self, w: usize, rng: &mut SplitMix) -> Txn {
        let mut taken = std::collections::HashSet::new();
        let mut ops = Vec::with_capacity(self.per_txn);
        while ops.len() < self.per_txn.min(self.keys as usize) {
            let k = rng.next() % u64::from(self.keys);
            if !taken.insert(k) {
                continue;
            }
            let name = format!("w{w}-{k}");
            let r = rng.next();
            if r.is_multiple_of(4) {
                ops.push(TxnOp::delete(key(&name), None));
            } else {
                let ip = Ipv4Addr::from(0x0a00_0000 | (r >> 40) as u32 & 0x00ff_ffff);
                ops.push(TxnOp::put(key(&name), value(ip), None));
            }
        }
        Txn::new().and_then(ops)
    }
}

/// Propagation probes while something else writes: every `every`, a put of a fresh address on a
/// name of the probe's own (through member `i % 3` for the i-th probe), timed from the put's
/// return until srvd at `addr` answers it. Stops when `stop` is set or after `limit` probes.
pub struct Probes {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl Probes {
    /// Starts probing `addr` (clients connected to each member up front).
    pub async fn start(cluster: &EtcdCluster, addr: SocketAddr, every: Duration) -> Self {
        let clients = [
            cluster.client(0).await,
            cluster.client(1).await,
            cluster.client(2).await,
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut delays = Vec::new();
            for i in 0..100_000u32 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("probe{}", i % 50);
                let ip = Ipv4Addr::from(0x0b00_0000 | i);
                let mut client = clients[i as usize % 3].clone();
                if client.put(key(&name), value(ip), None).await.is_err() {
                    continue;
                }
                let put = Instant::now();
                let fqdn = format!("{name}.{ZONE}");
                // Asked back to back, not at `eventually`'s 20 ms pace: the delay is the figure.
                while a_of(addr, &fqdn).await != Some(vec![ip]) {
                    assert!(
                        put.elapsed() < Duration::from_secs(30),
                        "probe {name} = {ip} not answered within 30 s"
                    );
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                delays.push(put.elapsed());
                tokio::time::sleep(every).await;
            }
            delays
        });
        Self { stop, task }
    }

    /// Stops probing; returns the delays measured.
    pub async fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// p50, p99 and max of `samples`, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}
