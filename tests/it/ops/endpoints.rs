//! `/health`, `/ready` and `/metrics` over real HTTP, after real DNS traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_parse::{Scrape, Value};

use crate::support::dns::{a_of, query, tcp, udp, with_edns};
use crate::support::etcd::EtcdServer;
use crate::support::http::{addr_in_log, get};
use crate::support::srvd::{TestServer, spawn_binary};
use crate::support::{eventually, fixture_zones};

fn any_port() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

#[test]
fn health_is_ok_while_serving_and_fails_during_lameduck_while_dns_still_answers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let zones = fixture_zones();
    let mut srvd = spawn_binary(
        &zones,
        &[
            "--zones-dir",
            zones.to_str().unwrap(),
            "--health",
            "127.0.0.1:0",
            "--health-lameduck",
            "2s",
        ],
    );
    let http = addr_in_log(&srvd.log, "health");
    let dns = srvd.addr;
    runtime.block_on(async {
        assert_eq!(get(http, "/health").await, (200, "OK".to_string()));
        assert_eq!(get(http, "/ready").await.0, 404, "only /health here");
    });
    srvd.signal("TERM");
    runtime.block_on(async {
        eventually(
            Duration::from_secs(5),
            "/health fails in lameduck",
            || async { (get(http, "/health").await.0 == 503).then_some(()) },
        )
        .await;
        assert_eq!(
            a_of(dns, "a.svc.example.test.").await,
            Some(vec!["192.0.2.1".parse().unwrap()]),
            "DNS still answers during lameduck"
        );
    });
    let status = srvd.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    srvd.log_until(Duration::from_secs(5), |log| {
        log.iter()
            .any(|l| l.contains("lameduck: still answering, /health fails"))
    });
}

