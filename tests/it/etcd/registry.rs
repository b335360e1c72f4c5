//! The registry layout mirrored beside SkyDNS by the same sync task: keys under `/services`
//! written before start, during the watch and while srvd is cut off all end up in the registry
//! mirror exactly as etcd holds them, and SkyDNS answers carry on unaffected.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use srvd::backend::registry::{RegistryEntry, Target};

use crate::support::dns::a_of;
use crate::support::etcd::EtcdServer;
use crate::support::eventually;
use crate::support::proxy::Proxy;
use crate::support::srvd::TestServer;

const ZONE: &[&str] = &["skydns.test."];
const SKYDNS: &str = "/skydns/test/skydns/";
const SERVICES: &str = "/services";

fn with_registry(etcd: &mut srvd::config::EtcdConfig) {
    etcd.registry_prefixes = vec![SERVICES.to_string()];
}

/// What the registry mirror says of a key: target, port, weight, TXT.
fn summary(entries: &BTreeMap<String, RegistryEntry>) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, e)| {
            let target = match &e.target {
                Target::Address(ip) => ip.to_string(),
                Target::Host(name) => name.to_string(),
            };
            (
                key.clone(),
                format!("{target}:{} w{} {:?}", e.port, e.weight, e.txt),
            )
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls until the registry mirror's summary is `want`; panics with both otherwise.
async fn until_registry(server: &TestServer, want: &BTreeMap<String, String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = summary(&server.registry());
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "registry mirror not as expected within 10 s:\n got  {got:#?}\n want {want:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registry_keys_before_start_and_during_the_watch_are_mirrored_exactly() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let put = async |client: &mut Client, key: &str, value: &str| {
        client.put(key, value, None).await.unwrap();
    };
    put(
        &mut client,
        "/services/web/web-01",
        r#"{"Addr":"10.0.1.10","Port":8080,"Weight":50,"Metadata":{"version":"2"}}"#,
    )
    .await;
    put(
        &mut client,
        "/services/api/a1",
        r#"{"addr":"10.0.1.11:9000"}"#,
    )
    .await;
    put(&mut client, "/services/api/broken", "not json").await;
    put(&mut client, &format!("{SKYDNS}x"), r#"{"host":"10.0.0.1"}"#).await;
    let skipped_before = srvd::sync::SKIPPED_KEYS.load(Ordering::Relaxed);
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, with_registry).await;

    until_registry(
        &server,
        &expected(&[
            ("/services/api/a1", "10.0.1.11:9000 w1 []"),
            (
                "/services/web/web-01",
                r#"10.0.1.10:8080 w50 ["version=2"]"#,
            ),
        ]),
    )
    .await;
    let status = server.sync_status();
    assert_eq!((status.keys, status.registry_keys), (1, 2));
    assert!(
        srvd::sync::SKIPPED_KEYS.load(Ordering::Relaxed) > skipped_before,
        "the bad registry value was counted as skipped"
    );
    assert_eq!(
        a_of(server.addr, "x.skydns.test.").await,
        Some(vec![Ipv4Addr::new(10, 0, 0, 1)])
    );

    // During the watch: a put, a delete, a good value turned bad (it must go), a bad key.
    put(
        &mut client,
        "/services/web/web-02",
        r#"{"Addr":"db.example.net","Port":8081,"Tags":["canary"]}"#,
    )
    .await;
    client.delete("/services/api/a1", None).await.unwrap();
    let skipped_before = srvd::sync::SKIPPED_KEYS.load(Ordering::Relaxed);
    put(
        &mut client,
        "/services/web/web-01",
        r#"{"Addr":"10.0.1.10"}"#,
    )
    .await;
    put(
        &mut client,
        "/services/bad_name/x",
        r#"{"Addr":"10.0.1.12","Port":1}"#,
    )
    .await;
    put(&mut client, &format!("{SKYDNS}y"), r#"{"host":"10.0.0.2"}"#).await;
    until_registry(
        &server,
        &expected(&[("/services/web/web-02", "db.example.net.:8081 w1 []")]),
    )
    .await;
    let skipped = srvd::sync::SKIPPED_KEYS.load(Ordering::Relaxed) - skipped_before;
    assert!(skipped >= 2, "no port, bad service label: {skipped} skips");
    let y = eventually(Duration::from_secs(10), "y answered", || async {
        a_of(server.addr, "y.skydns.test.").await
    })
    .await;
    assert_eq!(y, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    assert_eq!(
        a_of(server.addr, "x.skydns.test.").await,
        Some(vec![Ipv4Addr::new(10, 0, 0, 1)])
    );
    assert_eq!(
        a_of(server.addr, "web-02.web.skydns.test.").await,
        None,
        "registry keys are mirrored, not answered yet"
    );
    assert_eq!(server.sync_status().keys, 2);
}

#[tokio::test]
async fn overlapping_prefixes_are_refused_at_start() {
    let etcd = EtcdServer::start().await;
    let mut config = srvd::config::EtcdConfig::new(vec![etcd.url.clone()]);
    config.registry_prefixes = vec!["/skydns/services".into()];
    let config = srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: srvd::config::ZoneSource::None,
        etcd: Some(config),
        ..srvd::config::Config::default()
    };
    let error = srvd::daemon::start(&config).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "etcd prefixes \"/skydns\" and \"/skydns/services\" overlap: each key must belong to one \
         layout (--etcd-prefix and every --registry must be disjoint)"
    );
}

