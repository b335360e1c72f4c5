//! The mirror's sync guarantees against a real etcd: visibility, outages, restarts, compaction,
//! bursts, malformed values, leases, precedence of zone files, and RFC 2782 order.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::dns::{self, a_of, query, udp};
use crate::support::etcd::EtcdServer;
use crate::support::srvd::{TestServer, spawn_binary_logging};
use crate::support::{eventually, shipped_zones};

const ZONE: &[&str] = &["skydns.test."];

fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// Polls (up to `limit`) until `name` answers `expected` (`None`: NXDOMAIN).
async fn until_answer(
    addr: SocketAddr,
    name: &str,
    expected: Option<Vec<Ipv4Addr>>,
    limit: Duration,
    what: &str,
) {
    let expected = &expected;
    eventually(limit, what, || async move {
        (a_of(addr, name).await == *expected).then_some(())
    })
    .await;
}

async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    client
        .put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

fn bulk_key(i: u32) -> String {
    format!("/skydns/test/skydns/bulk/k{i}")
}

fn bulk_name(i: u32) -> String {
    format!("k{i}.bulk.skydns.test.")
}

/// Asserts that every name in `model` (key index → address, or deleted) answers as the model says.
async fn assert_mirror_equals(addr: SocketAddr, model: &BTreeMap<u32, Option<Ipv4Addr>>) {
    for (i, expected) in model {
        let got = a_of(addr, &bulk_name(*i)).await;
        assert_eq!(got, expected.map(|a| vec![a]), "{}", bulk_name(*i));
    }
}

#[tokio::test]
async fn a_put_becomes_visible_and_a_delete_disappears() {
    let etcd = EtcdServer::start().await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    let mut client = etcd.client().await;
    assert_eq!(a_of(server.addr, "x1.skydns.test.").await, None);
    put(
        &mut client,
        "/skydns/test/skydns/x1",
        r#"{"host":"10.0.0.1"}"#,
    )
    .await;
    until_answer(
        server.addr,
        "x1.skydns.test.",
        Some(vec![ip(1)]),
        Duration::from_secs(5),
        "the put is served",
    )
    .await;
    client.delete("/skydns/test/skydns/x1", None).await.unwrap();
    until_answer(
        server.addr,
        "x1.skydns.test.",
        None,
        Duration::from_secs(5),
        "the delete is served",
    )
    .await;
}

#[tokio::test]
async fn answers_continue_while_etcd_is_down_and_writes_arrive_after_a_restart() {
    let mut etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/skydns/a",
        r#"{"host":"10.0.0.1"}"#,
    )
    .await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    etcd.stop();
    for _ in 0..20 {
        assert_eq!(
            a_of(server.addr, "a.skydns.test.").await,
            Some(vec![ip(1)]),
            "served while etcd is down"
        );
    }
    etcd.restart().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/skydns/b",
        r#"{"host":"10.0.0.2"}"#,
    )
    .await;
    until_answer(
        server.addr,
        "b.skydns.test.",
        Some(vec![ip(2)]),
        Duration::from_secs(5),
        "a write after the restart is served within 5 s",
    )
    .await;
    assert_eq!(a_of(server.addr, "a.skydns.test.").await, Some(vec![ip(1)]));
    assert_eq!(
        server.sync_status().full_reads,
        1,
        "resumed the watch, no re-read"
    );
}