#[tokio::test]
async fn ready_waits_for_the_first_etcd_read_and_names_what_it_waits_for() {
    let mut etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put("/skydns/test/skydns/a", r#"{"host":"10.0.0.1"}"#, None)
        .await
        .unwrap();
    etcd.stop();
    let mut etcd_config = srvd::config::EtcdConfig::new(vec![etcd.url.clone()]);
    etcd_config.zones = vec![srvd::config::parse_zone("skydns.test.").unwrap()];
    let config = srvd::config::Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        zones: srvd::config::ZoneSource::Dir(fixture_zones()),
        etcd: Some(etcd_config),
        ready: any_port(),
        metrics: any_port(),
        ..srvd::config::Config::default()
    };
    let running = srvd::daemon::start(&config).await.unwrap();
    let (ready, metrics) = (running.http_addrs[0], running.http_addrs[1]);
    assert_eq!(
        get(ready, "/ready").await,
        (503, "etcd: skydns.test.\n".to_string()),
        "zone files are loaded; etcd is not read yet"
    );
    let scraped = fetch_metrics(metrics).await;
    assert_eq!(gauge(&scraped, "srvd_etcd_mirror_revision", &[]), 0.0);
    assert_eq!(counter(&scraped, "srvd_etcd_full_reads_total", &[]), 0.0);

    etcd.restart().await;
    eventually(Duration::from_secs(10), "/ready turns 200", || async {
        (get(ready, "/ready").await == (200, "OK".to_string())).then_some(())
    })
    .await;
    let scraped = fetch_metrics(metrics).await;
    assert!(gauge(&scraped, "srvd_etcd_mirror_revision", &[]) >= 2.0);
    assert_eq!(counter(&scraped, "srvd_etcd_full_reads_total", &[]), 1.0);
    assert_eq!(
        gauge(&scraped, "srvd_etcd_keys_mirrored", &[("layout", "skydns")]),
        1.0
    );
    assert!(
        gauge(&scraped, "srvd_etcd_seconds_since_contact", &[]) < 60.0,
        "etcd answered"
    );
    // A write through the watch is timed from its arrival to the snapshot that serves it.
    let mut client = etcd.client().await;
    client
        .put("/skydns/test/skydns/b", r#"{"host":"10.0.0.2"}"#, None)
        .await
        .unwrap();
    let dns = running.addrs[0];
    eventually(
        Duration::from_secs(10),
        "the watched write is served",
        || async { a_of(dns, "b.skydns.test.").await.map(|_| ()) },
    )
    .await;
    let scraped = fetch_metrics(metrics).await;
    assert!(histogram_count(&scraped, "srvd_etcd_propagation_seconds", &[]) >= 1);
    running.shutdown();
    running.wait().await;
}

#[tokio::test]
async fn metrics_count_the_queries_sent_by_zone_type_proto_and_rcode() {
    let server = TestServer::start_with(&fixture_zones(), |c| c.metrics = any_port()).await;
    let dns = server.addr;
    let metrics = server.http_addrs()[0];
    let sent = [
        ("a.svc.example.test.", RecordType::A, ResponseCode::NoError),
        ("a.svc.example.test.", RecordType::A, ResponseCode::NoError),
        ("b.svc.example.test.", RecordType::A, ResponseCode::NoError),
        ("nx.example.test.", RecordType::A, ResponseCode::NXDomain),
        (
            "_http._tcp.svc.example.test.",
            RecordType::SRV,
            ResponseCode::NoError,
        ),
        (
            "_http._tcp.svc.example.test.",
            RecordType::SRV,
            ResponseCode::NoError,
        ),
        // CAA is not one of CoreDNS's named types: counted as `other`.
        (
            "a.svc.example.test.",
            RecordType::CAA,
            ResponseCode::NoError,
        ),
        // Outside every zone: REFUSED, never reached a zone (`dropped`).
        ("www.example.org.", RecordType::A, ResponseCode::Refused),
        ("www.example.org.", RecordType::A, ResponseCode::Refused),
    ];
    for (name, qtype, rcode) in sent {
        let reply = udp(dns, &query(name, qtype)).await;
        assert_eq!(reply.metadata.response_code, rcode, "{name} {qtype}");
    }
    let mut dnssec = with_edns(query("a.svc.example.test.", RecordType::TXT), 1232);
    dnssec.edns.as_mut().unwrap().flags_mut().dnssec_ok = true;
    let reply = tcp(dns, &dnssec).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);

    let scraped = fetch_metrics(metrics).await;
    let server_label = format!("dns://{dns}");
    let requests = |zone: &str, proto: &str, qtype: &str| {
        counter(
            &scraped,
            "coredns_dns_requests_total",
            &[
                ("server", &server_label),
                ("zone", zone),
                ("view", ""),
                ("proto", proto),
                ("family", "1"),
                ("type", qtype),
            ],
        )
    };
    assert_eq!(requests("example.test.", "udp", "A"), 4.0);
    assert_eq!(requests("example.test.", "udp", "SRV"), 2.0);
    assert_eq!(requests("example.test.", "udp", "other"), 1.0);
    assert_eq!(requests("example.test.", "tcp", "TXT"), 1.0);
    assert_eq!(requests("dropped", "udp", "A"), 2.0);
    let responses = |zone: &str, rcode: &str, plugin: &str| {
        counter(
            &scraped,
            "coredns_dns_responses_total",
            &[
                ("server", &server_label),
                ("zone", zone),
                ("view", ""),
                ("rcode", rcode),
                ("plugin", plugin),
            ],
        )
    };
    assert_eq!(responses("example.test.", "NOERROR", "file"), 7.0);
    assert_eq!(responses("example.test.", "NXDOMAIN", "file"), 1.0);
    assert_eq!(responses("dropped", "REFUSED", ""), 2.0);
    assert_eq!(
        sum_of(&scraped, "coredns_dns_responses_total"),
        10.0,
        "every query answered once"
    );
    assert_eq!(
        counter(
            &scraped,
            "coredns_dns_do_requests_total",
            &[("zone", "example.test.")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(
            &scraped,
            "coredns_dns_request_size_bytes",
            &[("zone", "example.test."), ("proto", "udp")]
        ),
        7,
        "one request size per UDP query in the zone"
    );
    // UDP loops time one query in 16 (none of these 7), TCP every query.
    assert_eq!(
        histogram_count(
            &scraped,
            "coredns_dns_request_duration_seconds",
            &[("zone", "example.test.")]
        ),
        1,
        "the TCP query is timed"
    );
    assert_eq!(
        gauge(
            &scraped,
            "coredns_plugin_enabled",
            &[("zone", "example.test."), ("name", "file")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &scraped,
            "coredns_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(counter(&scraped, "coredns_panics_total", &[]), 0.0);
    server.shutdown().await;
}

pub(crate) async fn fetch_metrics(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The one sample of `name` whose labels include `labels`.
fn sample<'s>(scrape: &'s Scrape, name: &str, labels: &[(&str, &str)]) -> &'s Value {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{name} {labels:?} among {:#?}",
        scrape
            .samples
            .iter()
            .filter(|s| s.metric.starts_with(name))
            .map(|s| (&s.metric, &s.labels, &s.value))
            .collect::<Vec<_>>()
    );
    &matching[0].value
}

pub(crate) fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels) {
        Value::Counter(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, name, labels) {
        Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    match sample(scrape, name, labels) {
        Value::Histogram(buckets) => buckets.last().map_or(0, |b| b.count as u64),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn sum_of(scrape: &Scrape, name: &str) -> f64 {
    let by_labels: BTreeMap<String, f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let v = match s.value {
                Value::Counter(v) | Value::Untyped(v) => v,
                _ => 0.0,
            };
            (format!("{:?}", s.labels), v)
        })
        .collect();
    by_labels.values().sum()
}

/// The README's `curl` lines, run with `curl` against the binary started with the README's
/// options (each fixed port replaced by a free one, and the curl lines' ports with those).
#[test]
fn the_readme_curl_examples_work_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Health, readiness and metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has the section");
    let serve = section
        .lines()
        .find(|l| l.starts_with("scripts/serve "))
        .expect("a serve line");
    let mut fixed = Vec::new();
    let args: Vec<String> = serve
        .split_whitespace()
        .skip(1)
        .map(|a| match a.strip_prefix("127.0.0.1:") {
            Some(port) => {
                fixed.push(port.to_string());
                "127.0.0.1:0".to_string()
            }
            None => a.to_string(),
        })
        .collect();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let zones = fixture_zones();
    args.extend(["--zones-dir", zones.to_str().unwrap()]);
    let srvd = spawn_binary(&zones, &args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // One DNS query first, so /metrics has a coredns_dns_requests_total line to grep.
    runtime.block_on(async {
        assert!(a_of(srvd.addr, "a.svc.example.test.").await.is_some());
    });
    let actual: Vec<(String, String)> = fixed
        .iter()
        .zip(["health", "ready", "metrics"])
        .map(|(port, what)| {
            (
                format!("127.0.0.1:{port}"),
                addr_in_log(&srvd.log, what).to_string(),
            )
        })
        .collect();
    let curls: Vec<&str> = section.lines().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 3, "{section}");
    for line in curls {
        let (command, comment) = line.split_once('#').unwrap_or((line, ""));
        let mut command = command.to_string();
        for (readme_addr, addr) in &actual {
            command = command.replace(readme_addr, addr);
        }
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .expect("curl is installed");
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command}: {output:?}");
        if comment.trim_start().starts_with("OK") {
            assert_eq!(out, "OK", "{command}");
        } else {
            assert!(
                out.starts_with("coredns_dns_requests_total{"),
                "{command}: {out}"
            );
        }
    }
}
