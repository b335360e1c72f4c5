//! Large data at full size (issue 16): transactions of 100,000 keys, live and in a
//! catch-up, and a prefix of 1,000,000 keys read at start. The fast versions are in
//! `tests/it/etcd/huge.rs`. Sizes can be lowered for a trial run with `SRVD_SOAK_TXN_KEYS` and
//! `SRVD_SOAK_PREFIX_KEYS`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, Txn, TxnOp};

use crate::support::dns::a_of;
use crate::support::etcd::{EtcdOptions, EtcdServer};
use crate::support::http::metric;
use crate::support::srvd::SrvdProcess;

const ZONE: &str = "soak.test.";
const PREFIX: &str = "/skydns/test/soak/";

/// The srvd binary for `etcd`, with metrics; returns it and its metrics address.
fn srvd(dir: &std::path::Path, etcd: &str) -> (SrvdProcess, SocketAddr) {
    let srvd = crate::support::srvd::spawn_binary_logging(
        dir,
        &["--etcd", etcd, "--zone", ZONE, "--metrics", "127.0.0.1:0"],
        "srvd=info",
    );
    let metrics = crate::support::http::addr_in_log(&srvd.log, "metrics");
    (srvd, metrics)
}

/// srvd's resident and proportional set sizes in KiB (`/proc/<pid>/smaps_rollup`).
fn rss_pss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn txn_key(i: u32) -> String {
    format!("{PREFIX}txn/k{i:06}")
}

fn txn_name(i: u32) -> String {
    format!("k{i:06}.txn.soak.test.")
}

/// Key `i`'s address in transaction `generation` (`i` below 2^20).
fn txn_ip(generation: u32, i: u32) -> Ipv4Addr {
    Ipv4Addr::from((10 << 24) + (generation << 20) + i)
}

fn generation_of(reply: Option<Vec<Ipv4Addr>>) -> Option<u32> {
    reply.and_then(|a| a.first().map(|ip| u32::from(*ip) >> 20 & 0xf))
}

/// Every key in one transaction; returns its revision.
async fn write_generation(client: &mut Client, keys: u32, generation: u32) -> i64 {
    let ops: Vec<TxnOp> = (0..keys)
        .map(|i| {
            let value = format!(r#"{{"host":"{}"}}"#, txn_ip(generation, i));
            TxnOp::put(txn_key(i), value, None)
        })
        .collect();
    let response = client.txn(Txn::new().and_then(ops)).await.unwrap();
    response.header().unwrap().revision()
}

/// First key, then last key, over and over until `done`: the last is never of an older
/// generation than the first a moment before. Returns the rounds run.
async fn first_then_last(addr: SocketAddr, keys: u32, done: Arc<AtomicBool>) -> u32 {
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) {
        let first = generation_of(a_of(addr, &txn_name(0)).await);
        let last = generation_of(a_of(addr, &txn_name(keys - 1)).await);
        assert!(
            last >= first,
            "key 0 at generation {first:?}, key {} then at {last:?}",
            keys - 1
        );
        rounds += 1;
    }
    rounds
}