#[tokio::test]
async fn writes_and_a_compaction_while_away_lead_to_a_full_resync() {
    let mut etcd = EtcdServer::start().await;
    let home = etcd.url.clone();
    let mut client = etcd.client().await;
    let mut model = BTreeMap::new();
    for i in 0..200 {
        put(
            &mut client,
            &bulk_key(i),
            &format!(r#"{{"host":"{}"}}"#, ip(i)),
        )
        .await;
        model.insert(i, Some(ip(i)));
    }
    let server = TestServer::start_etcd(&home, ZONE, None, |_| {}).await;
    assert_mirror_equals(server.addr, &model).await;

    // srvd falls behind: etcd moves to another port, is written to and compacted there.
    let away = etcd.move_to_new_port().await;
    let mut client = Client::connect([&away], None).await.unwrap();
    let mut last = 0;
    for i in 0..200u32 {
        match i % 3 {
            0 => {
                client.delete(bulk_key(i), None).await.unwrap();
                model.insert(i, None);
            }
            1 => {
                last = put(
                    &mut client,
                    &bulk_key(i),
                    &format!(r#"{{"host":"{}"}}"#, ip(i + 1000)),
                )
                .await;
                model.insert(i, Some(ip(i + 1000)));
            }
            _ => {}
        }
    }
    for i in 200..260 {
        last = put(
            &mut client,
            &bulk_key(i),
            &format!(r#"{{"host":"{}"}}"#, ip(i)),
        )
        .await;
        model.insert(i, Some(ip(i)));
    }
    client.compact(last, None).await.unwrap();
    // Meanwhile srvd keeps answering from its last snapshot.
    assert_eq!(a_of(server.addr, &bulk_name(0)).await, Some(vec![ip(0)]));

    etcd.move_back(&home).await;
    server.wait_for_revision(last).await;
    assert_eq!(
        server.sync_status().full_reads,
        2,
        "compaction forced a full re-read"
    );
    assert_mirror_equals(server.addr, &model).await;
}

#[tokio::test]
async fn ten_thousand_keys_then_a_burst_of_five_thousand_changes_leave_the_mirror_equal_to_etcd() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let mut model = BTreeMap::new();
    // Load 10,000 keys in transactions of 100 (etcd's default max ops per txn is 128).
    for chunk in 0..100u32 {
        let ops: Vec<etcd_client::TxnOp> = (chunk * 100..chunk * 100 + 100)
            .map(|i| {
                model.insert(i, Some(ip(i)));
                etcd_client::TxnOp::put(bulk_key(i), format!(r#"{{"host":"{}"}}"#, ip(i)), None)
            })
            .collect();
        client
            .txn(etcd_client::Txn::new().and_then(ops))
            .await
            .unwrap();
    }
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    assert_eq!(server_keys(&server), 10_000);

    // 5,000 single-key puts and deletes as fast as etcd takes them, from 8 writers.
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let mut client = etcd.client().await;
        writers.push(tokio::spawn(async move {
            let mut last = 0;
            let mut changes = Vec::new();
            for n in 0..625u32 {
                let i = (n * 8 + w) * 7 % 12_000;
                if n % 2 == 0 {
                    let r = client.delete(bulk_key(i), None).await.unwrap();
                    last = last.max(r.header().unwrap().revision());
                    changes.push((i, None));
                } else {
                    let addr = ip(i + 20_000);
                    last = last.max(
                        put(
                            &mut client,
                            &bulk_key(i),
                            &format!(r#"{{"host":"{addr}"}}"#),
                        )
                        .await,
                    );
                    changes.push((i, Some(addr)));
                }
            }
            (last, changes)
        }));
    }
    let mut last = 0;
    for writer in writers {
        let (rev, changes) = writer.await.unwrap();
        last = last.max(rev);
        for (i, value) in changes {
            model.insert(i, value);
        }
    }
    server.wait_for_revision(last).await;
    assert_mirror_equals(server.addr, &model).await;
}

fn server_keys(server: &TestServer) -> usize {
    server.sync_status().keys
}

#[tokio::test]
async fn a_malformed_value_is_skipped_and_its_neighbours_are_served() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/skydns/svc/good",
        r#"{"host":"10.0.0.1"}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/test/skydns/svc/bad",
        r#"{"host":"10.0.0.2","port":"80"}"#,
    )
    .await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    assert_eq!(
        a_of(server.addr, "svc.skydns.test.").await,
        Some(vec![ip(1)])
    );
    // A good value turned bad is removed (never served stale), the rest stays.
    let r = put(
        &mut client,
        "/skydns/test/skydns/svc/good2",
        r#"{"host":"10.0.0.3"}"#,
    )
    .await;
    server.wait_for_revision(r).await;
    let r = put(&mut client, "/skydns/test/skydns/svc/good2", "{not json").await;
    server.wait_for_revision(r).await;
    assert_eq!(
        a_of(server.addr, "svc.skydns.test.").await,
        Some(vec![ip(1)])
    );
    let r = put(
        &mut client,
        "/skydns/test/skydns/svc/bad",
        r#"{"host":"10.0.0.2","port":80}"#,
    )
    .await;
    server.wait_for_revision(r).await;
    let mut got = a_of(server.addr, "svc.skydns.test.").await.unwrap();
    got.sort();
    assert_eq!(got, vec![ip(1), ip(2)], "fixed value served");
}

#[tokio::test]
async fn a_leased_key_has_a_ttl_within_the_lease_and_is_gone_after_revocation() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let lease = client.lease_grant(100, None).await.unwrap().id();
    let options = || Some(PutOptions::new().with_lease(lease));
    client
        .put(
            "/skydns/test/skydns/leased/a",
            r#"{"host":"10.0.0.1"}"#,
            options(),
        )
        .await
        .unwrap();
    let r = client
        .put(
            "/skydns/test/skydns/leased/b",
            r#"{"host":"10.0.0.2","ttl":60}"#,
            options(),
        )
        .await
        .unwrap();
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    server
        .wait_for_revision(r.header().unwrap().revision())
        .await;
    // The lease table learns the deadline asynchronously; until then TTLs use the lower bound.
    let ttl = eventually(Duration::from_secs(5), "lease TTL learned", || async {
        let reply = udp(server.addr, &query("a.leased.skydns.test.", RecordType::A)).await;
        let ttl = reply.answers.first()?.ttl;
        (ttl > 30).then_some(ttl)
    })
    .await;
    assert!(
        (90..=100).contains(&ttl),
        "TTL {ttl} within the lease's remaining 100 s"
    );
    let reply = udp(server.addr, &query("b.leased.skydns.test.", RecordType::A)).await;
    assert_eq!(reply.answers[0].ttl, 60, "no more than the value's ttl");

    client.lease_revoke(lease).await.unwrap();
    until_answer(
        server.addr,
        "leased.skydns.test.",
        None,
        Duration::from_secs(5),
        "keys gone after revocation",
    )
    .await;
}

#[tokio::test]
async fn lease_ttls_are_clamped_to_the_configured_bounds() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let lease = client.lease_grant(1000, None).await.unwrap().id();
    let r = client
        .put(
            "/skydns/test/skydns/clamped",
            r#"{"host":"10.0.0.1"}"#,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |e| {
        e.lease_bounds.min_secs = 40;
        e.lease_bounds.max_secs = 120;
    })
    .await;
    server
        .wait_for_revision(r.header().unwrap().revision())
        .await;
    eventually(
        Duration::from_secs(5),
        "TTL clamped to the upper bound",
        || async {
            let reply = udp(server.addr, &query("clamped.skydns.test.", RecordType::A)).await;
            (reply.answers.first()?.ttl == 120).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn in_a_zone_with_a_zone_file_names_in_the_file_win_and_soa_ns_come_from_it() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/local/service/web/_tcp/_http/inst0",
        r#"{"host":"10.99.0.1","port":80}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/local/service/backend/_tcp/_http/x1",
        r#"{"host":"10.0.0.1","port":8080}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/local/service/dns/ns/ns9",
        r#"{"host":"10.0.0.53"}"#,
    )
    .await;
    let server = TestServer::start_etcd(
        &etcd.url,
        &["service.local."],
        Some(&shipped_zones()),
        |_| {},
    )
    .await;

    // A name that owns records in the file: the file alone.
    assert_eq!(
        a_of(server.addr, "inst0._http._tcp.web.service.local.").await,
        Some(vec![ip(1)])
    );
    // Other names: etcd.
    let reply = udp(
        server.addr,
        &query("_http._tcp.backend.service.local.", RecordType::SRV),
    )
    .await;
    assert_eq!(
        dns::section(&reply.answers),
        vec![
            "_http._tcp.backend.service.local. 300 SRV 10 100 8080 x1._http._tcp.backend.service.local."
        ]
    );
    assert_eq!(
        dns::section(&reply.additionals),
        vec!["x1._http._tcp.backend.service.local. 300 A 10.0.0.1"]
    );
    // SOA and apex NS: the file's.
    let reply = udp(server.addr, &query("service.local.", RecordType::SOA)).await;
    assert!(
        dns::text(&reply.answers[0]).contains("2026112401"),
        "{:?}",
        reply.answers
    );
    let reply = udp(server.addr, &query("service.local.", RecordType::NS)).await;
    assert_eq!(
        dns::section(&reply.answers),
        vec!["service.local. 3600 NS ns1.service.local."]
    );
    // Nothing anywhere: NXDOMAIN with the file's SOA.
    let reply = udp(server.addr, &query("nope.service.local.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(dns::text(&reply.authorities[0]).contains("2026112401"));
}

#[tokio::test]
async fn etcd_fed_srv_answers_follow_rfc_2782_order() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/local/service/backend/_tcp/_http/i0",
        r#"{"host":"10.0.0.1","port":80,"weight":60}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/local/service/backend/_tcp/_http/i1",
        r#"{"host":"10.0.0.2","port":80,"weight":30}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/local/service/backend/_tcp/_http/i2",
        r#"{"host":"10.0.0.3","port":80,"priority":20}"#,
    )
    .await;
    let server = TestServer::start_etcd(&etcd.url, &["service.local."], None, |_| {}).await;
    let message = query("_http._tcp.backend.service.local.", RecordType::SRV);
    let rounds = 10_000;
    let mut i0_first = 0u32;
    for _ in 0..rounds {
        let reply = udp(server.addr, &message).await;
        let srvs = dns::srvs(&reply.answers);
        assert_eq!(srvs.len(), 3);
        assert_eq!(
            (srvs[0].0, srvs[1].0, srvs[2].0),
            (10, 10, 20),
            "priorities ascend"
        );
        i0_first += u32::from(srvs[0].3.starts_with("i0."));
    }
    // Normalised weights 66 and 33: i0 first in 66.7% (σ = 0.47 points over 10,000 draws).
    let share = f64::from(i0_first) * 100.0 / f64::from(rounds);
    assert!((share - 66.67).abs() < 3.0, "i0 first in {share:.2}%");
}

