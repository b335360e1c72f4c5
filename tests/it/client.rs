//! The client library against a real srvd: order, weights, failover, errors, caching, blocking
//! calls inside tokio, and `srvd resolve`.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use srvd::client::{LookupError, SrvName, SrvResolver};

use crate::support::etcd::EtcdServer;
use crate::support::srvd::TestServer;
use crate::support::{eventually, fixture_zones, shipped_zones};

fn resolver(server: &TestServer) -> SrvResolver {
    SrvResolver::with_server(server.addr).unwrap()
}

/// A zone `fail.test.` whose `_svc._tcp` lists a closed port first and `open` second, and whose
/// `_none._tcp` is decidedly not available.
fn failover_zone(closed: u16, open: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fail.test.zone"),
        format!(
            "$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 30\n@ IN NS ns\nns IN A 127.0.0.1\n\
             _svc._tcp IN SRV 0 10 {closed} h.fail.test.\n\
             _svc._tcp IN SRV 1 10 {open} h.fail.test.\n\
             h IN A 127.0.0.1\n\
             _none._tcp IN SRV 0 0 0 .\n"
        ),
    )
    .unwrap();
    dir
}

/// A port that refuses connections: bound, then closed.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn lookup_srv_returns_priority_order_with_addresses_from_the_additional_section() {
    let server = TestServer::start(&fixture_zones()).await;
    let lookup = resolver(&server)
        .lookup_srv("http", "tcp", "svc.example.test")
        .await
        .unwrap();
    assert_eq!(lookup.cname, "_http._tcp.svc.example.test.");
    let priorities: Vec<u16> = lookup.targets.iter().map(|t| t.priority).collect();
    assert_eq!(priorities, [10, 10, 20]);
    let last = &lookup.targets[2];
    assert_eq!(
        (last.target.as_str(), last.port),
        ("c.svc.example.test.", 80)
    );
    assert_eq!(
        last.addrs,
        ["192.0.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    let a = lookup
        .targets
        .iter()
        .find(|t| t.target == "a.svc.example.test.")
        .unwrap();
    assert_eq!(a.addrs.len(), 2, "A and AAAA from the additional section");
}

#[tokio::test]
async fn first_choice_follows_weights_over_10000_lookups() {
    let server = TestServer::start(&shipped_zones()).await;
    let resolver = resolver(&server);
    let mut inst0_first = 0u32;
    let rounds = 10_000;
    for _ in 0..rounds {
        let lookup = resolver
            .lookup_srv("http", "tcp", "web.service.local")
            .await
            .unwrap();
        assert_eq!(lookup.targets.len(), 3);
        assert_eq!(lookup.targets[2].priority, 20);
        inst0_first += u32::from(lookup.targets[0].target.starts_with("inst0."));
    }
    // Weight 60 of 90 in priority 10: 66.7% (σ = 0.47 points over 10,000 draws).
    let share = f64::from(inst0_first) * 100.0 / f64::from(rounds);
    assert!((share - 66.67).abs() < 3.0, "inst0 first in {share:.2}%");
}

#[tokio::test]
async fn std_and_tokio_connect_fail_over_past_a_refusing_instance() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let zone = failover_zone(closed_port(), open_port);
    let server = TestServer::start(zone.path()).await;
    let resolver = resolver(&server);

    // std, one line; run on a blocking thread as a std program would be.
    let name = SrvName::with_resolver("_svc._tcp.fail.test", &resolver);
    let stream = tokio::task::spawn_blocking(move || TcpStream::connect(name))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap().port(), open_port);

    // tokio, one await.
    let stream = srvd::client::connect("_svc._tcp.fail.test", &resolver)
        .await
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap().port(), open_port);
}

#[tokio::test]
async fn every_target_unreachable_is_its_own_error() {
    let zone = failover_zone(closed_port(), closed_port());
    let server = TestServer::start(zone.path()).await;
    let err = srvd::client::connect("_svc._tcp.fail.test", &resolver(&server))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::AllTargetsUnreachable { .. }),
        "{err}"
    );
    assert_eq!(
        std::io::Error::from(err).kind(),
        ErrorKind::ConnectionRefused
    );
}

