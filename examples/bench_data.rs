//! The DNS-SD data set of `benches/load/vs-nsd`, written three ways from one definition so that
//! etcd, the zone file and the query file cannot drift apart:
//!
//! - SkyDNS keys in a real etcd, put in large transactions (700,000 keys at 100,000 services;
//!   Python's JSON gateway takes minutes for that, one gRPC transaction of 10,000 puts ~0.1 s);
//! - the same records as an RFC 1035 zone file for `service.local.` (NSD and `srvd --zones-dir`);
//! - a dnsperf query file drawn with a fixed seed: 95% existing names (60% SRV, 30% A, 10% TXT),
//!   5% names that do not exist.
//!
//! Service `i` (0-based) is `_http._tcp.svc<i>.service.local`: three SRV keys whose hosts are the
//! names `h1..h3.svc<i>.service.local` (priority 10 with weights 60 and 40, priority 20 alone with
//! weight 100, so srvd's per-priority weight normalisation leaves them as written), three A keys
//! for those names, and one TXT-only key `info.svc<i>.service.local`.
//!
//! usage: cargo run --release --example bench_data -- --services N
//!        [--etcd URL] [--zone-file PATH] [--queries PATH --query-count N --seed S]
//!        [--sample PATH --sample-count N]
//!
//! `--sample` writes `name type` lines (every kind of question, spread over the set) for the
//! sanity pass that compares the servers' answers before anything is measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::Instant;

use etcd_client::{Client, ConnectOptions, Txn, TxnOp};

const ZONE: &str = "service.local";
const PREFIX: &str = "/skydns/local/service";
/// Puts per transaction; the script starts etcd with `--max-txn-ops` above this.
const TXN_OPS: usize = 10_000;

/// The SRV keys of one service: (key leaf, target host number, priority, weight).
const SRV: [(&str, u32, u16, u16); 3] = [("s1", 1, 10, 60), ("s2", 2, 10, 40), ("s3", 3, 20, 100)];
const PORT: u16 = 8080;
const TTL: u32 = 300;

