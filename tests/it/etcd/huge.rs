//! Data at etcd's own limits (issue 16, "large data"): values just under etcd's default
//! `--max-request-bytes` (1.5 MiB), valid and garbage, and transactions of 20,000 keys, live and
//! in a catch-up larger than srvd's decode limit (which is a full re-read). (`large.rs` has 10,000 small records under one name; `catch_up.rs` has
//! 1.2 MB values in a listing and a catch-up. `tests/soak/large.rs` runs the 100,000-key
//! transaction and the million-key prefix.)

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::dns::{a_of, query, tcp_with_size, udp_with_size, with_edns};
use crate::support::etcd::{EtcdOptions, EtcdServer};
use crate::support::srvd::TestServer;

const ZONE: &str = "huge.test.";
const PREFIX: &str = "/skydns/test/huge/";

/// Just under etcd's default request limit (1,572,864 bytes) once the key and the request's
/// framing are added.
const NEAR_LIMIT: usize = 1_520_000;

/// A valid SkyDNS value of [`NEAR_LIMIT`] bytes with a huge `text`: served as an address when
/// `host` is one (the text is then not served, as in CoreDNS), else as that TXT.
fn huge_valid(host: &str) -> String {
    let head = format!(r#"{{"host":"{host}","text":""#);
    let pad = NEAR_LIMIT - head.len() - 2;
    format!("{head}{}\"}}", "t".repeat(pad))
}

/// [`NEAR_LIMIT`] bytes of garbage: neither UTF-8 nor JSON.
fn huge_garbage(seed: u8) -> Vec<u8> {
    (0..NEAR_LIMIT)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 0x80)
        .collect()
}

fn small(ip: Ipv4Addr) -> String {
    format!(r#"{{"host":"{ip}"}}"#)
}

/// The TXT answer for a huge text: no record that large fits any DNS message, so every
/// transport gets a bounded NOERROR reply with TC set and no partial record.
fn assert_bounded_txt(reply: &Message, size: usize, limit: usize, how: &str) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{how}");
    assert!(size <= limit, "{how}: {size} bytes > {limit}");
    assert!(reply.metadata.truncation, "{how}: TC set: {reply:?}");
    assert!(reply.answers.is_empty(), "{how}: {:?}", reply.answers.len());
}

