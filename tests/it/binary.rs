//! The `srvd` binary as a user runs it: the embedded default, start-up errors, signals, and `dig`.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::dns::{self, query};
use crate::support::srvd::{run_binary_expecting_failure, spawn_binary};
use crate::support::{fixture_zones, shipped_zones};

#[tokio::test]
async fn without_a_zones_directory_the_embedded_zone_is_served() {
    let empty = tempfile::tempdir().unwrap();
    let process = spawn_binary(empty.path(), &[]);
    assert!(
        process
            .log
            .iter()
            .any(|l| l.contains("embedded example zone")),
        "says it serves the embedded zone: {:#?}",
        process.log
    );
    let serving = process.log.last().unwrap();
    assert!(serving.contains("service.local. ("), "{serving}");
    let reply = dns::udp(
        process.addr,
        &query("_http._tcp.web.service.local.", RecordType::SRV),
    )
    .await;
    assert_eq!(dns::srvs(&reply.answers).len(), 3);
    assert!(reply.metadata.authoritative);
}

#[test]
fn the_embedded_zone_is_the_shipped_zone() {
    let shipped = std::fs::read_to_string(shipped_zones().join("service.local.zone")).unwrap();
    assert_eq!(shipped, srvd::zonefile::EMBEDDED_ZONE);
}

#[test]
fn a_bad_zone_file_stops_the_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.test.zone");
    std::fs::write(
        &path,
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\n@ IN NS ns1\nns1 IN A 10.0.0.1\nbad IN A 10.0.0.999\n",
    )
    .unwrap();
    let (code, stderr) =
        run_binary_expecting_failure(dir.path(), &["--zones-dir", dir.path().to_str().unwrap()]);
    assert_ne!(code, 0);
    let expected = format!("{}:5: ", path.display());
    assert!(
        stderr.contains(&expected),
        "stderr names file and line: {stderr}"
    );
}

#[test]
fn a_delegation_in_a_zone_file_is_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deleg.test.zone");
    std::fs::write(
        &path,
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\n@ IN NS ns1\nns1 IN A 10.0.0.1\n\nchild IN NS ns.child\n",
    )
    .unwrap();
    let (code, stderr) =
        run_binary_expecting_failure(dir.path(), &["--zones-dir", dir.path().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("{}:6: ", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("delegations are not supported"), "{stderr}");
}

#[test]
fn a_missing_zones_dir_that_was_given_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_binary_expecting_failure(dir.path(), &["--zones-dir", "nope"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("nope: the zones directory does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_with_exit_status_zero() {
    for signal in ["TERM", "INT"] {
        let mut process = spawn_binary(&fixture_zones(), &["--zones-dir", "."]);
        let reply = dns::udp(process.addr, &query("a.svc.example.test.", RecordType::A)).await;
        assert_eq!(reply.answers.len(), 1);
        process.signal(signal);
        let status = process.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

#[tokio::test]
async fn dig_gets_an_authoritative_srv_answer_with_glue() {
    let process = spawn_binary(
        &fixture_zones(),
        &["--zones-dir", &shipped_zones().to_string_lossy()],
    );
    let port = process.addr.port().to_string();
    let out = dns::dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "_http._tcp.web.service.local",
        "SRV",
    ]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "AA set, RA clear: {out}");
    assert!(
        out.contains("ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 6"),
        "{out}"
    );
    assert!(
        out.contains("inst0._http._tcp.web.service.local. 60 IN A 10.0.0.1"),
        "{out}"
    );
}

/// UDP sockets share their port with SO_REUSEPORT (one per core), which must not let a second
/// server share it: a second srvd on a port in use stops at start naming the address, and the
/// first keeps every query. A port taken by another program's UDP socket stops srvd too.
#[tokio::test]
async fn a_second_server_on_a_port_in_use_stops_at_start_and_takes_no_queries() {
    use crate::support::dns::udp;
    use crate::support::srvd::run_command_expecting_failure;

    let dir = fixture_zones();
    let first = spawn_binary(&dir, &["--zones-dir", "."]);
    let stops_at_start = |addr: &str| {
        let (code, stderr) =
            run_command_expecting_failure(&dir, &["serve", "--listen", addr, "--zones-dir", "."]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")),
            "{stderr}"
        );
    };
    stops_at_start(&first.addr.to_string());
    for _ in 0..50 {
        let reply = udp(first.addr, &query("a.svc.example.test.", RecordType::A)).await;
        assert_eq!(
            reply.answers.len(),
            1,
            "the first server answers every query"
        );
    }

    // Only UDP taken, by a socket without SO_REUSEPORT: srvd's TCP bind succeeds, its UDP
    // bind fails.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stops_at_start(&held.local_addr().unwrap().to_string());
}