fn skydns_key(i: u32) -> String {
    format!("{SKYDNS}bulk/k{i:04}")
}

fn registry_key(i: u32) -> String {
    format!("{SERVICES}/bulk/i{i:04}")
}

/// A registry value several times the size of a SkyDNS one, so one prefix's share of a
/// catch-up response is much larger than the other's and a cut falls inside it more often.
fn registry_value(address: Ipv4Addr) -> String {
    format!(
        r#"{{"Addr":"{address}","Port":80,"Metadata":{{"pad":"{}"}}}}"#,
        "x".repeat(200)
    )
}

fn address(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + n)
}

/// Every key under `prefix` as etcd holds it now, as `key → address`, and etcd's revision.
async fn etcd_addresses(client: &mut Client, prefix: &str) -> (BTreeMap<String, String>, i64) {
    let response = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut keys = BTreeMap::new();
    for kv in response.kvs() {
        let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
        let address = value
            .get("host")
            .or_else(|| value.get("Addr"))
            .and_then(|a| a.as_str())
            .unwrap()
            .to_string();
        keys.insert(kv.key_str().unwrap().to_string(), address);
    }
    (keys, response.header().unwrap().revision())
}

fn registry_addresses(server: &TestServer) -> BTreeMap<String, String> {
    server
        .registry()
        .into_iter()
        .map(|(key, e)| {
            let Target::Address(ip) = e.target else {
                panic!("{key}: not an address")
            };
            (key, ip.to_string())
        })
        .collect()
}

/// `count` single-key writes from 8 writers at once, alternating between the SkyDNS and the
/// registry prefix (every third a delete); returns the last revision that changed each.
async fn write_both(url: &str, count: u32, universe: u32) -> (i64, i64) {
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let mut client = Client::connect([url], None).await.unwrap();
        writers.push(tokio::spawn(async move {
            let (mut skydns, mut registry) = (0, 0);
            for n in (w..count).step_by(8) {
                let i = n / 2 * 7 % universe;
                let on_registry = n % 2 == 1;
                let key = if on_registry {
                    registry_key(i)
                } else {
                    skydns_key(i)
                };
                let header = if n % 3 == 0 {
                    let response = client.delete(key, None).await.unwrap();
                    // Deleting a missing key makes no revision: its header is the store's.
                    if response.deleted() == 0 {
                        continue;
                    }
                    response.header().cloned()
                } else {
                    let value = if on_registry {
                        registry_value(address(100_000 + n))
                    } else {
                        format!(r#"{{"host":"{}"}}"#, address(100_000 + n))
                    };
                    client
                        .put(key, value, None)
                        .await
                        .unwrap()
                        .header()
                        .cloned()
                };
                let revision = header.unwrap().revision();
                let last = if on_registry {
                    &mut registry
                } else {
                    &mut skydns
                };
                *last = revision.max(*last);
            }
            (skydns, registry)
        }));
    }
    let (mut skydns, mut registry) = (0, 0);
    for writer in writers {
        let (s, r) = writer.await.unwrap();
        skydns = skydns.max(s);
        registry = registry.max(r);
    }
    (skydns, registry)
}