#[tokio::test]
async fn values_just_under_etcds_request_limit_are_mirrored_or_skipped_and_answered_bounded() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(format!("{PREFIX}addr1"), huge_valid("10.9.0.1"), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}text1"), huge_valid(""), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}junk1"), huge_garbage(1), None)
        .await
        .unwrap();
    client
        .put(
            format!("{PREFIX}small"),
            small(Ipv4Addr::new(10, 0, 0, 1)),
            None,
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut srvd = crate::support::srvd::spawn_binary_logging(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            ZONE,
            "--metrics",
            "127.0.0.1:0",
        ],
        "srvd=info",
    );
    srvd.until_etcd_synced(Duration::from_secs(20));
    let addr = srvd.addr;
    let metrics = crate::support::http::addr_in_log(&srvd.log, "metrics");

    // The same again while srvd watches: each arrives as one event of its own.
    client
        .put(format!("{PREFIX}addr2"), huge_valid("10.9.0.2"), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}text2"), huge_valid(""), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}junk2"), huge_garbage(2), None)
        .await
        .unwrap();
    client
        .put(
            format!("{PREFIX}after"),
            small(Ipv4Addr::new(10, 0, 0, 2)),
            None,
        )
        .await
        .unwrap();
    let after = crate::support::eventually(
        Duration::from_secs(15),
        "the key written after the huge ones is answered",
        || async { a_of(addr, "after.huge.test.").await },
    )
    .await;
    assert_eq!(after, vec![Ipv4Addr::new(10, 0, 0, 2)]);

    for i in [1u8, 2] {
        let name = format!("addr{i}.huge.test.");
        assert_eq!(
            a_of(addr, &name).await,
            Some(vec![Ipv4Addr::new(10, 9, 0, i)]),
            "{name}"
        );
        let name = format!("text{i}.huge.test.");
        let (reply, size) = udp_with_size(addr, &query(&name, RecordType::TXT)).await;
        assert_bounded_txt(&reply, size, 512, "UDP");
        let (reply, size) =
            udp_with_size(addr, &with_edns(query(&name, RecordType::TXT), 1232)).await;
        assert_bounded_txt(&reply, size, 1232, "UDP with EDNS 1232");
        let (reply, size) = tcp_with_size(addr, &query(&name, RecordType::TXT)).await;
        assert_bounded_txt(&reply, size, 65_535, "TCP");
        let junk = format!("junk{i}.huge.test.");
        assert_eq!(a_of(addr, &junk).await, None, "{junk} is skipped");
    }
    assert_eq!(
        a_of(addr, "small.huge.test.").await,
        Some(vec![Ipv4Addr::new(10, 0, 0, 1)])
    );

    // Each garbage key: one warning naming it, and one count.
    let skipped = crate::support::http::metric(metrics, "srvd_etcd_keys_skipped_total").await;
    assert_eq!(skipped, 2.0);
    let junk2 = format!("{PREFIX}junk2");
    srvd.log_until(Duration::from_secs(10), |log| {
        log.iter().any(|l| l.contains(&junk2))
    });
    for junk in ["junk1", "junk2"] {
        let warnings: Vec<&String> = srvd
            .log
            .iter()
            .filter(|l| l.contains("WARN") && l.contains(&format!("{PREFIX}{junk}")))
            .collect();
        assert_eq!(warnings.len(), 1, "{junk}: {:#?}", srvd.log);
        assert!(warnings[0].contains("skipping etcd key"), "{warnings:?}");
        // The warning names the key, not the value: a 1.5 MB line would flood the log.
        assert!(warnings[0].len() < 1_000, "{} bytes", warnings[0].len());
    }
    assert!(srvd.child.try_wait().unwrap().is_none(), "srvd still runs");
}

/// etcd's request limit for the transaction test: 2 MiB.
const TXN_REQUEST_LIMIT: usize = 2 * 1024 * 1024;
const TXN_KEYS: u32 = 20_000;
/// srvd's decode limit in the transaction test: a live transaction's watch response fits, a
/// catch-up carrying two does not.
const TXN_DECODE_LIMIT: usize = TXN_REQUEST_LIMIT + 512 * 1024;
/// Key plus value bytes per key: a transaction of [`TXN_KEYS`] puts (about 8 bytes of framing
/// each) just fits [`TXN_REQUEST_LIMIT`]. Its watch response is about as large, so a catch-up
/// that carries two of them in one response exceeds srvd's decode limit.
const TXN_KEY_BYTES: usize = 92;

fn txn_key(i: u32) -> String {
    format!("{PREFIX}txn/k{i:05}")
}

fn txn_name(i: u32) -> String {
    format!("k{i:05}.txn.huge.test.")
}

/// Key `i`'s address as transaction `generation` writes it.
fn txn_ip(generation: u32, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + (generation << 16) + i)
}

