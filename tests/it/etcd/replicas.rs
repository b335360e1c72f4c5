//! Several srvd replicas (the binary) on one 3-member etcd cluster, some on the members directly
//! and some through one `etcd grpc-proxy`: after writes, deletes, member kills, a compaction
//! while the proxied replicas are cut off, and a write storm across members, every replica's
//! mirror equals a full read of etcd, name for name. The heavy versions (more replicas, more
//! keys, 10,000 ops/s) are in tests/soak/replicas.rs and tests/soak/storm.rs.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etcd_client::CompactionOptions;

use crate::support::etcd::{EtcdCluster, EtcdProxy};
use crate::support::skydns::{
    Probes, QueryLoop, Replica, Storm, etcd_names, percentiles, put_stable, put_via,
};

/// The cluster's URLs rotated by `by`: replicas list the members in different orders, so that
/// they spread their watches over the members as a fleet does.
fn rotated(cluster: &EtcdCluster, by: usize) -> String {
    let mut urls = cluster.urls();
    let len = urls.len();
    urls.rotate_left(by % len);
    urls.join(",")
}

/// The member that holds the most watchers (bounded wait until one holds any).
async fn busiest_member(cluster: &EtcdCluster) -> usize {
    crate::support::eventually(
        Duration::from_secs(10),
        "a member holds a watch",
        || async {
            let mut counts = Vec::new();
            for i in 0..3 {
                counts.push(cluster.watchers(i).await);
            }
            let most = (0..3).max_by_key(|i| counts[*i])?;
            (counts[most] > 0).then_some(most)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_direct_and_through_a_grpc_proxy_stay_equal_to_etcd_through_faults() {
    let mut cluster = EtcdCluster::start().await;
    let mut client = cluster.client(0).await;
    put_stable(&mut client).await;
    let mut proxy = EtcdProxy::start(&cluster.urls()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<(String, Replica)> = Vec::new();
    for i in 0..3 {
        let replica = Replica::start(dir.path(), &rotated(&cluster, i));
        replicas.push((format!("direct replica {i}"), replica));
    }
    for i in 0..3 {
        let replica = Replica::start(dir.path(), &proxy.url);
        replicas.push((format!("proxied replica {i}"), replica));
    }
    for (_, replica) in &mut replicas {
        replica.srvd.until_etcd_synced(Duration::from_secs(20));
    }
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(cluster.metric(i, "etcd_debugging_mvcc_watcher_total").await);
    }
    eprintln!(
        "figure: 3 replicas direct + 3 through the proxy: watchers per member {members:?}, \
         watch streams {} in all; the proxy coalesces {} watchers",
        cluster
            .metric_sum("etcd_debugging_mvcc_watch_stream_total")
            .await,
        proxy
            .metric("etcd_grpc_proxy_watchers_coalescing_total")
            .await
    );
    let direct_loop = QueryLoop::start(replicas[0].1.addr);
    let proxied_loop = QueryLoop::start(replicas[3].1.addr);
    let mut gone = Vec::new();

    // Writes through every member.
    for n in 0..12u8 {
        put_via(
            &cluster,
            usize::from(n % 3),
            &format!("u{n}"),
            Ipv4Addr::new(10, 6, 0, n),
        )
        .await;
    }
    // The member holding the most watches dies; writes and deletes go on through the others.
    let killed = busiest_member(&cluster).await;
    cluster.kill(killed);
    let via = (killed + 1) % 3;
    for n in 12..20u8 {
        put_via(&cluster, via, &format!("u{n}"), Ipv4Addr::new(10, 6, 0, n)).await;
    }
    let mut survivor = cluster.client(via).await;
    for n in 0..4 {
        survivor
            .delete(crate::support::skydns::key(&format!("u{n}")), None)
            .await
            .unwrap();
        gone.push(format!("u{n}"));
    }
    cluster.restart(killed).await;

    // The proxied replicas are cut off while keys change and etcd compacts past their revision:
    // when the proxy is back, their watches resume from a compacted revision.
    proxy.stop();
    let mut client = cluster.client(killed).await;
    for n in 20..26u8 {
        put_via(
            &cluster,
            killed,
            &format!("u{n}"),
            Ipv4Addr::new(10, 6, 0, n),
        )
        .await;
    }
    for n in 4..8 {
        client
            .delete(crate::support::skydns::key(&format!("u{n}")), None)
            .await
            .unwrap();
        gone.push(format!("u{n}"));
    }
    // A name re-written after its delete, so a replica that misses the delete and keeps an
    // older put is caught too.
    put_via(&cluster, killed, "u4", Ipv4Addr::new(10, 6, 1, 4)).await;
    let revision = put_via(&cluster, killed, "u26", Ipv4Addr::new(10, 6, 0, 26)).await;
    client
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    proxy.restart().await;

    // The leader dies; a last write goes through a survivor.
    let leader = cluster.leader().await;
    cluster.kill(leader);
    put_via(
        &cluster,
        (leader + 1) % 3,
        "u27",
        Ipv4Addr::new(10, 6, 0, 27),
    )
    .await;
    cluster.restart(leader).await;

    let mut client = cluster.client(leader).await;
    let (revision, etcd) = etcd_names(&mut client).await;
    assert_eq!(
        etcd.len(),
        10 + 28 - 8 + 1,
        "stable + written - deleted + re-written"
    );
    for (what, replica) in &mut replicas {
        replica.assert_equals(what, revision, &etcd, &gone).await;
    }
    for (what, queries) in [("direct", direct_loop), ("proxied", proxied_loop)] {
        queries.finish_without_failures(what).await;
    }
    let full_reads: Vec<u64> = {
        let mut reads = Vec::new();
        for (_, replica) in &replicas {
            reads.push(replica.full_reads().await);
        }
        reads
    };
    eprintln!("figure: full reads per replica (3 direct, 3 proxied): {full_reads:?}");
    // Compacted while cut off: one full re-read each, no more.
    assert_eq!(full_reads[3..], [2, 2, 2], "proxied replicas' full reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_storm_across_members_leaves_the_mirror_equal_to_etcd() {
    let cluster = EtcdCluster::start().await;
    let proxy = EtcdProxy::start(&cluster.urls()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut direct = Replica::start(dir.path(), &cluster.urls().join(","));
    let mut proxied = Replica::start(dir.path(), &proxy.url);
    direct.srvd.until_etcd_synced(Duration::from_secs(20));
    proxied.srvd.until_etcd_synced(Duration::from_secs(20));
    let probes = Probes::start(&cluster, direct.addr, Duration::from_millis(50)).await;
    let storm = Storm {
        writers: 3,
        ops_per_sec: 2_000,
        per_txn: 50,
        keys: 300,
        in_flight: 4,
        seconds: 2.5,
    };
    let started = Instant::now();
    let done = storm.run(&cluster).await;
    let mut delays = probes.finish().await;
    let mut client = cluster.client(0).await;
    let (revision, etcd) = etcd_names(&mut client).await;
    assert!(done.ops > 0 && !etcd.is_empty(), "{done:?}");
    direct
        .assert_equals("direct replica", revision, &etcd, &done.names)
        .await;
    proxied
        .assert_equals("proxied replica", revision, &etcd, &done.names)
        .await;
    let (p50, p99, max) = percentiles(&mut delays);
    eprintln!(
        "figure: storm {} ops in {:.2?} ({:.0} ops/s, {} failed txns), {} names in etcd; \
         propagation over {} probes p50 {p50:.1} ms p99 {p99:.1} ms max {max:.1} ms; checked after {:.2?}",
        done.ops,
        done.elapsed,
        done.ops as f64 / done.elapsed.as_secs_f64(),
        done.failed_txns,
        etcd.len(),
        delays.len(),
        started.elapsed()
    );
}
