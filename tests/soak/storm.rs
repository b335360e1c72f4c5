//! A write storm on a 3-member etcd cluster while srvd (the binary) watches: puts and deletes
//! batched into transactions, from one writer per member, at 10,000 operations a second for
//! 30 s. Afterwards every replica's mirror equals etcd name for name; prints the operations a
//! second reached and the propagation delay (a probe's put returned → srvd answers it) as
//! p50/p99/max on `figure:` lines.
//!
//! Environment (defaults in brackets):
//! - `SRVD_SOAK_SECONDS` [30]: how long the storm blows.
//! - `SRVD_SOAK_RATE` [10000]: target operations a second over all writers.
//! - `SRVD_SOAK_WRITERS` [3]: writer tasks, writer `w` on member `w % 3`.
//!
//! Run: `scripts/soak storm` (or, shorter, `SRVD_SOAK_SECONDS=5 scripts/soak storm`).

use std::time::{Duration, Instant};

use crate::support::etcd::{EtcdCluster, EtcdProxy};
use crate::support::skydns::{Probes, Replica, Storm, etcd_names, percentiles};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_ten_thousand_ops_a_second_leaves_every_mirror_equal_to_etcd() {
    let storm = Storm {
        writers: crate::knob("SRVD_SOAK_WRITERS", 3),
        ops_per_sec: crate::knob("SRVD_SOAK_RATE", 10_000),
        per_txn: 100,
        keys: 2_000,
        in_flight: 8,
        seconds: crate::knob("SRVD_SOAK_SECONDS", 30.0),
    };
    let cluster = EtcdCluster::start().await;
    let proxy = EtcdProxy::start(&cluster.urls()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut direct = Replica::start(dir.path(), &cluster.urls().join(","));
    let mut proxied = Replica::start(dir.path(), &proxy.url);
    direct.srvd.until_etcd_synced(Duration::from_secs(20));
    proxied.srvd.until_etcd_synced(Duration::from_secs(20));
    let probes = Probes::start(&cluster, direct.addr, Duration::from_millis(20)).await;
    let proxied_probes = Probes::start(&cluster, proxied.addr, Duration::from_millis(20)).await;
    let done = storm.run(&cluster).await;
    let mut delays = probes.finish().await;
    let mut proxied_delays = proxied_probes.finish().await;
    eprintln!(
        "figure: storm {storm:?}: {} ops committed in {:.2?} = {:.0} ops/s, {} transactions failed",
        done.ops,
        done.elapsed,
        done.ops as f64 / done.elapsed.as_secs_f64(),
        done.failed_txns
    );
    for (how, delays) in [("direct", &mut delays), ("proxied", &mut proxied_delays)] {
        let (p50, p99, max) = percentiles(delays);
        eprintln!(
            "figure: propagation to the {how} replica over {} probes during the storm: \
             p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            delays.len()
        );
    }
    let mut client = cluster.client(0).await;
    let (revision, etcd) = etcd_names(&mut client).await;
    assert!(done.ops > 0 && !etcd.is_empty(), "{done:?}");
    let checked = Instant::now();
    direct
        .assert_equals("direct replica", revision, &etcd, &done.names)
        .await;
    proxied
        .assert_equals("proxied replica", revision, &etcd, &done.names)
        .await;
    eprintln!(
        "figure: both replicas equal to etcd ({} names, {} ever written) at revision {revision}, \
         checked in {:.1?}; full reads: direct {}, proxied {}",
        etcd.len(),
        done.names.len(),
        checked.elapsed(),
        direct.full_reads().await,
        proxied.full_reads().await
    );
}