/// Key `i`'s value in transaction `generation`, padded to [`TXN_KEY_BYTES`] with its key.
fn txn_value(generation: u32, i: u32) -> String {
    let head = format!(r#"{{"host":"{}","text":""#, txn_ip(generation, i));
    let pad = TXN_KEY_BYTES - txn_key(i).len() - head.len() - 2;
    format!("{head}{}\"}}", "p".repeat(pad))
}

/// Writes every key in one transaction; returns its revision.
async fn write_generation(client: &mut Client, generation: u32) -> i64 {
    let ops: Vec<TxnOp> = (0..TXN_KEYS)
        .map(|i| TxnOp::put(txn_key(i), txn_value(generation, i), None))
        .collect();
    let response = client.txn(Txn::new().and_then(ops)).await.unwrap();
    response.header().unwrap().revision()
}

/// The generation of every `txn/` key in srvd's published mirror (by its address).
fn generations(server: &TestServer) -> std::collections::BTreeSet<u32> {
    server
        .skydns_hosts()
        .iter()
        .filter(|(key, _)| key.starts_with(&format!("{PREFIX}txn/")))
        .map(|(_, host)| u32::from(host.parse::<Ipv4Addr>().unwrap()) >> 16 & 0xff)
        .collect()
}

/// Samples the published mirror until every key is at `generation`: each snapshot must hold one
/// generation only (a transaction is published whole). Returns the samples taken.
async fn until_generation(server: &TestServer, generation: u32) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    loop {
        let seen = generations(server);
        samples += 1;
        assert!(seen.len() <= 1, "a snapshot mixes transactions: {seen:?}");
        if seen.first() == Some(&generation) && server.sync_status().keys == 1 + TXN_KEYS as usize {
            return samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "generation {generation} not all there within 30 s: {seen:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A live transaction of 20,000 keys is one watch response and is published whole. A catch-up
/// over two of them is one response larger than srvd's decode limit (srvd does not ask etcd for
/// fragments: etcd 3.4 cuts them in quadratic time), which srvd answers with one full re-read,
/// also published whole.
async fn transactions_of_twenty_thousand_keys_live_and_in_a_catch_up_too_large_to_decode_publish_whole()
 {
    let etcd = EtcdServer::start_with_flags(
        EtcdOptions::default(),
        &[
            "--max-txn-ops",
            &TXN_KEYS.to_string(),
            "--max-request-bytes",
            &TXN_REQUEST_LIMIT.to_string(),
        ],
    )
    .await;
    let mut client = etcd.client().await;
    client
        .put(
            format!("{PREFIX}before"),
            small(Ipv4Addr::new(10, 0, 0, 9)),
            None,
        )
        .await
        .unwrap();
    let proxy = crate::support::proxy::Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, &[ZONE], None, |e| {
        e.max_response_bytes = TXN_DECODE_LIMIT;
    })
    .await;
    assert_eq!(server.sync_status().keys, 1);
    let addr = server.addr;

    // Live: one transaction, sampled from DNS and from the published mirror while it lands.
    let done = Arc::new(AtomicBool::new(false));
    let dns_watch = tokio::spawn(first_then_last(addr, done.clone()));
    let mut writer = etcd.client().await;
    let live = tokio::spawn(async move { write_generation(&mut writer, 1).await });
    let live_samples = until_generation(&server, 1).await;
    live.await.unwrap();
    assert_eq!(
        server.sync_status().full_reads,
        1,
        "a live transaction is watched"
    );

    // Cut off while two more land: the catch-up carries both in one response of about 4 MB.
    proxy.cut();
    write_generation(&mut client, 2).await;
    write_generation(&mut client, 3).await;
    proxy.open(&[]);
    let catch_up_samples = until_generation(&server, 3).await;
    done.store(true, Ordering::Relaxed);
    let rounds = dns_watch.await.unwrap();

    assert_eq!(
        server.sync_status().full_reads,
        2,
        "the catch-up too large to decode is one full re-read"
    );
    for i in [0, 1, TXN_KEYS / 2, TXN_KEYS - 1] {
        assert_eq!(a_of(addr, &txn_name(i)).await, Some(vec![txn_ip(3, i)]));
    }
    assert_eq!(server.sync_status().keys, 1 + TXN_KEYS as usize);
    assert!(rounds > 0 && live_samples > 0 && catch_up_samples > 0);
}

/// Asks for the first key of the transactions and then for the last, over and over until
/// `done`: the last is never of an older generation than the first was a moment before (it
/// would be if a transaction were published in parts). Returns how many rounds ran.
async fn first_then_last(addr: SocketAddr, done: Arc<AtomicBool>) -> u32 {
    let generation = |reply: Option<Vec<Ipv4Addr>>| {
        reply.and_then(|a| a.first().map(|ip| u32::from(*ip) >> 16 & 0xff))
    };
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) {
        let first = generation(a_of(addr, &txn_name(0)).await);
        let last = generation(a_of(addr, &txn_name(TXN_KEYS - 1)).await);
        assert!(
            last >= first,
            "key 0 was at generation {first:?}, key {} then at {last:?}",
            TXN_KEYS - 1
        );
        rounds += 1;
    }
    rounds
}
