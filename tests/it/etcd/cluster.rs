//! srvd on a 3-member etcd cluster while members die and freeze: every query in a continuous
//! loop is answered, updates written through the surviving members arrive, and at the end the
//! mirror equals a full read of etcd key for key. Figures (time to notice, time to the first
//! update after the fault) are printed for the report; no test asserts a speed.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::support::dns::a_of;
use crate::support::etcd::EtcdCluster;
use crate::support::eventually;
use crate::support::skydns::{
    QueryLoop, arrives, assert_mirror_equals_etcd, key, put_stable, put_via, stable_ip, value,
};
use crate::support::srvd::{SrvdProcess, spawn_binary_logging};

/// Starts a cluster holding the stable names and srvd (the binary) on all three endpoints,
/// waiting (bounded) until srvd answers from its first read.
async fn cluster_and_srvd(dir: &std::path::Path) -> (EtcdCluster, SrvdProcess) {
    let cluster = EtcdCluster::start().await;
    let mut client = cluster.client(0).await;
    put_stable(&mut client).await;
    let endpoints = cluster.urls().join(",");
    let srvd = spawn_binary_logging(
        dir,
        &["--etcd", &endpoints, "--zone", "skydns.test."],
        "srvd=info",
    );
    let addr = srvd.addr;
    eventually(
        Duration::from_secs(10),
        "srvd's first read",
        || async move {
            (a_of(addr, "s0.skydns.test.").await == Some(vec![stable_ip(0)])).then_some(())
        },
    )
    .await;
    (cluster, srvd)
}

/// The member holding srvd's watch (the test's own clients watch nothing), bounded.
async fn watching_member(cluster: &EtcdCluster) -> usize {
    eventually(
        Duration::from_secs(10),
        "a member holds srvd's watch",
        || async {
            for i in 0..3 {
                if cluster.watchers(i).await > 0 {
                    return Some(i);
                }
            }
            None
        },
    )
    .await
}

