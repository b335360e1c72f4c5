//! DNS-SD browsing against a real srvd serving tests/data/browse: the client's `browse` and
//! `service_types`, the wire form they read, and `srvd browse`.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use srvd::client::{LookupError, ServiceInstance, SrvResolver};

use crate::support::dns::{self, query};
use crate::support::srvd::TestServer;

/// `tests/data/browse`: browse.test. (the service types and instances) and other.test. (an
/// instance the server sends no additional data for).
fn browse_zones() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/browse")
}

fn resolver(server: &TestServer) -> SrvResolver {
    SrvResolver::with_server(server.addr).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A loopback address where nothing answers DNS.
fn dead_server() -> SocketAddr {
    // On 127.0.0.2, where no other test binds: a port freed on 127.0.0.1 may be taken by the
    // next test server before this one asks it.
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    listener.local_addr().unwrap()
}

fn names(instances: &[ServiceInstance]) -> Vec<&str> {
    instances.iter().map(|i| i.name.as_str()).collect()
}

#[tokio::test]
async fn browse_lists_each_instance_with_srv_txt_and_addresses_in_name_order() {
    let server = TestServer::start(&browse_zones()).await;
    let instances = resolver(&server)
        .browse("_http._tcp", "browse.test")
        .await
        .unwrap();
    // PTRs come as web-b, web-a, bare, gone; gone has no SRV (a stale PTR) and is left out.
    assert_eq!(
        names(&instances),
        [
            "bare._http._tcp.browse.test.",
            "web-a._http._tcp.browse.test.",
            "web-b._http._tcp.browse.test.",
        ]
    );

    let web_a = &instances[1];
    assert_eq!(web_a.label, "web-a");
    assert_eq!(web_a.targets.len(), 1);
    let target = &web_a.targets[0];
    assert_eq!(
        (target.target.as_str(), target.port),
        ("host-a.browse.test.", 8080)
    );
    assert_eq!(target.addrs, [ip("192.0.2.10"), ip("2001:db8::10")]);
    // "txtvers=1" "Path=/a" "PATH=/ignored" "secure" "empty=" by RFC 6763 §6.
    let txt: Vec<(&str, Option<&[u8]>)> = web_a.txt.iter().collect();
    assert_eq!(
        txt,
        [
            ("txtvers", Some(&b"1"[..])),
            ("path", Some(&b"/a"[..])),
            ("secure", None),
            ("empty", Some(&b""[..])),
        ]
    );
    assert_eq!(
        web_a.txt.get_str("PATH"),
        Some("/a"),
        "first occurrence wins"
    );
    assert_eq!(web_a.txt.get("Secure"), Some(None), "a boolean attribute");

    let web_b = &instances[2];
    let order: Vec<(u16, &str)> = web_b
        .targets
        .iter()
        .map(|t| (t.port, t.target.as_str()))
        .collect();
    assert_eq!(
        order,
        [(8081, "host-b.browse.test."), (8082, "host-a.browse.test.")],
        "RFC 2782 order: priority 0 before 1"
    );
    assert_eq!(web_b.txt.get_str("note"), Some("two \"words\""));
    assert_eq!(
        web_b.socket_addrs(),
        [
            "192.0.2.11:8081".parse().unwrap(),
            "192.0.2.10:8082".parse().unwrap(),
            "[2001:db8::10]:8082".parse().unwrap(),
        ]
    );

    let bare = &instances[0];
    assert!(bare.txt.is_empty(), "one empty string: no attributes");
    assert_eq!(bare.targets[0].addrs, [ip("192.0.2.11")]);
}

#[tokio::test]
async fn the_ptr_answer_carries_the_empty_txt_as_one_zero_length_string() {
    let server = TestServer::start(&browse_zones()).await;
    let reply = dns::udp(
        server.addr,
        &query("_http._tcp.browse.test.", RecordType::PTR),
    )
    .await;
    assert_eq!(dns::of_type(&reply.answers, RecordType::PTR).len(), 4);
    let bare_txt: Vec<Vec<Vec<u8>>> = reply
        .additionals
        .iter()
        .filter(|r| r.name.to_ascii() == "bare._http._tcp.browse.test.")
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(bare_txt, [vec![Vec::<u8>::new()]]);
}

#[tokio::test]
async fn what_the_server_did_not_send_along_is_looked_up() {
    let server = TestServer::start(&browse_zones()).await;
    let resolver = resolver(&server);
    // The instance lives in other.test.: the PTR answer has no additional data for it.
    let instances = resolver.browse("_ftp._tcp.browse.test", "").await.unwrap();
    assert_eq!(names(&instances), ["remote._ftp._tcp.other.test."]);
    let remote = &instances[0];
    assert_eq!(remote.targets[0].port, 2121);
    assert_eq!(remote.targets[0].addrs, [ip("192.0.2.21")]);
    assert_eq!(remote.txt.get_str("u"), Some("anonymous"));

    // A label holding a dot, and an instance with no TXT record at all (NODATA: no attributes).
    let instances = resolver
        .browse("_printer._tcp", "browse.test.")
        .await
        .unwrap();
    assert_eq!(
        names(&instances),
        ["printer\\.2._printer._tcp.browse.test."]
    );
    assert_eq!(instances[0].label, "printer.2");
    assert!(instances[0].txt.is_empty());
    assert_eq!(instances[0].targets[0].port, 631);
}

#[tokio::test]
async fn service_types_are_enumerated_in_name_order() {
    let server = TestServer::start(&browse_zones()).await;
    let types = resolver(&server)
        .service_types("browse.test")
        .await
        .unwrap();
    assert_eq!(
        types,
        [
            "_ftp._tcp.browse.test.",
            "_http._tcp.browse.test.",
            "_printer._tcp.browse.test.",
        ]
    );
}

#[tokio::test]
async fn no_such_type_no_instances_and_no_resolver_are_told_apart() {
    let server = TestServer::start(&browse_zones()).await;
    let resolver = resolver(&server);
    let err = resolver
        .browse("_nope._tcp", "browse.test")
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::NoSuchName { .. }), "{err}");
    assert!(err.to_string().contains("_nope._tcp.browse.test"), "{err}");
    // The name exists (it has an SRV) but lists no instances.
    let none = resolver.browse("_empty._tcp", "browse.test").await.unwrap();
    assert!(none.is_empty());
    let err = resolver.service_types("other.test").await.unwrap_err();
    assert!(matches!(err, LookupError::NoSuchName { .. }), "{err}");

    let dead = SrvResolver::builder()
        .server(dead_server())
        .timeout(Duration::from_millis(300))
        .attempts(1)
        .build()
        .unwrap();
    let err = dead.service_types("browse.test").await.unwrap_err();
    assert!(matches!(err, LookupError::Unreachable { .. }), "{err}");
    let err = dead.browse("_http._tcp", "browse.test").await.unwrap_err();
    assert!(matches!(err, LookupError::Unreachable { .. }), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_blocking_browse_works_inside_a_tokio_runtime() {
    // srvd runs as its own process: this runtime's only thread is about to block.
    let zones = browse_zones();
    let server = crate::support::srvd::spawn_binary(&zones, &["--zones-dir", "."]);
    let resolver = SrvResolver::with_server(server.addr).unwrap();
    let instances = resolver
        .browse_blocking("_http._tcp", "browse.test")
        .unwrap();
    assert_eq!(instances.len(), 3);
    let types = resolver.service_types_blocking("browse.test").unwrap();
    assert_eq!(types.len(), 3);
}

fn srvd_browse(server: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_srvd"))
        .arg("browse")
        .args(args)
        .args(["--server", &server.to_string(), "--timeout", "1"])
        .output()
        .unwrap()
}

#[tokio::test]
async fn srvd_browse_prints_one_line_per_instance_and_json() {
    let server = TestServer::start(&browse_zones()).await;
    let addr = server.addr;
    let run = |args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || srvd_browse(addr, args))
    };

    let output = run(&["_http._tcp.browse.test"]).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "bare._http._tcp.browse.test. host-b.browse.test.:9000 192.0.2.11",
            "web-a._http._tcp.browse.test. host-a.browse.test.:8080 192.0.2.10,2001:db8::10 \
             \"txtvers=1\" \"path=/a\" \"secure\" \"empty=\"",
            "web-b._http._tcp.browse.test. host-b.browse.test.:8081,host-a.browse.test.:8082 \
             192.0.2.11,192.0.2.10,2001:db8::10 \"note=two \\\"words\\\"\"",
        ]
    );

    let output = run(&["_http._tcp.browse.test", "--json"]).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["name"], "web-a._http._tcp.browse.test.");
    assert_eq!(items[1]["label"], "web-a");
    assert_eq!(
        items[1]["txt"],
        serde_json::json!({"txtvers": "1", "path": "/a", "secure": null, "empty": ""})
    );
    assert_eq!(items[0]["txt"], serde_json::json!({}));
    assert_eq!(items[2]["targets"][1]["port"], 8082);
    assert_eq!(
        items[2]["targets"][1]["addrs"],
        serde_json::json!(["192.0.2.10", "2001:db8::10"])
    );

    let output = run(&["--types", "browse.test"]).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "_ftp._tcp.browse.test.\n_http._tcp.browse.test.\n_printer._tcp.browse.test.\n"
    );
    let output = run(&["--types", "browse.test", "--json"]).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json[1], "_http._tcp.browse.test.");
}

