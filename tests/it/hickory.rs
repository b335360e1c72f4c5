//! srvd's etcd zone served by hickory-dns (feature `hickory`): a real etcd, srvd's zone as a
//! `ZoneHandler` in a hickory `Catalog` behind hickory-server's `Server` on loopback, and the
//! same questions asked of `srvd serve` over the same transport. Each answer must be srvd's:
//! same RCODE, AA, and the same records in the same sections (ID and SRV order aside); the SRV
//! order itself must be RFC 2782's, drawn per response; an etcd write must show up.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_server::Server;
use hickory_server::zone_handler::Catalog;
use srvd::config::{Config, EtcdConfig, ZoneSource};
use srvd::hickory::Zones;

use crate::support::dns::{query, section, srvs, tcp, udp, with_edns};
use crate::support::etcd::EtcdServer;
use crate::support::srvd::TestServer;
use crate::support::{eventually, fixture_zones};

const SRV_NAME: &str = "_http._tcp.backend.service.local.";

/// hickory-server with srvd's zones in its catalog, on loopback (UDP and TCP on their own
/// ports).
struct HickoryZone {
    udp: SocketAddr,
    tcp: SocketAddr,
    server: Server<Catalog>,
    zones: Zones,
}

impl HickoryZone {
    /// srvd's etcd zone `service.local.`, as `srvd serve --etcd URL --zone service.local`.
    async fn start(etcd_url: &str) -> Self {
        let mut etcd = EtcdConfig::new(vec![etcd_url.to_string()]);
        etcd.zones = vec![srvd::config::parse_zone("service.local").unwrap()];
        Self::start_with(&Config {
            zones: ZoneSource::None,
            etcd: Some(etcd),
            ..Config::default()
        })
        .await
    }

    async fn start_with(config: &Config) -> Self {
        let zones = Zones::start(config).await.expect("srvd's zones load");
        let mut catalog = Catalog::new();
        zones.add_to(&mut catalog);
        let mut server = Server::new(catalog);
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 32);
        Self {
            udp: udp_addr,
            tcp: tcp_addr,
            server,
            zones,
        }
    }

    async fn stop(mut self) {
        self.server.shutdown_gracefully().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.zones.stop())
            .await
            .expect("the sync task stops");
    }
}

/// Asserts two responses say the same: RCODE, AA, and each section's records (compared as
/// sorted text: SRV order and the ID aside).
fn assert_same(what: &str, hickory: &Message, srvd: &Message) {
    assert_eq!(
        hickory.metadata.response_code, srvd.metadata.response_code,
        "{what}: RCODE"
    );
    assert_eq!(
        hickory.metadata.authoritative, srvd.metadata.authoritative,
        "{what}: AA"
    );
    assert_eq!(
        hickory.metadata.truncation, srvd.metadata.truncation,
        "{what}: TC"
    );
    assert_eq!(
        section(&hickory.answers),
        section(&srvd.answers),
        "{what}: answer"
    );
    assert_eq!(
        section(&hickory.authorities),
        section(&srvd.authorities),
        "{what}: authority"
    );
    assert_eq!(
        section(&hickory.additionals),
        section(&srvd.additionals),
        "{what}: additional"
    );
}

