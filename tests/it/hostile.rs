//! Hostile traffic at scale, small enough for the normal suite (tests/soak/hostile.rs runs the
//! same workloads big): malformed and valid packets mixed at full rate, names outside every zone
//! at full rate, idle and slowloris TCP connections at the bound, file descriptors running out,
//! and SIGTERM under query load. Figures are printed on `figure:` lines; speed is never asserted.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::hostile::{
    self, CLIENT_WAIT, MixedTraffic, OutsideTraffic, Siege, blast_and_check, check_siege,
    report_and_check_sigterm, report_siege, shipped,
};
use crate::support::load;
use crate::support::shipped_zones;
use crate::support::srvd::spawn_binary_with_open_files;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_valid_packets_half_and_half_at_full_rate_valid_ones_keep_their_answers() {
    let srvd = shipped(&[]);
    let traffic = MixedTraffic::learn(srvd.addr).await;
    let tally = blast_and_check(
        &srvd,
        traffic,
        2,
        Duration::from_secs(2),
        "udp 50/50 malformed",
    )
    .await;
    let valid_sent: u64 = tally.sent[..6].iter().sum();
    let valid_answered: u64 = tally.replies[..6].iter().sum();
    assert!(valid_sent > 1000 && valid_answered > 0, "{tally:?}");
    assert_eq!(tally.replies[6], 0, "a header cut short gets silence");
    assert_eq!(
        tally.replies[10], 0,
        "a response sent as a query gets silence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_every_zone_at_full_rate_are_refused_without_amplification() {
    let srvd = shipped(&[]);
    let tally = blast_and_check(
        &srvd,
        OutsideTraffic,
        2,
        Duration::from_secs(2),
        "udp outside every zone",
    )
    .await;
    assert!(tally.answered > 1000, "{tally:?}");
    assert!(
        tally.reply_bytes <= tally.request_bytes && tally.largest_ratio <= 1.0,
        "no amplification: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_hit_the_bound_while_a_client_is_answered() {
    load::raise_open_files();
    let mut srvd = shipped(&["--tcp-max-connections", "32", "--tcp-idle-timeout", "2"]);
    let siege = Siege {
        idle: 300,
        slowloris: 16,
        byte_every: Duration::from_millis(700),
        clients: 4,
        client_every: Duration::from_secs(1),
        close_within: Duration::from_secs(10),
    };
    let figures = hostile::siege(srvd.addr, &siege).await;
    report_siege("tcp siege (300 idle, 16 slowloris, bound 32)", &figures);
    check_siege(&mut srvd, &figures, siege.idle);
}

/// With fewer file descriptors than its connection bound allows, srvd runs out of descriptors
/// before it reaches the bound: then too the quietest connection must make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_quietest_connection_makes_room() {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    load::raise_open_files();
    let srvd = shipped(&["--tcp-max-connections", "1000", "--tcp-idle-timeout", "60"]);
    let pid = Pid::from_raw(srvd.child.id() as i32).unwrap();
    let low = Rlimit {
        current: Some(128),
        maximum: Some(128),
    };
    prlimit(Some(pid), Resource::Nofile, low).expect("lower srvd's open files limit");
    // Enough idle connections to run srvd out of descriptors, few enough that the backlog ahead
    // of each client drains well within its wait on a slow machine.
    let siege = Siege {
        idle: 160,
        slowloris: 0,
        byte_every: Duration::from_secs(1),
        clients: 3,
        client_every: Duration::from_millis(500),
        close_within: Duration::ZERO,
    };
    let figures = hostile::siege(srvd.addr, &siege).await;
    report_siege("tcp out of descriptors (160 idle, limit 128)", &figures);
    assert_eq!(
        figures.client_waits.iter().flatten().count(),
        figures.client_waits.len(),
        "every well-behaved client is answered within {CLIENT_WAIT:?}: {figures:?}"
    );
}

/// Go raises its soft limit on open files to the hard one at start (so CoreDNS does); srvd
/// must too, or its connection bound is a promise the kernel breaks at 1024 descriptors.
#[test]
fn srvd_raises_its_soft_open_files_limit_to_the_hard_one() {
    let zones = shipped_zones();
    let srvd = spawn_binary_with_open_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        &["--zones-dir", zones.to_str().unwrap()],
        64,
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", srvd.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    println!("figure: srvd started with a soft limit of 64 open files: {line}");
    assert_eq!(fields[3], fields[4], "soft = hard: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_query_load_answers_every_query_in_flight_and_exits_zero() {
    let mut srvd = shipped(&[]);
    let figures =
        hostile::sigterm_under_load(&mut srvd, 50, 2, 2000, Duration::from_secs(15)).await;
    report_and_check_sigterm("sigterm under load (50 tcp, 2 udp loops)", &figures);
}

/// The idle timeout bounds the whole query, from the last answer: a slowloris trickling the
/// length prefix a byte at a time once got a fresh timeout for each part (up to three times
/// the idle timeout per query).
#[tokio::test]
async fn a_slowloris_is_closed_at_the_idle_timeout_however_it_trickles() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        crate::support::srvd::TestServer::start_with(&crate::support::fixture_zones(), |c| {
            c.tcp.idle_timeout = Duration::from_secs(2)
        })
        .await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let start = tokio::time::Instant::now();
    // The slowloris's pace is the point here: a byte each 1.2 s, inside the idle timeout.
    tokio::time::sleep_until(start + Duration::from_millis(1200)).await;
    let _ = stream.write_all(&[0]).await;
    tokio::time::sleep_until(start + Duration::from_millis(2400)).await;
    let _ = stream.write_all(&[40]).await;
    tokio::time::sleep_until(start + Duration::from_millis(3200)).await;
    // 3.2 s after the accept, 1.2 s past the idle timeout, srvd has closed it.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "still open 3.2 s after the accept with a 2 s idle timeout: {read:?}"
    );
}