/// The address of host `k` (1..=3) of service `i`: unique over 100,000+ services.
fn address(i: u32, k: u32) -> String {
    let n = i * 4 + k;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn text(i: u32) -> String {
    format!("version=1 path=/svc{i}")
}

/// The seven (key, JSON value) pairs of service `i`, in the SkyDNS layout srvd and CoreDNS read.
fn service_keys(i: u32) -> Vec<(String, String)> {
    let mut keys = Vec::with_capacity(7);
    for (leaf, k, priority, weight) in SRV {
        keys.push((
            format!("{PREFIX}/svc{i}/_tcp/_http/{leaf}"),
            format!(
                r#"{{"host":"h{k}.svc{i}.{ZONE}","port":{PORT},"priority":{priority},"weight":{weight}}}"#
            ),
        ));
    }
    for k in 1..=3 {
        keys.push((
            format!("{PREFIX}/svc{i}/h{k}"),
            format!(r#"{{"host":"{}"}}"#, address(i, k)),
        ));
    }
    keys.push((
        format!("{PREFIX}/svc{i}/info"),
        format!(r#"{{"text":"{}"}}"#, text(i)),
    ));
    keys
}

/// The same records as `service_keys`, as zone-file lines relative to `service.local.`.
fn service_zone_lines(i: u32, out: &mut String) {
    for (_, k, priority, weight) in SRV {
        let _ = writeln!(
            out,
            "_http._tcp.svc{i} {TTL} IN SRV {priority} {weight} {PORT} h{k}.svc{i}"
        );
    }
    for k in 1..=3 {
        let _ = writeln!(out, "h{k}.svc{i} {TTL} IN A {}", address(i, k));
    }
    let _ = writeln!(out, "info.svc{i} {TTL} IN TXT \"{}\"", text(i));
}

fn write_zone(path: &str, services: u32) -> std::io::Result<()> {
    let mut file = BufWriter::new(std::fs::File::create(path)?);
    writeln!(file, "$ORIGIN {ZONE}.")?;
    writeln!(file, "$TTL {TTL}")?;
    // srvd's etcd zones synthesise this SOA; the file states the same so both serve one zone.
    writeln!(
        file,
        "@ IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 30"
    )?;
    writeln!(file, "@ IN NS ns.dns.{ZONE}.")?;
    writeln!(file, "ns.dns IN A 127.0.0.1")?;
    let mut chunk = String::new();
    for i in 0..services {
        service_zone_lines(i, &mut chunk);
        if chunk.len() > 1 << 20 {
            file.write_all(chunk.as_bytes())?;
            chunk.clear();
        }
    }
    file.write_all(chunk.as_bytes())?;
    file.flush()
}

/// splitmix64: a fixed, dependency-free sequence, so a seed names the same query file forever.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One question of the mix, drawn from 1,000 per-mille buckets:
/// 570 SRV, 285 A, 95 TXT (95% existing, split 60/30/10), 50 non-existent.
fn question(rng: &mut SplitMix, services: u32, out: &mut String) {
    let i = rng.below(u64::from(services));
    let bucket = rng.below(1000);
    let _ = match bucket {
        0..570 => writeln!(out, "_http._tcp.svc{i}.{ZONE} SRV"),
        570..855 => writeln!(out, "h{}.svc{i}.{ZONE} A", 1 + rng.below(3)),
        855..950 => writeln!(out, "info.svc{i}.{ZONE} TXT"),
        _ => writeln!(out, "missing{i}.{ZONE} A"),
    };
}

fn write_queries(path: &str, services: u32, count: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = SplitMix(seed);
    let mut out = String::with_capacity(count as usize * 40);
    for _ in 0..count {
        question(&mut rng, services, &mut out);
    }
    std::fs::write(path, out)
}

/// Questions for the sanity pass: every kind, at the first, middle and last service.
fn write_sample(path: &str, services: u32, count: u32) -> std::io::Result<()> {
    let mut out = String::new();
    let step = (services / count.max(1)).max(1);
    let mut picks: Vec<u32> = (0..services).step_by(step as usize).collect();
    picks.push(services - 1);
    for i in picks {
        let _ = writeln!(out, "_http._tcp.svc{i}.{ZONE} SRV");
        let _ = writeln!(out, "h{}.svc{i}.{ZONE} A", 1 + i % 3);
        let _ = writeln!(out, "info.svc{i}.{ZONE} TXT");
        let _ = writeln!(out, "missing{i}.{ZONE} A");
    }
    std::fs::write(path, out)
}

async fn load_etcd(url: &str, services: u32) -> Result<(), etcd_client::Error> {
    let options = ConnectOptions::new().with_connect_timeout(std::time::Duration::from_secs(10));
    let mut client = Client::connect([url], Some(options)).await?;
    let started = Instant::now();
    let mut ops = Vec::with_capacity(TXN_OPS);
    let mut written = 0usize;
    for i in 0..services {
        for (key, value) in service_keys(i) {
            ops.push(TxnOp::put(key, value, None));
        }
        if ops.len() + 7 > TXN_OPS || i + 1 == services {
            written += ops.len();
            client
                .txn(Txn::new().and_then(std::mem::take(&mut ops)))
                .await?;
        }
    }
    eprintln!(
        "bench_data: {written} keys put in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|p| args.get(p + 1).cloned())
}

fn number<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    match arg(args, flag) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("bench_data: {flag} wants a number, got {v:?}");
            std::process::exit(2)
        }),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let services: u32 = number(&args, "--services", 1000);
    if services == 0 || services > 4_000_000 {
        eprintln!("bench_data: --services must be 1..=4000000");
        std::process::exit(2);
    }
    if let Some(path) = arg(&args, "--zone-file") {
        write_zone(&path, services).expect("write the zone file");
    }
    if let Some(path) = arg(&args, "--queries") {
        let count = number(&args, "--query-count", 1_000_000u64);
        let seed = number(&args, "--seed", 14u64);
        write_queries(&path, services, count, seed).expect("write the query file");
    }
    if let Some(path) = arg(&args, "--sample") {
        let count = number(&args, "--sample-count", 20u32);
        write_sample(&path, services, count).expect("write the sample");
    }
    if let Some(url) = arg(&args, "--etcd") {
        if let Err(e) = load_etcd(&url, services).await {
            eprintln!("bench_data: loading etcd at {url}: {e}");
            std::process::exit(1);
        }
    }
}
