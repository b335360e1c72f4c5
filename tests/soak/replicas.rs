//! Replicas at fleet size: many srvd replicas on one 3-member etcd cluster, half on the members
//! directly and half through one `etcd grpc-proxy`, and what each costs the cluster. Prints
//! `figure:` lines (watchers and watch streams per member with N replicas directly and N
//! through the proxy; a fresh replica's full read: time and bytes etcd sent, at each key count)
//! and asserts that every replica's mirror equals etcd after writes, deletes and a compaction
//! while the proxied half is cut off.
//!
//! Environment (defaults in brackets):
//! - `SRVD_SOAK_REPLICAS` [10]: replicas directly and again as many through the proxy.
//! - `SRVD_SOAK_REPLICA_KEYS` [10000,100000]: key counts at which a fresh replica's read is measured.
//!
//! Run: `scripts/soak replicas` (or, smaller, `SRVD_SOAK_REPLICAS=3 SRVD_SOAK_REPLICA_KEYS=2000
//! scripts/soak replicas`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etcd_client::{CompactionOptions, Txn, TxnOp};

use crate::support::etcd::{EtcdCluster, EtcdProxy};
use crate::support::skydns::{Replica, ZONE, etcd_names, key, put_stable, put_via, value};

/// (watchers, watch streams) on each member.
async fn watch_load(cluster: &EtcdCluster) -> Vec<(u64, u64)> {
    let mut load = Vec::new();
    for i in 0..3 {
        load.push((
            cluster.metric(i, "etcd_debugging_mvcc_watcher_total").await as u64,
            cluster
                .metric(i, "etcd_debugging_mvcc_watch_stream_total")
                .await as u64,
        ));
    }
    load
}

/// Bytes the members have sent to gRPC clients so far.
async fn sent_bytes(cluster: &EtcdCluster) -> f64 {
    cluster
        .metric_sum("etcd_network_client_grpc_sent_bytes_total")
        .await
}