#[tokio::test]
async fn with_several_endpoints_a_dead_one_is_passed_over() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/skydns/a",
        r#"{"host":"10.0.0.1"}"#,
    )
    .await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut etcd_config = srvd::config::EtcdConfig::new(vec![dead, etcd.url.clone()]);
    etcd_config.zones = vec![srvd::config::parse_zone("skydns.test.").unwrap()];
    let config = srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: srvd::config::ZoneSource::None,
        etcd: Some(etcd_config),
        ..srvd::config::Config::default()
    };
    let running = srvd::daemon::start(&config).await.unwrap();
    let addr = running.addrs[0];
    // srvd serves before its first read (SERVFAIL until then): wait for it, bounded.
    until_answer(
        addr,
        "a.skydns.test.",
        Some(vec![ip(1)]),
        Duration::from_secs(10),
        "first read through the live endpoint",
    )
    .await;
    put(
        &mut client,
        "/skydns/test/skydns/b",
        r#"{"host":"10.0.0.2"}"#,
    )
    .await;
    until_answer(
        addr,
        "b.skydns.test.",
        Some(vec![ip(2)]),
        Duration::from_secs(5),
        "watch works through the live endpoint",
    )
    .await;
    running.shutdown();
    running.wait().await;
}

#[tokio::test]
async fn before_the_first_sync_etcd_zones_answer_servfail_not_nxdomain() {
    let mut etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/skydns/a",
        r#"{"host":"10.0.0.1"}"#,
    )
    .await;
    etcd.stop();
    let mut etcd_config = srvd::config::EtcdConfig::new(vec![etcd.url.clone()]);
    etcd_config.zones = vec![srvd::config::parse_zone("skydns.test.").unwrap()];
    let config = srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: srvd::config::ZoneSource::None,
        etcd: Some(etcd_config),
        ..srvd::config::Config::default()
    };
    let running = srvd::daemon::start(&config).await.unwrap();
    let addr = running.addrs[0];
    for name in ["a.skydns.test.", "missing.skydns.test."] {
        let reply = udp(addr, &query(name, RecordType::A)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::ServFail,
            "{name}"
        );
    }
    etcd.restart().await;
    until_answer(
        addr,
        "a.skydns.test.",
        Some(vec![ip(1)]),
        Duration::from_secs(10),
        "served once etcd is up",
    )
    .await;
    assert_eq!(
        a_of(addr, "missing.skydns.test.").await,
        None,
        "NXDOMAIN once synced"
    );
    running.shutdown();
    running.wait().await;
}

