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
//!
//! Four more modes measure a running srvd against the same etcd (a Rust loop, because a
//! Python loop around `etcdctl` would measure process start-up, not srvd):
//!
//! - `--propagation N --etcd URL --server ADDR`: N times, put a new address for one target's A
//!   key and ask `ADDR` over UDP until the answer carries it; prints p50/p99/max of
//!   put-returned → answer-seen.
//! - `--storm OPS_PER_SEC --seconds S --etcd URL`: puts and deletes at that rate in transactions
//!   of 100 on the set's A and TXT keys (new addresses; TXT keys deleted and re-created), a few
//!   transactions in flight, as a busy registrar writes.
//! - `--latency-probe RATE --seconds S --server ADDR`: RATE questions a second, one at a time,
//!   each timed from just before `send` to the kernel's receive timestamp of its answer; prints
//!   p50/p99/max/mean.
//! - `--verify --etcd URL --server ADDR`: for every A and TXT name of the set, compares srvd's
//!   answer with etcd's current value; prints the number of names checked and of mismatches.
//!
//! Each prints one `key=value` result line on stdout for the script to read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp};

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
    let mut client = connect(url).await?;
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

/// `--echo-limit PORT [--seconds S]`: the limit of the UDP path, a responder that never parses.
/// Each datagram goes back as it came with the QR bit set (a "response" carrying the question):
/// one recv and one send per query on one blocking socket, the floor under any server's cost on
/// this kernel. Ends after S seconds (bounded even if nobody stops it).
fn echo_limit(port: &str, seconds: u64) {
    let socket = std::net::UdpSocket::bind(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
        eprintln!("bench_data: --echo-limit {port}: {e}");
        std::process::exit(1)
    });
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if len >= 12 {
            buf[2] |= 0x80;
            let _ = socket.send_to(&buf[..len], peer);
        }
    }
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

async fn connect(url: &str) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(10));
    Client::connect([url], Some(options)).await
}

/// The measuring modes' outcome: any error is printed once by `main`, which exits non-zero.
type ModeResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------- DNS over UDP, by hand

/// A query for `name`/`qtype` with ID `id`, no EDNS (the answers here are small).
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg
}

/// The offset just past the (possibly compressed) name at `at`, or None when truncated.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + l as usize,
        }
    }
}

/// (ID, rcode, the answer section's records of type `qtype` as rdata), or None when malformed.
fn dns_answers(msg: &[u8], qtype: u16) -> Option<(u16, u8, Vec<Vec<u8>>)> {
    if msg.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let head = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let rdlen = u16::from_be_bytes([head[8], head[9]]) as usize;
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        if rtype == qtype {
            out.push(rdata.to_vec());
        }
        at += 10 + rdlen;
    }
    Some((id, rcode, out))
}

/// One UDP socket asking one server; replies to earlier, timed-out questions are skipped by ID.
struct Asker {
    socket: UdpSocket,
    id: u16,
}

impl Asker {
    fn new(server: SocketAddr) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Asker { socket, id: 0 })
    }

    /// The rdata of the answer's `qtype` records and the rcode; None after two 100 ms timeouts.
    fn ask(&mut self, name: &str, qtype: u16) -> Option<(u8, Vec<Vec<u8>>)> {
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            self.id = self.id.wrapping_add(1);
            self.socket.send(&dns_query(self.id, name, qtype)).ok()?;
            let deadline = Instant::now() + Duration::from_millis(100);
            while Instant::now() < deadline {
                let Ok(n) = self.socket.recv(&mut buf) else {
                    break;
                };
                if let Some((id, rcode, records)) = dns_answers(&buf[..n], qtype)
                    && id == self.id
                {
                    return Some((rcode, records));
                }
            }
        }
        None
    }
}

const TYPE_A: u16 = 1;
const TYPE_TXT: u16 = 16;
const TYPE_SRV: u16 = 33;

/// p50, p99 and max of `samples` (nearest rank), in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let rank = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    (rank(0.50), rank(0.99), rank(1.0))
}

fn dotted(address: &str) -> Vec<u8> {
    address.split('.').map(|o| o.parse().unwrap_or(0)).collect()
}

// ---------------------------------------------------------------- --propagation