fn survivor(not: &[usize]) -> usize {
    (0..3).find(|i| !not.contains(i)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_watched_member_then_the_leader_costs_no_answer_and_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, srvd) = cluster_and_srvd(dir.path()).await;
    let addr = srvd.addr;
    let queries = QueryLoop::start(addr);

    // 1. The member srvd watches through dies.
    let watched = watching_member(&cluster).await;
    let killed = Instant::now();
    cluster.kill(watched);
    let via = survivor(&[watched]);
    put_via(&cluster, via, "u1", Ipv4Addr::new(10, 2, 0, 1)).await;
    let accepted = killed.elapsed();
    let first = arrives(
        addr,
        "u1",
        Ipv4Addr::new(10, 2, 0, 1),
        Duration::from_secs(30),
        killed,
    )
    .await;
    let rewatched = watching_member(&cluster).await;
    assert_ne!(rewatched, watched, "the watch moved to a live member");
    eprintln!(
        "figure: watched member {watched} killed; a write accepted after {accepted:?}, visible in srvd after {first:?}"
    );
    let mut client = cluster.client(via).await;
    client
        .put(key("gone"), value(Ipv4Addr::new(10, 2, 9, 9)), None)
        .await
        .unwrap();
    cluster.restart(watched).await;

    // 2. The leader dies (quorum holds: the first member is back).
    let leader = cluster.leader().await;
    let killed = Instant::now();
    cluster.kill(leader);
    let via = survivor(&[leader]);
    put_via(&cluster, via, "u2", Ipv4Addr::new(10, 2, 0, 2)).await;
    let accepted = killed.elapsed();
    let mut client = cluster.client(via).await;
    client.delete(key("gone"), None).await.unwrap();
    let first = arrives(
        addr,
        "u2",
        Ipv4Addr::new(10, 2, 0, 2),
        Duration::from_secs(30),
        killed,
    )
    .await;
    eprintln!(
        "figure: leader {leader} killed; a write accepted after {accepted:?}, visible in srvd after {first:?}"
    );

    queries.finish_without_failures("the query loop").await;
    // Wait for the delete, then compare everything.
    eventually(Duration::from_secs(10), "the delete arrives", || async {
        a_of(addr, "gone.skydns.test.")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_mirror_equals_etcd(addr, &mut client, &["gone"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_is_noticed_served_around_and_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, mut srvd) = cluster_and_srvd(dir.path()).await;
    let addr = srvd.addr;
    let queries = QueryLoop::start(addr);

    let watched = watching_member(&cluster).await;
    let frozen = Instant::now();
    cluster.freeze(watched);
    let via = survivor(&[watched]);
    put_via(&cluster, via, "f1", Ipv4Addr::new(10, 3, 0, 1)).await;
    let accepted = frozen.elapsed();
    let first = arrives(
        addr,
        "f1",
        Ipv4Addr::new(10, 3, 0, 1),
        Duration::from_secs(45),
        frozen,
    )
    .await;
    // The keep-alive (6 s interval, 3 s timeout) bounds the notice from the freeze, not from
    // the write's arrival.
    tokio::task::block_in_place(|| {
        srvd.log_until(Duration::from_secs(15), |log| {
            log.iter().any(|l| l.contains("etcd unreachable"))
        });
    });
    let noticed = frozen.elapsed();
    eprintln!(
        "figure: member {watched} frozen; a write accepted after {accepted:?}, visible in srvd after {first:?}, outage logged by {noticed:?}"
    );

    // While it stays frozen, updates keep arriving; then it thaws and rejoins.
    put_via(&cluster, via, "f2", Ipv4Addr::new(10, 3, 0, 2)).await;
    arrives(
        addr,
        "f2",
        Ipv4Addr::new(10, 3, 0, 2),
        Duration::from_secs(10),
        Instant::now(),
    )
    .await;
    cluster.thaw(watched);
    put_via(&cluster, watched, "f3", Ipv4Addr::new(10, 3, 0, 3)).await;
    arrives(
        addr,
        "f3",
        Ipv4Addr::new(10, 3, 0, 3),
        Duration::from_secs(10),
        Instant::now(),
    )
    .await;

    queries.finish_without_failures("the query loop").await;
    let unreachable = srvd
        .log
        .iter()
        .filter(|l| l.contains("etcd unreachable"))
        .count();
    assert_eq!(unreachable, 1, "the outage is logged once: {:#?}", srvd.log);
    let mut client = cluster.client(via).await;
    assert_mirror_equals_etcd(addr, &mut client, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_a_member_is_frozen_reads_and_watches_through_the_others() {
    let cluster = EtcdCluster::start().await;
    let mut client = cluster.client(1).await;
    put_stable(&mut client).await;
    let mut cluster = cluster;
    // Member 0 (first in srvd's list) accepts TCP connects but answers nothing.
    cluster.freeze(0);
    let dir = tempfile::tempdir().unwrap();
    let endpoints = cluster.urls().join(",");
    let started = Instant::now();
    let srvd = spawn_binary_logging(
        dir.path(),
        &["--etcd", &endpoints, "--zone", "skydns.test."],
        "srvd=info",
    );
    let addr = srvd.addr;
    let read = arrives(addr, "s0", stable_ip(0), Duration::from_secs(45), started).await;
    let written = Instant::now();
    put_via(&cluster, 2, "w1", Ipv4Addr::new(10, 4, 0, 1)).await;
    let first = arrives(
        addr,
        "w1",
        Ipv4Addr::new(10, 4, 0, 1),
        Duration::from_secs(45),
        written,
    )
    .await;
    eprintln!(
        "figure: started with member 0 frozen; first read after {read:?}, first update {first:?} after its write"
    );
    cluster.thaw(0);
    assert_mirror_equals_etcd(addr, &mut client, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_member_frozen_past_the_keep_alive_is_noticed_once_and_resumed_after() {
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let mut client = etcd.client().await;
    put_stable(&mut client).await;
    let dir = tempfile::tempdir().unwrap();
    let mut srvd = spawn_binary_logging(
        dir.path(),
        &["--etcd", &etcd.url, "--zone", "skydns.test."],
        "srvd=info",
    );
    let addr = srvd.addr;
    arrives(
        addr,
        "s0",
        stable_ip(0),
        Duration::from_secs(10),
        Instant::now(),
    )
    .await;
    let queries = QueryLoop::start(addr);
    let frozen = Instant::now();
    etcd.freeze();
    tokio::task::block_in_place(|| {
        srvd.log_until(Duration::from_secs(30), |log| {
            log.iter().any(|l| l.contains("etcd unreachable"))
        });
    });
    let noticed = frozen.elapsed();
    // The fault lasts 10 s (longer than the 9 s keep-alive): srvd retries against a member that
    // completes connects and answers nothing; every try must end, none may log the outage again.
    tokio::time::sleep_until((frozen + Duration::from_secs(10)).into()).await;
    etcd.thaw();
    let thawed = Instant::now();
    let mut client = etcd.client().await;
    client
        .put(key("after"), value(Ipv4Addr::new(10, 5, 0, 1)), None)
        .await
        .unwrap();
    let first = arrives(
        addr,
        "after",
        Ipv4Addr::new(10, 5, 0, 1),
        Duration::from_secs(30),
        thawed,
    )
    .await;
    eprintln!(
        "figure: only member frozen; outage logged after {noticed:?}; after the thaw an update visible in {first:?}"
    );
    queries.finish_without_failures("the query loop").await;
    tokio::task::block_in_place(|| {
        srvd.log_until(Duration::from_secs(10), |log| {
            log.iter().any(|l| l.contains("etcd reachable again"))
        });
    });
    let unreachable = srvd
        .log
        .iter()
        .filter(|l| l.contains("etcd unreachable"))
        .count();
    assert_eq!(unreachable, 1, "the outage is logged once: {:#?}", srvd.log);
    assert_mirror_equals_etcd(addr, &mut client, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_member_that_loses_its_leader_is_noticed_served_around_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, mut srvd) = cluster_and_srvd(dir.path()).await;
    let addr = srvd.addr;
    let queries = QueryLoop::start(addr);

    // The other two members die: the watched one stays up but has no leader, and without
    // `hasleader` on the watch it would keep a stream that never delivers again, silently.
    let watched = watching_member(&cluster).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != watched).collect();
    let cut = Instant::now();
    for i in &others {
        cluster.kill(*i);
    }
    tokio::task::block_in_place(|| {
        srvd.log_until(Duration::from_secs(30), |log| {
            log.iter().any(|l| l.contains("etcd unreachable"))
        });
    });
    let noticed = cut.elapsed();
    let notice = srvd
        .log
        .iter()
        .find(|l| l.contains("etcd unreachable"))
        .unwrap()
        .clone();
    assert!(
        notice.contains("no leader"),
        "{notice}\nafter {noticed:?}; log: {:#?}",
        srvd.log
    );

    // Quorum again: a write through a restarted member arrives.
    for i in &others {
        cluster.restart(*i).await;
    }
    let back = Instant::now();
    put_via(&cluster, others[0], "l1", Ipv4Addr::new(10, 6, 0, 1)).await;
    let first = arrives(
        addr,
        "l1",
        Ipv4Addr::new(10, 6, 0, 1),
        Duration::from_secs(30),
        back,
    )
    .await;
    eprintln!("the notice: {notice}");
    eprintln!(
        "figure: watched member {watched} lost its leader; outage logged after {noticed:?}; after the restart an update visible in {first:?}"
    );

    queries.finish_without_failures("the query loop").await;
    let unreachable = srvd
        .log
        .iter()
        .filter(|l| l.contains("etcd unreachable"))
        .count();
    assert_eq!(unreachable, 1, "the outage is logged once: {:#?}", srvd.log);
    let mut client = cluster.client(others[0]).await;
    assert_mirror_equals_etcd(addr, &mut client, &[]).await;
}

/// etcd (`--grpc-keepalive-min-time`, 5 s by default) closes a connection whose client pings
/// more often than that, after three such pings ("too many pings"), and `etcd grpc-proxy` keeps
/// grpc-go's default (5 minutes), so through it every ping after the first since the server last
/// sent data is a strike: a watch idle for 30 s, directly and through the proxy, must keep its
/// one stream, with no outage logged and no re-watch, and still deliver the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_keeps_its_connection_directly_and_through_a_grpc_proxy() {
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let proxy = crate::support::etcd::EtcdProxy::start(std::slice::from_ref(&etcd.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for url in [&etcd.url, &proxy.url] {
        let mut srvd = spawn_binary_logging(
            dir.path(),
            &["--etcd", url, "--zone", "skydns.test."],
            "srvd=debug",
        );
        srvd.until_etcd_synced(Duration::from_secs(10));
        replicas.push((url, srvd));
    }
    // Idle past both strike limits: the fourth early ping (24 s at a 6 s interval through the
    // proxy, which never allows one; 12 s at 3 s directly, were the interval ever shortened).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut client = etcd.client().await;
    client
        .put(key("idle"), value(Ipv4Addr::new(10, 7, 0, 1)), None)
        .await
        .unwrap();
    for (url, srvd) in &mut replicas {
        tokio::task::block_in_place(|| {
            srvd.log_until(Duration::from_secs(10), |log| {
                log.iter()
                    .any(|l| l.contains("etcd event") && l.contains("/idle"))
            });
        });
        let troubles: Vec<&String> = srvd
            .log
            .iter()
            .filter(|l| l.contains("etcd unreachable") || l.contains("reachable again"))
            .collect();
        assert!(troubles.is_empty(), "through {url}: {troubles:#?}");
    }
}

/// Endpoints that complete TCP connects and then answer nothing (listening sockets nobody
/// accepts from: a frozen member looks the same) are each tried once, never again before the
/// live one: srvd moves to the next endpoint after a failure instead of letting a balancer pick
/// again, so each costs one keep-alive (9 s), not a share of every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_answer_nothing_are_tried_once_each_before_the_live_one() {
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let mut client = etcd.client().await;
    put_stable(&mut client).await;
    let holes: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let hole_urls: Vec<String> = holes
        .iter()
        .map(|h| format!("http://{}", h.local_addr().unwrap()))
        .collect();
    let endpoints = format!("{},{},{}", hole_urls[0], hole_urls[1], etcd.url);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut srvd = spawn_binary_logging(
        dir.path(),
        &["--etcd", &endpoints, "--zone", "skydns.test."],
        "srvd=debug",
    );
    srvd.until_etcd_synced(Duration::from_secs(40));
    eprintln!(
        "figure: two endpoints answering nothing before the live one: first read after {:?}",
        started.elapsed()
    );
    let failed: Vec<&String> = srvd
        .log
        .iter()
        .take_while(|l| !l.contains("initial sync complete"))
        .filter(|l| l.contains("etcd unreachable") || l.contains("etcd sync still failing"))
        .collect();
    let tried: Vec<&str> = failed
        .iter()
        .filter_map(|l| hole_urls.iter().find(|u| l.contains(u.as_str())))
        .map(String::as_str)
        .collect();
    let distinct: std::collections::HashSet<&str> = tried.iter().copied().collect();
    assert!(
        tried.len() == failed.len() && distinct.len() == tried.len() && tried.len() <= 2,
        "each silent endpoint tried at most once, the live one never failing: {failed:#?}"
    );
    drop(holes);
}