/// Writes `hosts` (key index → address) in transactions of 100.
async fn put_all(client: &mut Client, hosts: impl Iterator<Item = (String, Ipv4Addr)>) {
    let ops: Vec<TxnOp> = hosts
        .map(|(key, host)| TxnOp::put(key, format!(r#"{{"host":"{host}"}}"#), None))
        .collect();
    for chunk in ops.chunks(100) {
        client
            .txn(Txn::new().and_then(chunk.to_vec()))
            .await
            .unwrap();
    }
}

fn multi_key(j: u8) -> String {
    format!("/skydns/test/skydns/multi/m{j}")
}

/// srvd is cut off while etcd is written to and compacted past its revision: it re-reads
/// everything exactly once, and a query loop running across that re-read sees the old mirror
/// or the new one, whole, for every answer: a name that exists before and after never goes
/// missing, and a name with several records never answers a mix of old and new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_away_is_one_full_reread_swapped_in_whole() {
    const KEYS: u32 = 3000;
    let mut etcd = EtcdServer::start().await;
    let home = etcd.url.clone();
    let mut client = etcd.client().await;
    put_all(&mut client, (0..KEYS).map(|i| (bulk_key(i), ip(i)))).await;
    let old: Vec<Ipv4Addr> = (0..8).map(|j| Ipv4Addr::new(10, 9, 0, j)).collect();
    put_all(
        &mut client,
        (0..8).map(|j| (multi_key(j), old[usize::from(j)])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut srvd = spawn_binary_logging(
        dir.path(),
        &["--etcd", &home, "--zone", "skydns.test."],
        "srvd=info",
    );
    srvd.until_etcd_synced(Duration::from_secs(10));
    let addr = srvd.addr;

    // Away: a third of the keys deleted, a third changed, new ones added; every record of the
    // multi-record name changed, one deleted, one added; then compacted.
    let away = etcd.move_to_new_port().await;
    let mut client = Client::connect([&away], None).await.unwrap();
    let mut model: BTreeMap<u32, Option<Ipv4Addr>> = (0..KEYS).map(|i| (i, Some(ip(i)))).collect();
    for i in (0..KEYS).filter(|i| i % 3 == 0) {
        client.delete(bulk_key(i), None).await.unwrap();
        model.insert(i, None);
    }
    let changed = (0..KEYS).filter(|i| i % 3 == 1);
    put_all(
        &mut client,
        changed.clone().map(|i| (bulk_key(i), ip(i + 100_000))),
    )
    .await;
    model.extend(changed.map(|i| (i, Some(ip(i + 100_000)))));
    put_all(
        &mut client,
        (KEYS..KEYS + 300).map(|i| (bulk_key(i), ip(i))),
    )
    .await;
    model.extend((KEYS..KEYS + 300).map(|i| (i, Some(ip(i)))));
    client.delete(multi_key(7), None).await.unwrap();
    let mut new: Vec<Ipv4Addr> = (0..7).map(|j| Ipv4Addr::new(10, 9, 1, j)).collect();
    new.push(Ipv4Addr::new(10, 9, 1, 8));
    let moved = (0..7).map(|j| (multi_key(j), new[usize::from(j)]));
    put_all(&mut client, moved.chain([(multi_key(8), new[7])])).await;
    let last = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(last, None).await.unwrap();

    // Queries across the re-read: unchanged names (i % 3 == 2) and the multi-record name.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (old_set, new_set) = (old.clone(), new.clone());
    let queries = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut failures, mut seen_old, mut seen_new, mut n) = (Vec::new(), 0u32, 0u32, 0u32);
        // Runs on until told to stop and it has itself seen the new mirror a few times.
        let done = |seen_new| flag.load(Ordering::Relaxed) && seen_new >= 20;
        while !done(seen_new) && n < 200_000 && Instant::now() < deadline {
            if n % 2 == 0 {
                let i = (n / 2 * 3 + 2) % KEYS / 3 * 3 + 2;
                let got = a_of(addr, &bulk_name(i)).await;
                if got != Some(vec![ip(i)]) {
                    failures.push(format!("{}: {got:?}", bulk_name(i)));
                }
            } else {
                let mut got = a_of(addr, "multi.skydns.test.").await.unwrap_or_default();
                got.sort_unstable();
                if got == old_set {
                    seen_old += 1;
                } else if got == new_set {
                    seen_new += 1;
                } else {
                    failures.push(format!("multi.skydns.test.: {got:?}"));
                }
            }
            n += 1;
        }
        (n, failures, seen_old, seen_new)
    });
    eventually(Duration::from_secs(10), "queries run", || async {
        (a_of(addr, "multi.skydns.test.").await.is_some()).then_some(())
    })
    .await;
    etcd.move_back(&home).await;
    tokio::task::block_in_place(|| {
        srvd.log_until(Duration::from_secs(30), |log| {
            log.iter()
                .any(|l| l.contains("etcd mirror re-read in full"))
        });
    });
    let mut sorted = a_of(addr, "multi.skydns.test.").await.unwrap();
    sorted.sort_unstable();
    assert_eq!(sorted, new, "the new records, each once");
    stop.store(true, Ordering::Relaxed);
    let (count, failures, seen_old, seen_new) = queries.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {count} answers neither the old mirror nor the new one: {failures:#?}",
        failures.len()
    );
    assert!(
        seen_old > 0 && seen_new > 0,
        "the loop ran across the swap: {seen_old} old, {seen_new} new"
    );
    eprintln!(
        "figure: {count} queries across the re-read ({seen_old} old, {seen_new} new), 0 failed"
    );
    assert_mirror_equals(addr, &model).await;
    let count = |text: &str| srvd.log.iter().filter(|l| l.contains(text)).count();
    assert_eq!(
        (count("re-reading everything"), count("re-read in full")),
        (1, 1),
        "one full re-read: {:#?}",
        srvd.log
    );
}
