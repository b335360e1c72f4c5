//! Start-up: srvd serves as soon as its sockets are bound, whatever etcd does.

use std::net::TcpListener;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::dns::{query, udp};
use crate::support::fixture_zones;

/// A loopback URL nothing listens on (the port was free a moment ago).
pub fn unreachable_etcd() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn config_with(
    url: &str,
    zones: srvd::config::ZoneSource,
    etcd_zone: &str,
) -> srvd::config::Config {
    let mut etcd = srvd::config::EtcdConfig::new(vec![url.to_string()]);
    etcd.zones = vec![srvd::config::parse_zone(etcd_zone).unwrap()];
    srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones,
        etcd: Some(etcd),
        ..srvd::config::Config::default()
    }
}

#[tokio::test]
async fn zone_files_answer_at_once_while_etcd_is_unreachable_and_etcd_zones_servfail() {
    let config = config_with(
        &unreachable_etcd(),
        srvd::config::ZoneSource::Dir(fixture_zones()),
        "skydns.test.",
    );
    // Not a speed check: the old start-up waited 10 s for etcd before serving anything; this
    // bound only tells "does not wait for etcd" from "waits for it".
    let running = tokio::time::timeout(Duration::from_secs(5), srvd::daemon::start(&config))
        .await
        .expect("start does not wait for etcd")
        .unwrap();
    let addr = running.addrs[0];
    let reply = udp(addr, &query("a.svc.example.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    let reply = udp(addr, &query("x.skydns.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(running.sync_status().unwrap().revision, None);
    running.shutdown();
    running.wait().await;
}

#[tokio::test]
async fn an_empty_zones_dir_with_etcd_starts_and_serves_etcd_zones() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        &unreachable_etcd(),
        srvd::config::ZoneSource::Dir(dir.path().to_path_buf()),
        "skydns.test.",
    );
    let running = srvd::daemon::start(&config).await.unwrap();
    let reply = udp(running.addrs[0], &query("x.skydns.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    running.shutdown();
    running.wait().await;
}

#[tokio::test]
async fn an_empty_zones_dir_without_etcd_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: srvd::config::ZoneSource::Dir(dir.path().to_path_buf()),
        ..srvd::config::Config::default()
    };
    let error = srvd::daemon::start(&config).await.unwrap_err().to_string();
    assert!(error.contains("no zone files"), "{error}");
}

#[test]
fn a_lameduck_without_health_is_refused_naming_both_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = crate::support::srvd::run_binary_expecting_failure(
        dir.path(),
        &["--health-lameduck", "5s"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--health-lameduck") && stderr.contains("needs --health"),
        "{stderr}"
    );
}