/// Bounded poll until both mirrors equal etcd key for key; panics with the differences.
async fn until_both_equal_etcd(server: &TestServer, client: &mut Client, limit: Duration) {
    let (skydns, _) = etcd_addresses(client, SKYDNS).await;
    let (registry, _) = etcd_addresses(client, SERVICES).await;
    let deadline = Instant::now() + limit;
    loop {
        let (got_skydns, got_registry) = (server.skydns_hosts(), registry_addresses(server));
        if got_skydns == skydns && got_registry == registry {
            return;
        }
        if Instant::now() >= deadline {
            let differ = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
                a.iter()
                    .filter(|(k, v)| b.get(*k) != Some(*v))
                    .chain(b.iter().filter(|(k, _)| !a.contains_key(*k)))
                    .count()
            };
            panic!(
                "not within {limit:?}: {} SkyDNS keys and {} registry keys differ from etcd \
                 (srvd at {:?})",
                differ(&got_skydns, &skydns),
                differ(&got_registry, &registry),
                server.sync_status().revision
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_watch_cut_during_a_catch_up_of_both_prefixes_loses_nothing_in_either() {
    const UNIVERSE: u32 = 600;
    const BACKLOG: u32 = 3_000;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for i in 0..300 {
        client
            .put(
                skydns_key(i),
                format!(r#"{{"host":"{}"}}"#, address(i)),
                None,
            )
            .await
            .unwrap();
        client
            .put(
                registry_key(i),
                format!(r#"{{"Addr":"{}","Port":80}}"#, address(i)),
                None,
            )
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, ZONE, None, with_registry).await;
    until_both_equal_etcd(&server, &mut client, Duration::from_secs(10)).await;
    assert_eq!(server.sync_status().registry_keys, 300);

    proxy.cut();
    let (skydns_last, registry_last) = write_both(&etcd.url, BACKLOG, UNIVERSE).await;
    eprintln!("etcd at {skydns_last} (SkyDNS) / {registry_last} (registry) after the backlog");
    // Both watches share one connection. A catch-up response holds up to 1,000 of one watch's
    // revisions: ~60 KB of SkyDNS events, ~300 KB of registry events. A 150 KB budget lets the
    // SkyDNS prefix move on while the registry prefix's response is cut: a watch resumed from
    // the SkyDNS prefix's revision would skip the registry's backlog (seen: ~400 keys differ).
    proxy.open(&[150_000, 150_000, 150_000]);
    let started = Instant::now();
    until_both_equal_etcd(&server, &mut client, Duration::from_secs(30)).await;
    eprintln!(
        "both caught up after {:?} with {} budget cuts",
        started.elapsed(),
        proxy.budget_cuts()
    );
    assert!(
        proxy.budget_cuts() >= 2,
        "the catch-up was cut at least twice"
    );
    // The published revision is one both prefixes reached: etcd's last, the later of their last
    // writes (the prefix that wrote earlier is asked for its progress, not left behind).
    let last = skydns_last.max(registry_last);
    let published = eventually(Duration::from_secs(10), "revision published", || async {
        server.sync_status().revision.filter(|r| *r == last)
    })
    .await;
    assert_eq!(published, last);
    assert_eq!(server.sync_status().full_reads, 1, "no re-read was needed");
}

#[tokio::test]
async fn a_compaction_while_cut_off_re_reads_both_prefixes_whole() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for i in 0..5 {
        client
            .put(
                skydns_key(i),
                format!(r#"{{"host":"{}"}}"#, address(i)),
                None,
            )
            .await
            .unwrap();
        client
            .put(registry_key(i), registry_value(address(i)), None)
            .await
            .unwrap();
    }
    let proxy = Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, ZONE, None, with_registry).await;
    until_both_equal_etcd(&server, &mut client, Duration::from_secs(10)).await;

    proxy.cut();
    client.delete(registry_key(0), None).await.unwrap();
    client
        .put(registry_key(9), registry_value(address(9)), None)
        .await
        .unwrap();
    let last = client
        .put(skydns_key(1), r#"{"host":"10.1.1.1"}"#, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(last, None).await.unwrap();
    proxy.open(&[]);
    until_both_equal_etcd(&server, &mut client, Duration::from_secs(15)).await;
    let status = server.sync_status();
    assert_eq!(status.full_reads, 2, "compaction forced one full re-read");
    assert_eq!((status.keys, status.registry_keys), (5, 5));
    assert_eq!(
        status.revision,
        Some(last),
        "a listing puts every prefix at its revision"
    );
}

#[tokio::test]
async fn a_registry_key_on_a_lease_is_learned_before_it_is_published_and_released_when_it_goes() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, with_registry).await;
    assert_eq!(server.known_leases(), 0);
    let lease = client.lease_grant(3600, None).await.unwrap().id();
    client
        .put(
            "/services/web/leased",
            r#"{"Addr":"10.0.2.1","Port":80}"#,
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    until_registry(
        &server,
        &expected(&[("/services/web/leased", "10.0.2.1:80 w1 []")]),
    )
    .await;
    assert_eq!(server.registry()["/services/web/leased"].lease, lease);
    assert_eq!(
        server.known_leases(),
        1,
        "the lease's deadline is known in the snapshot that first holds its key"
    );
    client.delete("/services/web/leased", None).await.unwrap();
    until_registry(&server, &BTreeMap::new()).await;
    assert_eq!(server.known_leases(), 0, "released with its last key");
}

/// etcd tells an idle watch that it is caught up only every 10 minutes, so with two prefixes a
/// write under one must not leave the published revision waiting for news of the other.
#[tokio::test]
async fn a_write_under_one_prefix_is_published_while_the_other_prefix_is_idle() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, with_registry).await;

    // SkyDNS written, registry idle: `put` returns once the published revision reaches it.
    let skydns = server
        .put(
            &mut client,
            &format!("{SKYDNS}idle"),
            r#"{"host":"10.0.3.1"}"#,
        )
        .await;
    assert_eq!(server.sync_status().revision, Some(skydns));
    assert_eq!(
        server.skydns_hosts().get(&format!("{SKYDNS}idle")),
        Some(&"10.0.3.1".to_string())
    );

    // Registry written, SkyDNS idle.
    let registry = server
        .put(
            &mut client,
            "/services/web/idle",
            r#"{"Addr":"10.0.3.2","Port":80}"#,
        )
        .await;
    assert_eq!(server.sync_status().revision, Some(registry));
    assert_eq!(
        summary(&server.registry()),
        expected(&[("/services/web/idle", "10.0.3.2:80 w1 []")])
    );

    // Several writes under each in turn: every one is published in order.
    for n in 0..5u32 {
        let on_registry = n % 2 == 0;
        let revision = if on_registry {
            server
                .put(&mut client, &registry_key(n), &registry_value(address(n)))
                .await
        } else {
            server
                .put(
                    &mut client,
                    &skydns_key(n),
                    &format!(r#"{{"host":"{}"}}"#, address(n)),
                )
                .await
        };
        assert_eq!(server.sync_status().revision, Some(revision), "write {n}");
    }
}