/// N updates, one at a time: put a new address for `h1.svc<i>` (i spread over the set), then ask
/// srvd until its A answer is that address. The clock starts when `put` returns, as a registrar
/// would see it, and stops at the first answer that carries the new value; a question is one
/// loopback round trip, so the figure includes at most one round trip of polling granularity.
async fn propagation(url: &str, server: SocketAddr, services: u32, count: u32) -> ModeResult {
    let mut client = connect(url).await?;
    let mut asker = Asker::new(server)?;
    let mut delays = Vec::with_capacity(count as usize);
    let mut missed = 0u32;
    for j in 0..count {
        let i = (j * 7919) % services;
        // 10.200.0.0/16 and up: never one of the set's own addresses (10.0.0.0/9 at 4M services).
        let new = format!(
            "10.{}.{}.{}",
            200 + (j >> 16) % 50,
            (j >> 8) & 0xff,
            j & 0xff
        );
        let name = format!("h1.svc{i}.{ZONE}");
        client
            .put(
                format!("{PREFIX}/svc{i}/h1"),
                format!(r#"{{"host":"{new}"}}"#),
                None,
            )
            .await?;
        let put_returned = Instant::now();
        let want = dotted(&new);
        let mut seen = false;
        while put_returned.elapsed() < Duration::from_secs(2) {
            if let Some((_, records)) = asker.ask(&name, TYPE_A)
                && records.contains(&want)
            {
                delays.push(put_returned.elapsed());
                seen = true;
                break;
            }
        }
        if !seen {
            missed += 1;
        }
    }
    if delays.is_empty() {
        println!("propagation count=0 missed={missed}");
        return Ok(());
    }
    let seen = delays.len();
    let (p50, p99, max) = percentiles(&mut delays);
    println!(
        "propagation count={seen} missed={missed} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3}"
    );
    Ok(())
}

// ---------------------------------------------------------------- --latency-probe

/// `RATE` questions a second for `seconds`, one at a time, spread over the set's SRV, A and TXT
/// names: the latency each question sees while other load runs. The clock starts just before
/// `send` and stops at the kernel's receive timestamp of the answer (SO_TIMESTAMPNS), so the
/// probe's own wake-up on a CPU shared with dnsperf and etcd is not counted; the server's
/// queueing and its scheduling are.
fn latency_probe(server: SocketAddr, services: u32, rate: u32, seconds: u32) -> ModeResult {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use std::os::fd::AsRawFd;
    use std::time::SystemTime;

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
    let total = u64::from(rate) * u64::from(seconds);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut lost = 0u64;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    for j in 0..total {
        let slot = start + Duration::from_secs_f64(j as f64 / f64::from(rate));
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = (j as u32).wrapping_mul(7919) % services;
        let (name, qtype) = match j % 10 {
            0..=5 => (format!("_http._tcp.svc{i}.{ZONE}"), TYPE_SRV),
            6..=8 => (format!("h1.svc{i}.{ZONE}"), TYPE_A),
            _ => (format!("info.svc{i}.{ZONE}"), TYPE_TXT),
        };
        let id = j as u16;
        let sent = SystemTime::now();
        socket.send(&dns_query(id, &name, qtype))?;
        let answered = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
            let Ok(msg) = recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            ) else {
                break None; // timed out: lost
            };
            let stamp = msg.cmsgs()?.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => Some(
                    SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
                ),
                _ => None,
            });
            let bytes = msg.bytes;
            if bytes >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                break stamp;
            }
        };
        match answered.and_then(|at| at.duration_since(sent).ok()) {
            Some(latency) => latencies.push(latency),
            None => lost += 1,
        }
    }
    if latencies.is_empty() {
        println!("latency count=0 lost={lost}");
        return Ok(());
    }
    let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len() as f64;
    let count = latencies.len();
    let (p50, p99, max) = percentiles(&mut latencies);
    println!(
        "latency count={count} lost={lost} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} mean_ms={:.3}",
        mean * 1e3
    );
    Ok(())
}

// ---------------------------------------------------------------- --storm

/// Ops per storm transaction (a registrar batching its changes).
const STORM_TXN_OPS: usize = 100;
/// Storm transactions in flight at once.
const STORM_IN_FLIGHT: usize = 4;