#[tokio::test]
async fn a_lone_dot_target_means_decidedly_not_available() {
    let zone = failover_zone(closed_port(), closed_port());
    let server = TestServer::start(zone.path()).await;
    let err = resolver(&server)
        .lookup_srv("none", "tcp", "fail.test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::ServiceUnavailable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("_none._tcp.fail.test"),
        "names the service: {err}"
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_are_distinct_errors_with_io_kinds() {
    let server = TestServer::start(&fixture_zones()).await;
    let resolver = resolver(&server);
    let err = resolver
        .lookup_srv("nope", "tcp", "example.test")
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::NoSuchName { .. }), "{err}");
    assert!(err.to_string().contains("_nope._tcp.example.test"));
    let err = resolver
        .lookup_srv("", "", "b.svc.example.test")
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::NoRecords { .. }), "{err}");
    assert_eq!(std::io::Error::from(err).kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn an_unreachable_resolver_is_reported_as_such() {
    let dead: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let resolver = SrvResolver::builder()
        .server(dead)
        .timeout(Duration::from_millis(300))
        .attempts(1)
        .build()
        .unwrap();
    let err = resolver
        .lookup_srv("http", "tcp", "web.service.local")
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::Unreachable { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[tokio::test(flavor = "current_thread")]
async fn the_blocking_api_works_inside_a_tokio_runtime() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let zone = failover_zone(closed_port(), open.local_addr().unwrap().port());
    // srvd runs as its own process: this runtime's only thread is about to block.
    let server = crate::support::srvd::spawn_binary(zone.path(), &["--zones-dir", "."]);
    let resolver = SrvResolver::with_server(server.addr).unwrap();
    // Called directly on the runtime's only thread: no nested-runtime panic, no deadlock.
    let lookup = resolver
        .lookup_srv_blocking("svc", "tcp", "fail.test")
        .unwrap();
    assert_eq!(lookup.targets.len(), 2);
    let stream =
        TcpStream::connect(SrvName::with_resolver("_svc._tcp.fail.test", &resolver)).unwrap();
    assert_eq!(stream.peer_addr().unwrap(), open.local_addr().unwrap());
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_and_no_longer() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/test/skydns/cached/x",
            r#"{"host":"10.0.0.1","port":80,"ttl":2}"#,
            None,
        )
        .await
        .unwrap();
    let server = TestServer::start_etcd(&etcd.url, &["skydns.test."], None, |_| {}).await;
    let resolver = resolver(&server);
    let port = |lookup: srvd::client::SrvLookup| lookup.targets[0].port;
    assert_eq!(
        port(
            resolver
                .lookup_srv("", "", "cached.skydns.test")
                .await
                .unwrap()
        ),
        80
    );
    server
        .put(
            &mut client,
            "/skydns/test/skydns/cached/x",
            r#"{"host":"10.0.0.1","port":81,"ttl":2}"#,
        )
        .await;
    // srvd already answers 81, but the client's cached answer (TTL 2 s) still says 80...
    assert_eq!(
        port(
            resolver
                .lookup_srv("", "", "cached.skydns.test")
                .await
                .unwrap()
        ),
        80
    );
    // ...until the TTL has passed.
    eventually(
        Duration::from_secs(6),
        "the change is seen after the TTL",
        || async {
            (port(
                resolver
                    .lookup_srv("", "", "cached.skydns.test")
                    .await
                    .unwrap(),
            ) == 81)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn srvd_resolve_prints_one_line_per_record_in_order_and_json() {
    let server = TestServer::start(&shipped_zones()).await;
    let addr = server.addr.to_string();
    let run = move |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_srvd"))
            .arg("resolve")
            .args(args)
            .args(["--server", &addr])
            .output()
            .unwrap()
    };
    let output = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["_http._tcp.web.service.local"])
    })
    .await
    .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[..2].contains(&"10 60 8080 inst0._http._tcp.web.service.local. 10.0.0.1,fd00::1"),
        "{stdout}"
    );
    assert!(
        lines[..2].contains(&"10 30 8080 inst1._http._tcp.web.service.local. 10.0.0.2,fd00::2"),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        "20 10 8080 inst2._http._tcp.web.service.local. 10.0.1.1"
    );

    let output = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["_http._tcp.web.service.local", "--json"])
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["target"], "inst2._http._tcp.web.service.local.");
    assert_eq!(items[2]["addrs"], serde_json::json!(["10.0.1.1"]));
    assert_eq!(items[2]["port"], 8080);

    let output = tokio::task::spawn_blocking(move || run(&["_nope._tcp.service.local"]))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "no such service");
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("_nope._tcp.service.local"));
}

#[test]
fn srvd_resolve_exits_3_when_the_resolver_is_unreachable() {
    let output = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(["resolve", "_http._tcp.web.service.local", "--timeout", "1"])
        .args(["--server", &format!("127.0.0.1:{}", closed_port())])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("_http._tcp.web.service.local"));
}

/// `target/debug/examples/NAME`, built by `cargo test --all-targets` (scripts/test).
fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} missing: build the examples (cargo test --all-targets does)",
        path.display()
    );
    path
}

#[tokio::test]
async fn both_examples_connect_by_name_and_fail_over() {
    let listen = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = listen.local_addr().unwrap().port();
    drop(listen); // the example binds it itself, as the service
    let zone = failover_zone(closed_port(), open_port);
    let server = TestServer::start(zone.path()).await;
    for example in ["connect_std", "connect_tokio"] {
        let binary = example_binary(example);
        let args = [
            server.addr.to_string(),
            "_svc._tcp.fail.test".into(),
            format!("127.0.0.1:{open_port}"),
        ];
        let output =
            tokio::task::spawn_blocking(move || Command::new(binary).args(args).output().unwrap())
                .await
                .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{example}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("connected to 127.0.0.1:{open_port}")),
            "{example}: {stdout}"
        );
        assert!(
            stdout.contains("the service received: hello over SRV"),
            "{example}: {stdout}"
        );
    }
}