#[tokio::test]
async fn srvd_browse_exits_2_for_no_such_service_or_no_instances() {
    let server = TestServer::start(&browse_zones()).await;
    let addr = server.addr;
    for (args, says) in [
        (["_nope._tcp.browse.test", ""], "_nope._tcp.browse.test"),
        (
            ["_empty._tcp.browse.test", ""],
            "no instances of _empty._tcp",
        ),
        (
            ["--types", "other.test"],
            "_services._dns-sd._udp.other.test",
        ),
    ] {
        let args: Vec<&'static str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let output = tokio::task::spawn_blocking(move || srvd_browse(addr, &args))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{says}: {stderr}");
        assert!(output.stdout.is_empty(), "{says}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn srvd_browse_exits_3_when_the_resolver_is_unreachable() {
    for args in [&["_http._tcp.browse.test"][..], &["--types", "browse.test"]] {
        let output = srvd_browse(dead_server(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("browse.test"), "{stderr}");
    }
}

/// A UDP relay to `upstream` that counts the questions passing through it.
async fn counting_relay(
    upstream: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        // Ends with the test's runtime.
        while let Ok((n, client)) = socket.recv_from(&mut buf).await {
            counted.fetch_add(1, Ordering::SeqCst);
            let Some(reply) = dns::udp_raw(upstream, &buf[..n]).await else {
                continue;
            };
            let _ = socket.send_to(&reply, client).await;
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_browse_of_a_server_that_sends_additional_data_is_one_question() {
    use std::sync::atomic::Ordering;
    let server = TestServer::start(&browse_zones()).await;
    let (relay, questions) = counting_relay(server.addr).await;
    let resolver = SrvResolver::with_server(relay).unwrap();
    let instances = resolver.browse("_http._tcp", "browse.test").await.unwrap();
    assert_eq!(instances.len(), 3);
    // One PTR question, plus one SRV question for the stale PTR (gone has no SRV in the answer).
    assert_eq!(questions.load(Ordering::SeqCst), 2);
    // _ftp's instance is in another zone: PTR, then SRV and TXT are asked for; the address
    // comes with the SRV answer.
    resolver.browse("_ftp._tcp", "browse.test").await.unwrap();
    assert_eq!(questions.load(Ordering::SeqCst), 2 + 3);
}

/// The `srvd browse` commands of the README, run as written against the shipped zone (only the
/// port differs), print what the README shows.
#[tokio::test]
async fn the_readme_browse_commands_print_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Browsing: `srvd browse`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a browsing section");
    let blocks: Vec<&str> = section
        .split("```text\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 2, "instances and types");
    let commands: Vec<Vec<&str>> = section
        .lines()
        .filter_map(|l| l.strip_prefix("cargo run --release --bin srvd -- "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(commands.len(), 3);
    let server =
        crate::support::srvd::spawn_binary(&crate::support::shipped_zones(), &["--zones-dir", "."]);
    let port = server.addr.port().to_string();
    let mut outputs = Vec::new();
    for command in commands {
        let args: Vec<String> = command
            .iter()
            .map(|a| a.replace(":1053", &format!(":{port}")))
            .collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_srvd"))
                .args(args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(output.status.success(), "{output:?}");
        outputs.push(String::from_utf8(output.stdout).unwrap());
    }
    assert_eq!(outputs[0], blocks[0]);
    let json: serde_json::Value = serde_json::from_str(&outputs[1]).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(
        json[0]["txt"],
        serde_json::json!({"txtvers": "1", "zone": "a"})
    );
    assert_eq!(outputs[2], blocks[1]);
}

/// The client's `browse`/`service_types` and `srvd browse --json` against the same registry
/// data in etcd (`srvd serve --registry /services`): the same instances, TXT pairs by RFC 6763
/// §6 rules (an instance without metadata has none), addresses from the additional section.
#[tokio::test]
async fn client_and_cli_browse_the_registry_from_etcd_alike() {
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let mut client = etcd.client().await;
    for (key, value) in [
        (
            "/services/web/web-01",
            r#"{"Addr":"10.0.1.10","Port":8080,"Metadata":{"version":"2","Path":"/api"}}"#,
        ),
        ("/services/web/web-02", r#"{"Addr":"[fd00::2]:8081"}"#),
        ("/services/db/pg", r#"{"Addr":"10.0.2.1","Port":5432}"#),
    ] {
        client.put(key, value, None).await.unwrap();
    }
    let server = TestServer::start_etcd(&etcd.url, &["reg.test."], None, |e| {
        e.registry_prefixes = vec!["/services".into()];
    })
    .await;
    let resolver = resolver(&server);
    let instances = resolver.browse("_web._tcp", "reg.test").await.unwrap();
    assert_eq!(
        names(&instances),
        ["web-01._web._tcp.reg.test.", "web-02._web._tcp.reg.test."]
    );
    assert_eq!(instances[0].txt.get_str("version"), Some("2"));
    assert_eq!(
        instances[0].txt.get_str("path"),
        Some("/api"),
        "keys are case-insensitive"
    );
    assert!(
        instances[1].txt.is_empty(),
        "one empty string is no attributes"
    );
    assert_eq!(
        instances[1].socket_addrs(),
        ["[fd00::2]:8081".parse::<SocketAddr>().unwrap()]
    );
    let types = resolver.service_types("reg.test").await.unwrap();
    assert_eq!(types, ["_db._tcp.reg.test.", "_web._tcp.reg.test."]);

    let addr = server.addr;
    let output =
        tokio::task::spawn_blocking(move || srvd_browse(addr, &["_web._tcp.reg.test", "--json"]))
            .await
            .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cli: Vec<(&str, Vec<String>)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let addrs = i["targets"][0]["addrs"].as_array().unwrap();
            (
                i["name"].as_str().unwrap(),
                addrs
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let lib: Vec<(&str, Vec<String>)> = instances
        .iter()
        .map(|i| {
            let addrs = i.targets[0].addrs.iter().map(|a| a.to_string()).collect();
            (i.name.as_str(), addrs)
        })
        .collect();
    assert_eq!(cli, lib);
    assert_eq!(
        json[0]["txt"],
        serde_json::json!({"version": "2", "path": "/api"})
    );
}