/// Polls DNS until every sampled key answers `generation` (bounded: 120 s).
async fn until_generation(addr: SocketAddr, keys: u32, generation: u32) -> Duration {
    let started = Instant::now();
    crate::support::eventually(
        Duration::from_secs(120),
        &format!("generation {generation} answered"),
        || async move {
            for i in [0, keys / 2, keys - 1] {
                if generation_of(a_of(addr, &txn_name(i)).await) != Some(generation) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_of_a_hundred_thousand_keys_live_and_in_a_catch_up_publish_whole() {
    let keys = crate::knob::<u32>("SRVD_SOAK_TXN_KEYS", 100_000);
    let etcd = EtcdServer::start_with_flags(
        EtcdOptions::default(),
        &[
            "--max-txn-ops",
            &keys.to_string(),
            // etcd's recommended maximum; one transaction's watch response then stays under
            // srvd's default decode limit of 16 MiB.
            "--max-request-bytes",
            "10485760",
            "--quota-backend-bytes",
            "8589934592",
        ],
    )
    .await;
    let mut client = etcd.client().await;
    let proxy = crate::support::proxy::Proxy::start(&etcd.url).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut srvd, metrics) = srvd(dir.path(), &proxy.url);
    srvd.until_etcd_synced(Duration::from_secs(30));
    let addr = srvd.addr;

    let done = Arc::new(AtomicBool::new(false));
    let checker = tokio::spawn(first_then_last(addr, keys, done.clone()));
    let sent = Instant::now();
    write_generation(&mut client, keys, 1).await;
    let written = sent.elapsed();
    let live = until_generation(addr, keys, 1).await;
    println!(
        "figure: one transaction of {keys} keys: written in {written:?}, all answered {live:?} \
         after the write returned"
    );

    // Cut off while two more land: the catch-up carries both in one response (a full re-read
    // when that is larger than srvd's decode limit).
    proxy.cut();
    write_generation(&mut client, keys, 2).await;
    let last = write_generation(&mut client, keys, 3).await;
    let reopened = Instant::now();
    proxy.open(&[]);
    until_generation(addr, keys, 3).await;
    println!(
        "figure: catch-up over two transactions of {keys} keys: answered {:?} after reconnect, \
         full reads {} (a catch-up larger than --etcd-max-response-bytes is a re-read)",
        reopened.elapsed(),
        metric(metrics, "srvd_etcd_full_reads_total").await
    );
    done.store(true, Ordering::Relaxed);
    let rounds = checker.await.unwrap();
    println!("figure: {rounds} first-then-last DNS rounds saw no half transaction");

    crate::support::eventually(
        Duration::from_secs(30),
        "the mirror at the last revision",
        || async move {
            (metric(metrics, "srvd_etcd_mirror_revision").await >= last as f64).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(metrics, r#"srvd_etcd_keys_mirrored{layout="skydns"}"#).await,
        f64::from(keys)
    );
    for i in (0..keys).step_by((keys / 1000).max(1) as usize) {
        assert_eq!(a_of(addr, &txn_name(i)).await, Some(vec![txn_ip(3, i)]));
    }
    let (rss, pss) = rss_pss_kib(srvd.child.id());
    println!("figure: srvd after three transactions of {keys} keys: RSS {rss} KiB, PSS {pss} KiB");
    assert!(srvd.child.try_wait().unwrap().is_none(), "srvd still runs");
}

fn big_key(i: u32) -> String {
    format!("{PREFIX}million/k{i:07}")
}

fn big_name(i: u32) -> String {
    format!("k{i:07}.million.soak.test.")
}

fn big_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from((10 << 24) + i)
}

/// Writes keys `0..keys` in transactions of 10,000 from 4 writers at once.
async fn load(url: &str, keys: u32) {
    const BATCH: u32 = 10_000;
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let mut client = Client::connect([url], None).await.unwrap();
        writers.push(tokio::spawn(async move {
            let mut start = w * BATCH;
            while start < keys {
                let ops: Vec<TxnOp> = (start..(start + BATCH).min(keys))
                    .map(|i| TxnOp::put(big_key(i), format!(r#"{{"host":"{}"}}"#, big_ip(i)), None))
                    .collect();
                client.txn(Txn::new().and_then(ops)).await.unwrap();
                start += 4 * BATCH;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_of_a_million_keys_is_read_whole_with_bounded_memory() {
    let keys = crate::knob::<u32>("SRVD_SOAK_PREFIX_KEYS", 1_000_000);
    let etcd = EtcdServer::start_with_flags(
        EtcdOptions::default(),
        &[
            "--max-txn-ops",
            "10000",
            "--quota-backend-bytes",
            "8589934592",
        ],
    )
    .await;
    let loading = Instant::now();
    load(&etcd.url, keys).await;
    println!(
        "figure: {keys} keys loaded into etcd in {:?}",
        loading.elapsed()
    );
    let mut client = etcd.client().await;
    let count = client
        .get(
            format!("{PREFIX}million/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(count.count(), i64::from(keys));
    let revision = count.header().unwrap().revision();

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut srvd, metrics) = srvd(dir.path(), &etcd.url);
    let addr = srvd.addr;
    let probe = big_name(keys - 1);
    let first = crate::support::eventually(
        Duration::from_secs(300),
        "the first answer from the mirror",
        || {
            let probe = probe.clone();
            async move { a_of(addr, &probe).await.filter(|a| !a.is_empty()) }
        },
    )
    .await;
    let to_first_answer = started.elapsed();
    assert_eq!(first, vec![big_ip(keys - 1)]);
    srvd.until_etcd_synced(Duration::from_secs(60));
    println!("figure: {keys} keys: first answer {to_first_answer:?} after srvd started");

    assert_eq!(
        metric(metrics, r#"srvd_etcd_keys_mirrored{layout="skydns"}"#).await,
        f64::from(keys)
    );
    assert!(metric(metrics, "srvd_etcd_mirror_revision").await >= revision as f64);
    assert_eq!(metric(metrics, "srvd_etcd_keys_skipped_total").await, 0.0);

    // Every key in etcd, read in pages (one response of all would exceed the client's decode
    // limit), is the one written; srvd's answers are checked for a sample of 10,000 names
    // spread over all, and its key count for the rest.
    let mut from = format!("{PREFIX}million/");
    let end = format!("{PREFIX}million0");
    let mut read = 0u32;
    loop {
        let page = client
            .get(
                from.as_str(),
                Some(
                    GetOptions::new()
                        .with_range(end.as_str())
                        .with_limit(50_000),
                ),
            )
            .await
            .unwrap();
        for kv in page.kvs() {
            assert_eq!(kv.key(), big_key(read).as_bytes());
            let value = format!(r#"{{"host":"{}"}}"#, big_ip(read));
            assert_eq!(kv.value(), value.as_bytes());
            read += 1;
        }
        match page.kvs().last() {
            Some(last) if page.more() => from = format!("{}\0", last.key_str().unwrap()),
            _ => break,
        }
    }
    assert_eq!(read, keys);
    let step = (keys / 10_000).max(1);
    let sampling = Instant::now();
    for i in (0..keys).step_by(step as usize) {
        assert_eq!(a_of(addr, &big_name(i)).await, Some(vec![big_ip(i)]), "{i}");
    }
    println!(
        "figure: {} sampled names answered as etcd holds them in {:?}",
        keys.div_ceil(step),
        sampling.elapsed()
    );
    let (rss, pss) = rss_pss_kib(srvd.child.id());
    println!("figure: srvd with {keys} keys after the first read: RSS {rss} KiB, PSS {pss} KiB");
    // Bounded: well under 2 KiB per key (the raw listing alone is about 60 bytes a key).
    assert!(
        rss < u64::from(keys) * 2 + 256 * 1024,
        "{rss} KiB resident for {keys} keys"
    );
    assert!(srvd.child.try_wait().unwrap().is_none(), "srvd still runs");
}