/// The storm's keys: per service, the three A keys (rewritten) and the TXT key (deleted and
/// re-created in turn). `generation` counts each key's writes, so every op changes its key (a
/// new address, or the TXT key's presence) and the final state is whatever etcd holds last.
struct Storm {
    services: u32,
    cursor: u64,
    generation: HashMap<u64, u32>,
}

impl Storm {
    /// The next `STORM_TXN_OPS` ops, on distinct keys (etcd rejects a key twice in one txn).
    fn next_txn(&mut self) -> Vec<TxnOp> {
        let slots = u64::from(self.services) * 4;
        let mut ops = Vec::with_capacity(STORM_TXN_OPS);
        for _ in 0..STORM_TXN_OPS.min(slots as usize) {
            let slot = self.cursor % slots;
            self.cursor += 1;
            let generation = self.generation.entry(slot).or_insert(0);
            *generation += 1;
            let g = *generation;
            let i = (slot / 4) as u32;
            ops.push(match slot % 4 {
                k @ 0..3 => TxnOp::put(
                    format!("{PREFIX}/svc{i}/h{}", k + 1),
                    format!(
                        r#"{{"host":"10.{}.{}.{}"}}"#,
                        100 + (g % 100),
                        (i >> 8) & 0xff,
                        i & 0xff
                    ),
                    None,
                ),
                _ if g % 2 == 1 => TxnOp::delete(format!("{PREFIX}/svc{i}/info"), None),
                _ => TxnOp::put(
                    format!("{PREFIX}/svc{i}/info"),
                    format!(r#"{{"text":"version={g} path=/svc{i}"}}"#),
                    None,
                ),
            });
        }
        ops
    }
}

/// `ops_per_sec` puts and deletes for `seconds`, paced by a ticker (one transaction per tick,
/// at most `STORM_IN_FLIGHT` in flight; when etcd cannot keep up the ticker waits, and the
/// achieved rate says so).
async fn storm(url: &str, services: u32, ops_per_sec: u32, seconds: u32) -> ModeResult {
    let client = connect(url).await?;
    let mut plan = Storm {
        services,
        cursor: 0,
        generation: HashMap::new(),
    };
    let per_txn = STORM_TXN_OPS.min(services as usize * 4) as f64;
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(per_txn / f64::from(ops_per_sec)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(tokio::sync::Semaphore::new(STORM_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut ops_sent = 0usize;
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(u64::from(seconds)) {
        ticker.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let ops = plan.next_txn();
        ops_sent += ops.len();
        let mut kv = client.kv_client();
        tasks.spawn(async move {
            let begun = Instant::now();
            let result = kv.txn(Txn::new().and_then(ops)).await;
            drop(permit);
            result.map(|_| begun.elapsed())
        });
        while let Some(done) = tasks.try_join_next() {
            latencies.push(done??);
        }
    }
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (p50, p99, max) = if latencies.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        percentiles(&mut latencies)
    };
    println!(
        "storm ops={ops_sent} seconds={elapsed:.2} ops_per_sec={:.0} txn_ops={per_txn} \
         txn_p50_ms={p50:.2} txn_p99_ms={p99:.2} txn_max_ms={max:.2}",
        ops_sent as f64 / elapsed
    );
    Ok(())
}

// ---------------------------------------------------------------- --verify

/// Every A and TXT name of the set, asked of srvd and compared with etcd's values now: an A name
/// must answer exactly the address in its key, a TXT name its text when the key exists and no
/// TXT record when it does not.
async fn verify(url: &str, server: SocketAddr, services: u32) -> ModeResult {
    // The whole set in one read: 64 MB at 100,000 services, past gRPC's 4 MiB default.
    let mut kv = connect(url)
        .await?
        .kv_client()
        .max_decoding_message_size(1 << 30);
    let prefix = format!("{PREFIX}/");
    let response = kv
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut values: HashMap<String, serde_json::Value> = HashMap::new();
    for kv in response.kvs() {
        values.insert(
            kv.key_str()?.to_owned(),
            serde_json::from_slice(kv.value()).unwrap_or(serde_json::Value::Null),
        );
    }
    let mut asker = Asker::new(server)?;
    let (mut checked, mut mismatches) = (0u32, 0u32);
    // One name: srvd's records of `qtype` must be exactly the one etcd holds (or none).
    let mut check = |name: String, qtype: u16, want: Option<Vec<u8>>| {
        let got = asker.ask(&name, qtype).map(|(_, r)| r);
        checked += 1;
        let ok = match (&want, &got) {
            (Some(w), Some(g)) => g.len() == 1 && g[0] == *w,
            (None, Some(g)) => g.is_empty(),
            _ => false,
        };
        if !ok {
            if mismatches < 10 {
                let kind = if qtype == TYPE_A { "A" } else { "TXT" };
                eprintln!("bench_data: mismatch: {name} {kind}: etcd {want:?}, srvd {got:?}");
            }
            mismatches += 1;
        }
    };
    for i in 0..services {
        for k in 1..=3 {
            let want = values
                .get(&format!("{PREFIX}/svc{i}/h{k}"))
                .and_then(|v| v["host"].as_str())
                .map(dotted);
            check(format!("h{k}.svc{i}.{ZONE}"), TYPE_A, want);
        }
        let want = values
            .get(&format!("{PREFIX}/svc{i}/info"))
            .and_then(|v| v["text"].as_str())
            .map(|t| {
                let mut rdata = vec![t.len() as u8];
                rdata.extend_from_slice(t.as_bytes());
                rdata
            });
        check(format!("info.svc{i}.{ZONE}"), TYPE_TXT, want);
    }
    println!("verify checked={checked} mismatches={mismatches}");
    Ok(())
}

fn server_arg(args: &[String]) -> SocketAddr {
    let Some(v) = arg(args, "--server") else {
        eprintln!("bench_data: this mode needs --server ADDR");
        std::process::exit(2)
    };
    v.parse().unwrap_or_else(|_| {
        eprintln!("bench_data: --server wants IP:PORT, got {v:?}");
        std::process::exit(2)
    })
}

fn etcd_arg(args: &[String]) -> String {
    arg(args, "--etcd").unwrap_or_else(|| {
        eprintln!("bench_data: this mode needs --etcd URL");
        std::process::exit(2)
    })
}

/// `--propagation`, `--storm` or `--verify` when one is given: they act on a loaded set.
async fn run_mode(args: &[String], services: u32) -> Option<ModeResult> {
    if args.iter().any(|a| a == "--propagation") {
        let count: u32 = number(args, "--propagation", 200);
        if !(1..=100_000).contains(&count) {
            eprintln!("bench_data: --propagation wants 1..=100000 updates");
            std::process::exit(2);
        }
        return Some(propagation(&etcd_arg(args), server_arg(args), services, count).await);
    }
    if args.iter().any(|a| a == "--storm") {
        let rate: u32 = number(args, "--storm", 10_000);
        let seconds: u32 = number(args, "--seconds", 10);
        if !(1..=1_000_000).contains(&rate) || !(1..=600).contains(&seconds) {
            eprintln!("bench_data: --storm wants 1..=1000000 ops/s and --seconds 1..=600");
            std::process::exit(2);
        }
        return Some(storm(&etcd_arg(args), services, rate, seconds).await);
    }
    if args.iter().any(|a| a == "--latency-probe") {
        let rate: u32 = number(args, "--latency-probe", 2_000);
        let seconds: u32 = number(args, "--seconds", 10);
        if !(1..=100_000).contains(&rate) || !(1..=600).contains(&seconds) {
            eprintln!(
                "bench_data: --latency-probe wants 1..=100000 questions/s and --seconds 1..=600"
            );
            std::process::exit(2);
        }
        return Some(latency_probe(server_arg(args), services, rate, seconds));
    }
    if args.iter().any(|a| a == "--verify") {
        return Some(verify(&etcd_arg(args), server_arg(args), services).await);
    }
    None
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = arg(&args, "--echo-limit") {
        echo_limit(&port, number(&args, "--seconds", 3600u64));
        return;
    }
    let services: u32 = number(&args, "--services", 1000);
    if services == 0 || services > 4_000_000 {
        eprintln!("bench_data: --services must be 1..=4000000");
        std::process::exit(2);
    }
    if let Some(result) = run_mode(&args, services).await {
        if let Err(e) = result {
            eprintln!("bench_data: {e}");
            std::process::exit(1);
        }
        return;
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
    if let Some(url) = arg(&args, "--etcd")
        && let Err(e) = load_etcd(&url, services).await
    {
        eprintln!("bench_data: loading etcd at {url}: {e}");
        std::process::exit(1);
    }
}
