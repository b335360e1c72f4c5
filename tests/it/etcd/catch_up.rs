//! Catch-ups that break: a proxy between srvd and etcd cuts the watch while etcd replays a
//! backlog (more than 1,000 revisions, so several responses), and afterwards the mirror must equal
//! a full read of etcd, key for key, at a revision etcd really had.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use hickory_proto::rr::{RData, RecordType};

use crate::support::dns::{a_of, query, udp};
use crate::support::etcd::EtcdServer;
use crate::support::proxy::Proxy;
use crate::support::srvd::TestServer;

const ZONE: &[&str] = &["skydns.test."];
const PREFIX: &str = "/skydns/test/skydns/";

fn key(i: u32) -> String {
    format!("{PREFIX}bulk/k{i:05}")
}

fn name(i: u32) -> String {
    format!("k{i:05}.bulk.skydns.test.")
}

fn host(value: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + value)
}

fn value(address: Ipv4Addr) -> String {
    format!(r#"{{"host":"{address}"}}"#)
}

/// The SOA serial srvd gives for the test zone.
async fn soa_serial(addr: SocketAddr) -> u32 {
    let reply = udp(addr, &query("skydns.test.", RecordType::SOA)).await;
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA: {other:?}"),
    }
}

/// Every `bulk/kNNNNN` key as etcd holds it now (one read), and etcd's revision.
async fn etcd_bulk(client: &mut Client) -> (BTreeMap<u32, Ipv4Addr>, i64) {
    let prefix = format!("{PREFIX}bulk/");
    let response = client
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut keys = BTreeMap::new();
    for kv in response.kvs() {
        let i: u32 = kv.key_str().unwrap()[prefix.len() + 1..].parse().unwrap();
        let host = kv
            .value_str()
            .unwrap()
            .trim_start_matches(r#"{"host":""#)
            .trim_end_matches(r#""}"#)
            .parse()
            .unwrap();
        keys.insert(i, host);
    }
    (keys, response.header().unwrap().revision())
}

/// Names (of `0..universe`) whose answer differs from `etcd`.
async fn differences(
    addr: SocketAddr,
    universe: u32,
    etcd: &BTreeMap<u32, Ipv4Addr>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for i in 0..universe {
        let expected = etcd.get(&i).map(|a| vec![*a]);
        let got = a_of(addr, &name(i)).await;
        if got != expected {
            wrong.push(format!("{}: srvd {got:?}, etcd {expected:?}", name(i)));
        }
    }
    wrong
}

/// Bounded poll until srvd's mirror holds exactly etcd's keys at etcd's revision; panics with
/// what differs.
async fn until_equal_to_etcd(
    server: &TestServer,
    client: &mut Client,
    universe: u32,
    limit: Duration,
) -> i64 {
    let (etcd, revision) = etcd_bulk(client).await;
    let deadline = Instant::now() + limit;
    loop {
        let status = server.sync_status();
        if status.keys == etcd.len() && status.revision == Some(revision) {
            let wrong = differences(server.addr, universe, &etcd).await;
            assert!(wrong.is_empty(), "{} names differ: {wrong:?}", wrong.len());
            return revision;
        }
        if Instant::now() >= deadline {
            let wrong = differences(server.addr, universe, &etcd).await;
            panic!(
                "not within {limit:?}: srvd's mirror claims revision {:?} with {} keys; etcd is \
                 at {revision} with {} keys; {} of {universe} names differ (first: {:?})",
                status.revision,
                status.keys,
                etcd.len(),
                wrong.len(),
                wrong.first()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` single-key writes (every third a delete), one revision each, from 8 writers at once.
async fn write_backlog(url: &str, count: u32, universe: u32) -> i64 {
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let mut client = Client::connect([url], None).await.unwrap();
        writers.push(tokio::spawn(async move {
            let mut last = 0;
            for n in (w..count).step_by(8) {
                let i = n * 7 % universe;
                let header = if n % 3 == 0 {
                    client.delete(key(i), None).await.unwrap().header().cloned()
                } else {
                    let address = host(100_000 + n);
                    client
                        .put(key(i), value(address), None)
                        .await
                        .unwrap()
                        .header()
                        .cloned()
                };
                last = header.unwrap().revision().max(last);
            }
            last
        }));
    }
    let mut last = 0;
    for writer in writers {
        last = writer.await.unwrap().max(last);
    }
    last
}

#[tokio::test]
async fn a_watch_cut_during_a_catch_up_of_thousands_of_revisions_loses_nothing() {
    const UNIVERSE: u32 = 2_000;
    const BACKLOG: u32 = 3_500;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for chunk in 0..10u32 {
        let ops: Vec<TxnOp> = (chunk * 100..chunk * 100 + 100)
            .map(|i| TxnOp::put(key(i), value(host(i)), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let proxy = Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, ZONE, None, |_| {}).await;
    until_equal_to_etcd(&server, &mut client, UNIVERSE, Duration::from_secs(10)).await;

    proxy.cut();
    let started = Instant::now();
    let last = write_backlog(&etcd.url, BACKLOG, UNIVERSE).await;
    eprintln!(
        "{BACKLOG} writes while srvd was cut off took {:?}; etcd at {last}",
        started.elapsed()
    );
    assert_eq!(a_of(server.addr, &name(1)).await, Some(vec![host(1)]));

    // One catch-up response of 1,000 revisions is ~60 KB here: the first connection breaks
    // after the first response, the second after the next one, the third inside one.
    proxy.open(&[90_000, 90_000, 30_000, 90_000]);
    let started = Instant::now();
    let revision =
        until_equal_to_etcd(&server, &mut client, UNIVERSE, Duration::from_secs(30)).await;
    eprintln!(
        "caught up after {:?} with {} budget cuts",
        started.elapsed(),
        proxy.budget_cuts()
    );
    assert_eq!(revision, last);
    assert!(
        proxy.budget_cuts() >= 2,
        "the catch-up was cut at least twice"
    );
    // Every write was in the zone, so its serial is the last write's revision.
    assert_eq!(i64::from(soa_serial(server.addr).await), last);
}

/// A 1.2 MB value (etcd's default --max-request-bytes, 1.5 MiB, accepts it) whose key answers A
/// `10.9.0.<i>`.
fn big_value(i: u8) -> String {
    format!(
        r#"{{"host":"10.9.0.{i}","text":"{}"}}"#,
        "x".repeat(1_200_000)
    )
}

const FOUR_MIB: usize = 4 * 1024 * 1024;

#[tokio::test]
async fn large_values_before_start_during_the_watch_and_while_cut_off_are_synced() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    // Six values of 1.2 MB: 7.2 MB in one page of the listing, above the 4 MiB limit.
    for i in 0..3u8 {
        client
            .put(format!("{PREFIX}big/before{i}"), big_value(i), None)
            .await
            .unwrap();
        client
            .put(format!("/skydns/elsewhere/big{i}"), big_value(i), None)
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, ZONE, None, |e| {
        e.max_response_bytes = FOUR_MIB;
    })
    .await;
    assert_eq!(
        a_of(server.addr, "before2.big.skydns.test.").await,
        Some(vec![Ipv4Addr::new(10, 9, 0, 2)])
    );

    // During the watch: one large value per response.
    let mut last = 0;
    for i in 10..13u8 {
        let r = client
            .put(format!("{PREFIX}big/during{i}"), big_value(i), None)
            .await
            .unwrap();
        last = r.header().unwrap().revision();
    }
    server.wait_for_revision(last).await;

    // While cut off: the catch-up holds 7.2 MB of values, more than one response may carry
    // (srvd does not ask for fragments): it is replaced by a full re-read, whose pages fit.
    proxy.cut();
    for i in 20..26u8 {
        client
            .put(format!("{PREFIX}big/away{i}"), big_value(i), None)
            .await
            .unwrap();
    }
    client
        .put(format!("{PREFIX}small"), value(host(7)), None)
        .await
        .unwrap();
    proxy.open(&[]);
    let reply = crate::support::eventually(
        Duration::from_secs(15),
        "the small key written after the large ones is answered",
        || async { a_of(server.addr, "small.skydns.test.").await },
    )
    .await;
    assert_eq!(reply, vec![host(7)]);
    for i in [10u8, 20, 25] {
        let name = if i < 20 {
            format!("during{i}.big.skydns.test.")
        } else {
            format!("away{i}.big.skydns.test.")
        };
        assert_eq!(
            a_of(server.addr, &name).await,
            Some(vec![Ipv4Addr::new(10, 9, 0, i)]),
            "{name}"
        );
    }
    // And it carries on.
    server
        .put(&mut client, &format!("{PREFIX}later"), &value(host(8)))
        .await;
    assert_eq!(
        a_of(server.addr, "later.skydns.test.").await,
        Some(vec![host(8)])
    );
    assert_eq!(server.sync_status().keys, 3 + 3 + 3 + 6 + 2);
}

#[tokio::test]
async fn one_key_larger_than_the_limit_is_an_error_naming_the_key_and_the_flag() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(format!("{PREFIX}fine"), value(host(1)), None)
        .await
        .unwrap();
    client
        .put(format!("{PREFIX}huge"), big_value(1), None)
        .await
        .unwrap();
    let mut etcd_client = srvd::sync::etcd::Etcd::connect(
        std::slice::from_ref(&etcd.url),
        "/skydns/",
        1024 * 1024,
        &Default::default(),
    )
    .await
    .unwrap();
    let error = etcd_client.list().await.unwrap_err().to_string();
    assert_eq!(
        error,
        "etcd key /skydns/test/skydns/huge is larger than --etcd-max-response-bytes \
         (1048576 bytes); raise the limit"
    );
}

#[tokio::test]
async fn a_value_too_large_for_the_limit_is_logged_once_as_such_not_as_unreachable() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(format!("{PREFIX}fine"), value(host(1)), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut srvd = crate::support::srvd::spawn_binary_logging(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            "skydns.test.",
            "--etcd-max-response-bytes",
            "1048576",
        ],
        "srvd=debug",
    );
    // The first read must be done before the huge value exists, or it is that read (not the
    // watch) that meets it.
    srvd.until_etcd_synced(Duration::from_secs(20));
    // A 1.2 MB value during the watch: every retry of the watch meets it again.
    client
        .put(format!("{PREFIX}huge"), big_value(1), None)
        .await
        .unwrap();
    let retries = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("etcd sync still failing"))
            .count()
    };
    srvd.log_until(Duration::from_secs(20), |log| retries(log) >= 4);
    let count = |text: &str| srvd.log.iter().filter(|l| l.contains(text)).count();
    assert_eq!(
        count("WARN"),
        1,
        "one warning for the whole outage: {:#?}",
        srvd.log
    );
    assert_eq!(count("too large to decode"), 1);
    assert_eq!(count("etcd unreachable"), 0);
    assert_eq!(count("reachable again"), 0);
    assert!(
        srvd.log
            .iter()
            .any(|l| l.contains("--etcd-max-response-bytes (1048576 bytes)")),
        "the warning names the option: {:#?}",
        srvd.log
    );
    // Meanwhile the last snapshot is served.
    assert_eq!(
        a_of(srvd.addr, "fine.skydns.test.").await,
        Some(vec![host(1)])
    );
}

/// The listing pages through the prefix with the next page's request sent before the current
/// page is handed over. With pages of 7 keys (so hundreds of page edges), and puts between
/// listed keys, deletes and overwrites racing the read, what it returns must be exactly etcd's
/// content at the revision it reports: no key lost or repeated at an edge, none from a later
/// revision.
#[tokio::test]
async fn a_paged_listing_raced_by_writes_is_exactly_the_store_at_its_revision() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    // Even keys 0..1,000 before the read; the writer puts odd keys between them.
    for chunk in (0..1_000u32).step_by(2).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| TxnOp::put(key(*i), value(host(*i)), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let (started, mut started_rx) = tokio::sync::mpsc::channel(1);
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let (mut client, stop) = (etcd.client().await, stop.clone());
        tokio::spawn(async move {
            let mut writes = 0u32;
            // Spread over the whole range, so writes land ahead of the read wherever it is.
            for j in (0..250u32).cycle().map(|j| j * 101 % 250) {
                if stop.is_cancelled() {
                    break;
                }
                client
                    .put(key(4 * j + 1), value(host(j)), None)
                    .await
                    .unwrap();
                client.delete(key(4 * j), None).await.unwrap();
                client
                    .put(key(4 * j + 2), value(host(j + 7)), None)
                    .await
                    .unwrap();
                writes += 3;
                let _ = started.try_send(());
            }
            writes
        })
    };
    started_rx.recv().await.unwrap();
    let mut lister = srvd::sync::etcd::Etcd::connect(
        std::slice::from_ref(&etcd.url),
        "/skydns/",
        FOUR_MIB,
        &Default::default(),
    )
    .await
    .unwrap()
    .with_page_size(7);
    let listing = lister.list().await.unwrap();
    stop.cancel();
    let writes = writer.await.unwrap();
    let store = client
        .get(
            "/skydns/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_revision(listing.revision),
            ),
        )
        .await
        .unwrap();
    let expected: Vec<(String, String, i64)> = store
        .kvs()
        .iter()
        .map(|kv| {
            let (key, value) = (kv.key_str().unwrap(), kv.value_str().unwrap());
            (key.to_string(), value.to_string(), kv.mod_revision())
        })
        .collect();
    let listed: Vec<(String, String, i64)> = listing
        .kvs
        .iter()
        .map(|kv| {
            let key = String::from_utf8(kv.key.clone()).unwrap();
            let value = String::from_utf8(kv.value.clone()).unwrap();
            (key, value, kv.mod_revision)
        })
        .collect();
    assert!(
        expected.len() > 400,
        "{} keys at the listing's revision",
        expected.len()
    );
    assert_eq!(
        listed.len(),
        expected.len(),
        "{writes} writes raced the read"
    );
    assert_eq!(listed, expected, "{writes} writes raced the read");
}