/// Fills the zone up to `total` names `k<n>` in transactions of 100, eight in flight.
async fn fill(cluster: &EtcdCluster, from: u32, total: u32) {
    let client = cluster.client(0).await;
    let mut batches = futures_batches(from, total);
    while !batches.is_empty() {
        let round: Vec<_> = batches.drain(..batches.len().min(8)).collect();
        let mut tasks = Vec::new();
        for (start, end) in round {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let ops = (start..end)
                    .map(|n| {
                        let ip = Ipv4Addr::from(0x0a40_0000 | n);
                        TxnOp::put(key(&format!("k{n}")), value(ip), None)
                    })
                    .collect::<Vec<_>>();
                client.txn(Txn::new().and_then(ops)).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
}

fn futures_batches(from: u32, total: u32) -> Vec<(u32, u32)> {
    (from..total)
        .step_by(100)
        .map(|s| (s, (s + 100).min(total)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_at_fleet_size_share_the_cluster_and_stay_equal_to_etcd() {
    let n: usize = crate::knob("SRVD_SOAK_REPLICAS", 10);
    let key_counts: Vec<u32> = std::env::var("SRVD_SOAK_REPLICA_KEYS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|v| v.trim().parse().expect("SRVD_SOAK_REPLICA_KEYS: numbers"))
        .collect();
    let mut cluster = EtcdCluster::start().await;
    let mut client = cluster.client(0).await;
    put_stable(&mut client).await;
    fill(&cluster, 0, 1000).await;
    let mut proxy = EtcdProxy::start(&cluster.urls()).await;
    let dir = tempfile::tempdir().unwrap();
    let before = watch_load(&cluster).await;

    let mut replicas: Vec<(String, Replica)> = Vec::new();
    for i in 0..n {
        let mut urls = cluster.urls();
        urls.rotate_left(i % 3);
        let mut replica = Replica::start(dir.path(), &urls.join(","));
        replica.srvd.until_etcd_synced(Duration::from_secs(60));
        replicas.push((format!("direct replica {i}"), replica));
    }
    // Each replica watches right after its first read: wait (bounded) for every watcher.
    let watching = before.iter().map(|l| l.0).sum::<u64>() + n as u64;
    let cluster_ref = &cluster;
    let direct = crate::support::eventually(
        Duration::from_secs(10),
        "a watcher per direct replica",
        || async move {
            let load = watch_load(cluster_ref).await;
            (load.iter().map(|l| l.0).sum::<u64>() >= watching).then_some(load)
        },
    )
    .await;
    eprintln!(
        "figure: {n} replicas directly: (watchers, watch streams) per member {direct:?} (before: {before:?})"
    );
    for i in 0..n {
        let mut replica = Replica::start(dir.path(), &proxy.url);
        replica.srvd.until_etcd_synced(Duration::from_secs(60));
        replicas.push((format!("proxied replica {i}"), replica));
    }
    // The proxy merges a broadcast that has caught up with another into it; writes move them.
    for w in 0..3u8 {
        put_via(
            &cluster,
            usize::from(w),
            &format!("c{w}"),
            Ipv4Addr::new(10, 7, 0, w),
        )
        .await;
    }
    let both = watch_load(&cluster).await;
    eprintln!(
        "figure: {n} replicas directly + {n} through one grpc-proxy: (watchers, watch streams) per member {both:?}; \
         the proxy's gauge of coalescing watchers reads {}",
        proxy
            .metric("etcd_grpc_proxy_watchers_coalescing_total")
            .await
    );

    // Faults: the busiest member dies, the proxy's replicas are cut off while keys change and
    // etcd compacts past them, the member comes back.
    let busiest = (0..3).max_by_key(|i| both[*i].0).unwrap();
    cluster.kill(busiest);
    let via = (busiest + 1) % 3;
    for w in 0..20u8 {
        put_via(&cluster, via, &format!("f{w}"), Ipv4Addr::new(10, 7, 1, w)).await;
    }
    proxy.stop();
    let mut survivor = cluster.client(via).await;
    let mut gone = Vec::new();
    for k in 0..50 {
        survivor.delete(key(&format!("k{k}")), None).await.unwrap();
        gone.push(format!("k{k}"));
    }
    let revision = put_via(&cluster, via, "f20", Ipv4Addr::new(10, 7, 1, 20)).await;
    survivor
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    cluster.restart(busiest).await;
    proxy.restart().await;

    let (revision, etcd) = etcd_names(&mut survivor).await;
    let checked = Instant::now();
    for (what, replica) in &mut replicas {
        replica.assert_equals(what, revision, &etcd, &gone).await;
    }
    eprintln!(
        "figure: {} replicas equal to etcd ({} names each) at revision {revision}, checked in {:.1?}",
        replicas.len(),
        etcd.len(),
        checked.elapsed()
    );
    drop(replicas);

    // What one fresh replica costs the cluster: its paged full read.
    let mut have = 1000;
    for total in key_counts {
        if total > have {
            fill(&cluster, have, total).await;
            have = total;
        }
        let (revision, etcd) = etcd_names(&mut survivor).await;
        for (how, endpoints) in [
            ("directly", cluster.urls().join(",")),
            ("through the proxy", proxy.url.clone()),
        ] {
            let sent = sent_bytes(&cluster).await;
            let started = Instant::now();
            let mut replica = Replica::start(dir.path(), &endpoints);
            replica.srvd.until_etcd_synced(Duration::from_secs(120));
            let took = started.elapsed();
            let bytes = sent_bytes(&cluster).await - sent;
            replica
                .until_revision(revision, Duration::from_secs(30))
                .await;
            let (_, keys) = replica.progress().await;
            assert_eq!(
                keys,
                etcd.len() as u64,
                "fresh replica {how}: keys mirrored"
            );
            eprintln!(
                "figure: fresh replica {how}, {} keys under {ZONE}: serving to first full read {took:.2?}, \
                 members sent {:.1} MB to gRPC clients meanwhile",
                etcd.len(),
                bytes / 1e6,
            );
        }
    }
}