async fn put(client: &mut etcd_client::Client, key: &str, value: &str) -> i64 {
    client
        .put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_serves_srvds_etcd_zone_with_srvds_answers() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let base = "/skydns/local/service/backend/_tcp/_http";
    put(
        &mut client,
        &format!("{base}/x1"),
        r#"{"host":"10.0.0.1","port":8080,"priority":10,"weight":60}"#,
    )
    .await;
    put(
        &mut client,
        &format!("{base}/x2"),
        r#"{"host":"10.0.0.2","port":8080,"priority":10,"weight":40}"#,
    )
    .await;
    put(
        &mut client,
        &format!("{base}/x3"),
        r#"{"host":"10.0.0.3","port":8081,"priority":20}"#,
    )
    .await;
    let written = put(
        &mut client,
        "/skydns/local/service/info",
        r#"{"text":"hello"}"#,
    )
    .await;

    let srvd = TestServer::start_etcd(&etcd.url, &["service.local"], None, |_| {}).await;
    srvd.wait_for_revision(written).await;
    let hickory = HickoryZone::start(&etcd.url).await;
    assert!(
        hickory
            .zones
            .running()
            .wait_for_revision(written, Duration::from_secs(10))
            .await,
        "the hickory zone's mirror reached revision {written}"
    );

    let cases = [
        (SRV_NAME, RecordType::SRV, ResponseCode::NoError),
        (
            "x1._http._tcp.backend.service.local.",
            RecordType::A,
            ResponseCode::NoError,
        ),
        (
            "info.service.local.",
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        ("nope.service.local.", RecordType::A, ResponseCode::NXDomain),
        (
            "x1._http._tcp.backend.service.local.",
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        ("service.local.", RecordType::SOA, ResponseCode::NoError),
        ("elsewhere.example.", RecordType::A, ResponseCode::Refused),
    ];
    for (name, qtype, rcode) in cases {
        let what = format!("{name} {qtype}");
        let q = with_edns(query(name, qtype), 1232);
        let from_hickory = udp(hickory.udp, &q).await;
        let from_srvd = udp(srvd.addr, &q).await;
        assert_eq!(from_hickory.metadata.response_code, rcode, "{what}");
        assert_same(&what, &from_hickory, &from_srvd);
        // Over TCP too: hickory's stream path, srvd's stream limit.
        assert_same(
            &format!("{what} over TCP"),
            &tcp(hickory.tcp, &q).await,
            &tcp(srvd.addr, &q).await,
        );
    }

    // What those answers are, beyond being srvd's.
    let srv = udp(
        hickory.udp,
        &with_edns(query(SRV_NAME, RecordType::SRV), 1232),
    )
    .await;
    assert_eq!(srv.answers.len(), 3, "three SRV records: {srv:?}");
    assert_eq!(
        section(&srv.additionals),
        [
            "x1._http._tcp.backend.service.local. 300 A 10.0.0.1",
            "x2._http._tcp.backend.service.local. 300 A 10.0.0.2",
            "x3._http._tcp.backend.service.local. 300 A 10.0.0.3",
        ],
        "glue in Additional"
    );
    let txt = udp(hickory.udp, &query("info.service.local.", RecordType::TXT)).await;
    assert_eq!(section(&txt.answers), ["info.service.local. 300 TXT hello"]);
    for (name, qtype) in [
        ("nope.service.local.", RecordType::A),
        ("x1._http._tcp.backend.service.local.", RecordType::TXT),
    ] {
        let negative = udp(hickory.udp, &query(name, qtype)).await;
        assert!(negative.answers.is_empty(), "{name} {qtype}: no answer");
        assert_eq!(
            negative.authorities.len(),
            1,
            "{name} {qtype}: the SOA in Authority"
        );
        assert_eq!(negative.authorities[0].record_type(), RecordType::SOA);
        // RFC 2308: the negative TTL, min(SOA TTL, MINIMUM), as srvd sends it.
        let RData::SOA(soa) = &negative.authorities[0].data else {
            unreachable!()
        };
        assert_eq!(negative.authorities[0].ttl, soa.minimum.min(30));
    }

    // RFC 2782 order, drawn per response: priority 10 before 20 every time, and within
    // priority 10 both orders occur (60/40 weights: x2 first in 40% of draws). The bound makes a
    // false failure about 1e-20 likely.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let reply = udp(hickory.udp, &query(SRV_NAME, RecordType::SRV)).await;
        let order = srvs(&reply.answers);
        let priorities: Vec<u16> = order.iter().map(|s| s.0).collect();
        assert_eq!(priorities, [10, 10, 20], "priority order: {order:?}");
        firsts.insert(order[0].3.clone());
        if firsts.len() == 2 {
            break;
        }
    }
    assert_eq!(
        firsts.len(),
        2,
        "both priority-10 targets come first in some response: {firsts:?}"
    );

    // An etcd write shows up through hickory, as it does through srvd.
    let revision = put(
        &mut client,
        &format!("{base}/x4"),
        r#"{"host":"10.0.0.4","port":8080,"priority":10,"weight":10}"#,
    )
    .await;
    let updated = eventually(
        Duration::from_secs(10),
        "x4 in hickory's SRV answer",
        || async {
            let reply = udp(hickory.udp, &query(SRV_NAME, RecordType::SRV)).await;
            (reply.answers.len() == 4).then_some(reply)
        },
    )
    .await;
    srvd.wait_for_revision(revision).await;
    assert_same(
        "SRV after the write",
        &updated,
        &udp(srvd.addr, &query(SRV_NAME, RecordType::SRV)).await,
    );
    assert!(
        section(&updated.additionals)
            .contains(&"x4._http._tcp.backend.service.local. 300 A 10.0.0.4".to_string()),
        "the new target's glue: {:?}",
        updated.additionals
    );

    // Dropping `Zones` leaves the sync running: the catalog's handlers stay live.
    let HickoryZone {
        udp: hickory_udp,
        mut server,
        zones,
        ..
    } = hickory;
    drop(zones);
    put(
        &mut client,
        &format!("{base}/x5"),
        r#"{"host":"10.0.0.5","port":8080,"priority":10,"weight":10}"#,
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "x5 after Zones was dropped",
        || async {
            let reply = udp(hickory_udp, &query(SRV_NAME, RecordType::SRV)).await;
            (reply.answers.len() == 5).then_some(())
        },
    )
    .await;

    server.shutdown_gracefully().await.unwrap();
    srvd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_serves_srvds_zone_files_with_srvds_answers() {
    let srvd = TestServer::start(&fixture_zones()).await;
    let hickory = HickoryZone::start_with(&Config {
        zones: ZoneSource::Dir(fixture_zones()),
        ..Config::default()
    })
    .await;

    let cases = [
        (
            "_http._tcp.svc.example.test.",
            RecordType::SRV,
            ResponseCode::NoError,
        ),
        (
            "a.svc.example.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
        ),
        (
            "_http._tcp.svc.example.test.",
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        (
            "_http._tcp.svc.example.test.",
            RecordType::PTR,
            ResponseCode::NoError,
        ),
        ("example.test.", RecordType::MX, ResponseCode::NoError),
        ("example.test.", RecordType::NS, ResponseCode::NoError),
        ("example.test.", RecordType::SOA, ResponseCode::NoError),
        (
            "any.wild.example.test.",
            RecordType::A,
            ResponseCode::NoError,
        ),
        ("chain.example.test.", RecordType::A, ResponseCode::NoError),
        ("nope.example.test.", RecordType::A, ResponseCode::NXDomain),
        ("ent.example.test.", RecordType::A, ResponseCode::NoError),
        ("mail.example.test.", RecordType::TXT, ResponseCode::NoError),
        (
            "_many._tcp.big.test.",
            RecordType::SRV,
            ResponseCode::NoError,
        ),
        (
            "a.svc.example.test.",
            RecordType::ANY,
            ResponseCode::NoError,
        ),
    ];
    for (name, qtype, rcode) in cases {
        let what = format!("{name} {qtype}");
        let q = with_edns(query(name, qtype), 4096);
        let from_hickory = tcp(hickory.tcp, &q).await;
        assert_eq!(from_hickory.metadata.response_code, rcode, "{what}");
        assert_same(&what, &from_hickory, &tcp(srvd.addr, &q).await);
    }
    // What srvd refuses before asking a zone: zone transfers, classes other than IN.
    let mut chaos = query("a.svc.example.test.", RecordType::A);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    for (what, q) in [
        ("AXFR", query("example.test.", RecordType::AXFR)),
        ("IXFR", query("example.test.", RecordType::IXFR)),
        ("class CH", chaos),
    ] {
        let from_hickory = tcp(hickory.tcp, &q).await;
        assert_eq!(
            from_hickory.metadata.response_code,
            ResponseCode::Refused,
            "{what}: {from_hickory:?}"
        );
        assert_eq!(
            tcp(srvd.addr, &q).await.metadata.response_code,
            ResponseCode::Refused,
            "{what}"
        );
        assert!(from_hickory.answers.is_empty(), "{what}");
    }

    // Owners are spelled as the client asked, as srvd spells them.
    // (`query` parses names as UTF-8, which folds case: spell this one in ASCII.)
    let mut q = query("a.svc.example.test.", RecordType::A);
    q.queries[0] = hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("A.Svc.Example.TEST.").unwrap(),
        RecordType::A,
    );
    let (mixed, from_srvd) = (udp(hickory.udp, &q).await, udp(srvd.addr, &q).await);
    assert_eq!(
        from_srvd.answers[0].name.to_ascii(),
        "A.Svc.Example.TEST.",
        "{from_srvd:?}"
    );
    assert_eq!(
        mixed.answers[0].name.to_ascii(),
        "A.Svc.Example.TEST.",
        "{mixed:?}"
    );
    // The zone file's SOA has TTL 3600 and MINIMUM 120: a negative answer carries 120.
    let nx = udp(hickory.udp, &query("nope.example.test.", RecordType::A)).await;
    assert_eq!(
        section(&nx.authorities),
        ["example.test. 120 SOA ns1.example.test. hostmaster.example.test. 7 3600 600 86400 120"]
    );
    let soa = udp(hickory.udp, &query("example.test.", RecordType::SOA)).await;
    assert!(
        soa.authorities.is_empty(),
        "no NS added to a SOA answer: {soa:?}"
    );
    assert_eq!(soa.answers[0].ttl, 3600);

    // 512 bytes, no EDNS: the four SRV records fit and their glue (8 AAAA per target) does
    // not. srvd drops whole glue RRsets without TC (RFC 2181 §9); so must hickory's answer.
    for _ in 0..5 {
        let q = query("_glue._tcp.big.test.", RecordType::SRV);
        let (from_hickory, from_srvd) = (udp(hickory.udp, &q).await, udp(srvd.addr, &q).await);
        assert!(
            !from_hickory.metadata.truncation,
            "no TC for dropped glue: {from_hickory:?}"
        );
        assert_eq!(section(&from_hickory.answers), section(&from_srvd.answers));
        assert_eq!(from_hickory.answers.len(), 4);
        assert_eq!(
            from_hickory.additionals.len(),
            from_srvd.additionals.len(),
            "as many glue records as srvd sends"
        );
        // Glue goes whole RRset by RRset: each target's 8 AAAA or none.
        for target in &from_hickory.additionals {
            let same = from_hickory
                .additionals
                .iter()
                .filter(|r| r.name == target.name)
                .count();
            assert_eq!(same, 8, "{target}: a whole RRset");
        }
    }
    // 60 SRV records in 512 bytes: the answer itself is cut, TC set, by both.
    let q = query("_many._tcp.big.test.", RecordType::SRV);
    assert!(udp(hickory.udp, &q).await.metadata.truncation);
    assert!(udp(srvd.addr, &q).await.metadata.truncation);

    hickory.stop().await;
    srvd.shutdown().await;
}

/// The example binary, killed (by its PID) when the test ends.
struct Example(std::process::Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/debug/examples/NAME`, built by `cargo test --all-targets --features hickory`.
fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} missing: build the examples (cargo test --all-targets --features hickory does)",
        path.display()
    );
    path
}

/// A loopback port free for both UDP and TCP now.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The README's hickory-dns commands, run as written against a test etcd (its URL replaces
/// `http://127.0.0.1:22379`, a free port replaces 1054), the example binary in place of its
/// `cargo run`: the answer is the README's, and `srvd serve`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_hickory_example_answers_as_srvd_serve_does() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## srvd's zones in hickory-dns")
        .expect("the README has the hickory section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let etcd = EtcdServer::start().await;
    let port = free_port().to_string();
    let replace = |text: &str| text.replace("http://127.0.0.1:22379", &etcd.url);

    let run = section
        .lines()
        .find(|l| l.starts_with("cargo run --features hickory --example hickory_zone -- "))
        .expect("the example's command");
    let args: Vec<String> = run
        .split(" -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|a| replace(a).replace("127.0.0.1:1054", &format!("127.0.0.1:{port}")))
        .collect();
    let _example = Example(
        std::process::Command::new(example_binary("hickory_zone"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the example starts"),
    );

    let put = section
        .lines()
        .find(|l| l.starts_with("etcdctl "))
        .expect("an etcdctl put");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(replace(put))
        .output()
        .expect("etcdctl is installed (scripts/install-deps)");
    assert!(
        output.status.success(),
        "{put}: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let dig_command = section
        .lines()
        .find(|l| l.starts_with("dig "))
        .expect("a dig command");
    let dig_args: Vec<&str> = dig_command
        .split_whitespace()
        .skip(1)
        .map(|a| if a == "1054" { port.as_str() } else { a })
        .collect();
    let out = eventually(
        Duration::from_secs(10),
        "the example answers the put",
        || {
            let args = dig_args.clone();
            async move {
                let out = crate::support::dns::dig(&args);
                out.contains("ANSWER: 1,").then_some(out)
            }
        },
    )
    .await;
    assert!(out.contains("flags: qr aa"), "{out}");
    assert!(
        out.contains("_http._tcp.backend.service.local. 300 IN SRV 10 100 8080 x1._http._tcp.backend.service.local."),
        "{out}"
    );
    assert!(
        out.contains("x1._http._tcp.backend.service.local. 300 IN A 10.0.0.1"),
        "{out}"
    );

    // And it is what `srvd serve --etcd URL --zone service.local` answers.
    let srvd = TestServer::start_etcd(&etcd.url, &["service.local"], None, |_| {}).await;
    let q = with_edns(query(SRV_NAME, RecordType::SRV), 1232);
    let example: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_same(
        "the example's SRV answer",
        &udp(example, &q).await,
        &udp(srvd.addr, &q).await,
    );
    srvd.shutdown().await;
}

/// Before the first full etcd read (here: an etcd that never answers), srvd's etcd zones answer
/// SERVFAIL, never a wrong NXDOMAIN; a hickory authoritative zone cannot return SERVFAIL, so the
/// handler skips and the catalog answers SERVFAIL, as `srvd serve` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_zone_not_yet_read_answers_servfail_through_hickory_too() {
    // A port nothing listens on: srvd retries in the background and never finishes a read.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let srvd = TestServer::start_with(&fixture_zones(), |config| {
        let mut etcd = EtcdConfig::new(vec![nowhere.clone()]);
        etcd.zones = vec![srvd::config::parse_zone("service.local").unwrap()];
        config.zones = ZoneSource::None;
        config.etcd = Some(etcd);
    })
    .await;
    let hickory = HickoryZone::start(&nowhere).await;
    assert!(
        hickory
            .zones
            .running()
            .sync_status()
            .unwrap()
            .revision
            .is_none()
    );
    for (name, qtype) in [
        (SRV_NAME, RecordType::SRV),
        ("nope.service.local.", RecordType::A),
    ] {
        let q = query(name, qtype);
        let from_hickory = udp(hickory.udp, &q).await;
        assert_eq!(
            from_hickory.metadata.response_code,
            ResponseCode::ServFail,
            "{name} {qtype}: {from_hickory:?}"
        );
        let from_srvd = udp(srvd.addr, &q).await;
        assert_eq!(from_srvd.metadata.response_code, ResponseCode::ServFail);
        assert!(from_hickory.answers.is_empty() && from_hickory.authorities.is_empty());
    }
    hickory.stop().await;
    srvd.shutdown().await;
}
