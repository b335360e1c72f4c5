//! Issue 16's hostile traffic at full size: 30 s of malformed and valid packets half and half,
//! 30 s of names outside every zone, 10,000 idle connections with slowloris clients (one byte
//! every 3 s) against the release binary, and SIGTERM under load from 500 connections. The fast
//! versions are in tests/it/hostile.rs; the workloads in tests/it/support/hostile.rs.
//! `SRVD_SOAK_SECONDS` [30] sets the length of each UDP blast and `SRVD_SOAK_IDLE` [10000] the
//! number of idle connections (smaller for a proof run).

use std::time::Duration;

use crate::support::hostile::{
    self, MixedTraffic, OutsideTraffic, Siege, blast_and_check, check_siege,
    report_and_check_sigterm, report_siege, shipped,
};
use crate::support::load::{self, Tally, Traffic};

fn blast_seconds() -> Duration {
    Duration::from_secs(crate::knob("SRVD_SOAK_SECONDS", 30))
}

/// One blast at full size: as many senders as cores (at least 2), for `SRVD_SOAK_SECONDS`.
async fn blast<T: Traffic>(
    srvd: &crate::support::srvd::SrvdProcess,
    traffic: T,
    what: &str,
) -> Tally {
    let senders = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    blast_and_check(srvd, traffic, senders, blast_seconds(), what).await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_udp_malformed_and_valid_half_and_half() {
    let srvd = shipped(&[]);
    let traffic = MixedTraffic::learn(srvd.addr).await;
    let tally = blast(&srvd, traffic, "soak udp 50/50 malformed").await;
    assert!(tally.replies[..6].iter().sum::<u64>() > 0);
    assert_eq!(tally.replies[6] + tally.replies[10], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_udp_outside_every_zone() {
    let srvd = shipped(&[]);
    let tally = blast(&srvd, OutsideTraffic, "soak udp outside every zone").await;
    assert!(tally.reply_bytes <= tally.request_bytes && tally.largest_ratio <= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tcp_ten_thousand_idle_and_slowloris() {
    let files = load::raise_open_files();
    let idle: usize = crate::knob("SRVD_SOAK_IDLE", 10_000);
    assert!(files > idle as u64 + 1000, "RLIMIT_NOFILE {files} too low");
    // srvd's bound at the attack's size: srvd itself must hold 10,000 descriptors (it raises
    // its soft limit), and the attack still exceeds the bound.
    let bound = idle.to_string();
    let mut srvd = shipped(&["--tcp-max-connections", &bound]);
    let siege = Siege {
        idle,
        slowloris: 200,
        byte_every: Duration::from_secs(3),
        clients: 20,
        client_every: Duration::from_secs(1),
        close_within: Duration::from_secs(30),
    };
    let figures = hostile::siege(srvd.addr, &siege).await;
    report_siege(
        &format!(
            "soak tcp siege ({idle} idle, 200 slowloris at 1 byte/3 s, bound {idle}, idle timeout \
             10 s)"
        ),
        &figures,
    );
    check_siege(&mut srvd, &figures, idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sigterm_under_load() {
    load::raise_open_files();
    let mut srvd = shipped(&[]);
    let figures =
        hostile::sigterm_under_load(&mut srvd, 500, 8, 50_000, Duration::from_secs(30)).await;
    report_and_check_sigterm("soak sigterm under load (500 tcp, 8 udp loops)", &figures);
}
