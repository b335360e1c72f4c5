//! Scenario table: etcd keys and values → question → rcode and sections, over real UDP, covering
//! the behaviour of CoreDNS's `etcd` plugin and srvd's deliberate differences, as
//! docs/coredns.md states them (the `§` numbers below are its sections).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::dns::{query, section, sorted, udp};
use crate::support::etcd::EtcdServer;
use crate::support::srvd::TestServer;

const KEYS: &[(&str, &str)] = &[
    // §1, §3 SRV: IP hosts ⇒ SRV targets are the keys' names, with A/AAAA glue owned by them.
    (
        "/skydns/test/skydns/region1/prod/server1/a",
        r#"{"host":"10.0.0.1","port":8080}"#,
    ),
    (
        "/skydns/test/skydns/region1/prod/server1/b",
        r#"{"host":"10.0.0.2","port":8080,"weight":50}"#,
    ),
    (
        "/skydns/test/skydns/region1/prod/server2/c",
        r#"{"host":"fd00::3","port":9090,"priority":20}"#,
    ),
    // §3 A and AAAA: CNAME chains
    (
        "/skydns/test/skydns/web/www",
        r#"{"host":"server1.prod.region1.skydns.test"}"#,
    ),
    ("/skydns/test/skydns/ext", r#"{"host":"www.example.net"}"#),
    (
        "/skydns/test/skydns/dangle",
        r#"{"host":"nothere.skydns.test"}"#,
    ),
    // §2 host typing, §3 TXT: typing and splitting
    ("/skydns/test/skydns/txt/t1", r#"{"text":"hello"}"#),
    (
        "/skydns/test/skydns/both",
        r#"{"host":"www.example.org","text":"both"}"#,
    ),
    (
        "/skydns/test/skydns/iptxt",
        r#"{"host":"10.0.0.9","text":"x"}"#,
    ),
    // MX
    (
        "/skydns/test/skydns/mail/mx1",
        r#"{"host":"mx.example.org","mail":true,"priority":5}"#,
    ),
    (
        "/skydns/test/skydns/mail/mx2",
        r#"{"host":"10.0.0.25","mail":true}"#,
    ),
    ("/skydns/test/skydns/mail/web", r#"{"host":"10.0.0.80"}"#),
    // §1: a subtree read is `mx/`, so `mx1` is not part of `mx`
    ("/skydns/test/skydns/mx", r#"{"host":"10.1.1.1"}"#),
    ("/skydns/test/skydns/mx1/x", r#"{"host":"10.1.1.2"}"#),
    // §1 groups
    (
        "/skydns/test/skydns/grp/a/x",
        r#"{"host":"10.2.0.1","group":"g1"}"#,
    ),
    ("/skydns/test/skydns/grp/b", r#"{"host":"10.2.0.2"}"#),
    (
        "/skydns/test/skydns/grp/c/y",
        r#"{"host":"10.2.0.3","group":"g2"}"#,
    ),
    // §2, §3 SRV: targetstrip; port -1 and weight normalisation
    (
        "/skydns/test/skydns/strip/x/y",
        r#"{"host":"10.3.0.1","port":80,"targetstrip":1}"#,
    ),
    (
        "/skydns/test/skydns/neg/a",
        r#"{"host":"10.4.0.1","port":-1}"#,
    ),
    (
        "/skydns/test/skydns/neg/b",
        r#"{"host":"10.4.0.2","port":80}"#,
    ),
    (
        "/skydns/test/skydns/w97/a",
        r#"{"host":"10.5.0.1","port":80,"weight":97}"#,
    ),
    // §3 SRV: a name host is the SRV target as is, with an in-zone A resolution as glue
    (
        "/skydns/test/skydns/named/s",
        r#"{"host":"server1.prod.region1.skydns.test","port":80}"#,
    ),
    // §3 SRV: keys sharing a (stripped) target give one SRV and one glue record per address
    (
        "/skydns/test/skydns/shared/x/a",
        r#"{"host":"10.3.1.1","port":80,"targetstrip":1}"#,
    ),
    (
        "/skydns/test/skydns/shared/x/b",
        r#"{"host":"10.3.1.2","port":80,"targetstrip":1}"#,
    ),
    // §3 A and AAAA: a CNAME to a name at or below the question is a loop and skipped
    (
        "/skydns/test/skydns/loop",
        r#"{"host":"x.loop.skydns.test"}"#,
    ),
    // §3 SRV: name targets are never de-duplicated
    (
        "/skydns/test/skydns/dup/a",
        r#"{"host":"www.example.org","port":80}"#,
    ),
    (
        "/skydns/test/skydns/dup/b",
        r#"{"host":"www.example.org","port":80}"#,
    ),
    // §1 zone apex, §3 NS: apex A and NS
    ("/skydns/test/skydns/dns/apex/a", r#"{"host":"10.6.0.1"}"#),
    ("/skydns/test/skydns/dns/ns/ns1", r#"{"host":"10.6.0.53"}"#),
    // §4: TTL from the value
    (
        "/skydns/test/skydns/ttl/x",
        r#"{"host":"10.8.0.1","ttl":50}"#,
    ),
    // §5 (deliberately different): a malformed value is skipped, its neighbour served
    ("/skydns/test/skydns/bad/x", "not json"),
    ("/skydns/test/skydns/bad/y", r#"{"host":"10.7.0.1"}"#),
    (
        "/skydns/test/skydns/bad/z",
        r#"{"host":"10.7.0.2","port":"80"}"#,
    ),
    // §1: upper-case key segments are never found
    ("/skydns/test/skydns/Upper/x", r#"{"host":"10.9.0.1"}"#),
    // PTR in a reverse zone, by exact key
    (
        "/skydns/arpa/in-addr/10/0/0/1",
        r#"{"host":"a.example.test"}"#,
    ),
];

struct Case {
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    additional: &'static [&'static str],
}

const fn case(
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    additional: &'static [&'static str],
) -> Case {
    Case {
        qname,
        qtype,
        rcode,
        answer,
        additional,
    }
}

use RecordType::{A, AAAA, CNAME, HINFO, MX, NS, PTR, SOA, SRV, TXT};
const NOERROR: ResponseCode = ResponseCode::NoError;
const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;

const CASES: &[Case] = &[
    case(
        "server1.prod.region1.skydns.test.",
        SRV,
        NOERROR,
        &[
            "server1.prod.region1.skydns.test. 300 SRV 10 33 8080 b.server1.prod.region1.skydns.test.",
            "server1.prod.region1.skydns.test. 300 SRV 10 66 8080 a.server1.prod.region1.skydns.test.",
        ],
        &[
            "a.server1.prod.region1.skydns.test. 300 A 10.0.0.1",
            "b.server1.prod.region1.skydns.test. 300 A 10.0.0.2",
        ],
    ),
    case(
        "region1.skydns.test.",
        SRV,
        NOERROR,
        &[
            "region1.skydns.test. 300 SRV 10 33 8080 b.server1.prod.region1.skydns.test.",
            "region1.skydns.test. 300 SRV 10 66 8080 a.server1.prod.region1.skydns.test.",
            "region1.skydns.test. 300 SRV 20 100 9090 c.server2.prod.region1.skydns.test.",
        ],
        &[
            "a.server1.prod.region1.skydns.test. 300 A 10.0.0.1",
            "b.server1.prod.region1.skydns.test. 300 A 10.0.0.2",
            "c.server2.prod.region1.skydns.test. 300 AAAA fd00::3",
        ],
    ),
    case(
        "prod.region1.skydns.test.",
        A,
        NOERROR,
        &[
            "prod.region1.skydns.test. 300 A 10.0.0.1",
            "prod.region1.skydns.test. 300 A 10.0.0.2",
        ],
        &[],
    ),
    case(
        "c.server2.prod.region1.skydns.test.",
        AAAA,
        NOERROR,
        &["c.server2.prod.region1.skydns.test. 300 AAAA fd00::3"],
        &[],
    ),
    // §1 wildcards: owner as asked
    case(
        "*.prod.region1.skydns.test.",
        A,
        NOERROR,
        &[
            "*.prod.region1.skydns.test. 300 A 10.0.0.1",
            "*.prod.region1.skydns.test. 300 A 10.0.0.2",
        ],
        &[],
    ),
    case(
        "server1.any.region1.skydns.test.",
        A,
        NOERROR,
        &[
            "server1.any.region1.skydns.test. 300 A 10.0.0.1",
            "server1.any.region1.skydns.test. 300 A 10.0.0.2",
        ],
        &[],
    ),
    // CNAME chain inside the zone, resolved; to the outside, bare; dangling in-zone, dropped.
    case(
        "www.web.skydns.test.",
        A,
        NOERROR,
        &[
            "server1.prod.region1.skydns.test. 300 A 10.0.0.1",
            "server1.prod.region1.skydns.test. 300 A 10.0.0.2",
            "www.web.skydns.test. 300 CNAME server1.prod.region1.skydns.test.",
        ],
        &[],
    ),
    case(
        "www.web.skydns.test.",
        CNAME,
        NOERROR,
        &["www.web.skydns.test. 300 CNAME server1.prod.region1.skydns.test."],
        &[],
    ),
    case(
        "ext.skydns.test.",
        A,
        NOERROR,
        &["ext.skydns.test. 300 CNAME www.example.net."],
        &[],
    ),
    case("dangle.skydns.test.", A, NOERROR, &[], &[]),
    // TXT: text-only records, split; name+text ⇒ TXT only; IP+text ⇒ no TXT.
    case(
        "txt.skydns.test.",
        TXT,
        NOERROR,
        &["txt.skydns.test. 300 TXT hello"],
        &[],
    ),
    case("txt.skydns.test.", A, NOERROR, &[], &[]),
    case(
        "both.skydns.test.",
        TXT,
        NOERROR,
        &["both.skydns.test. 300 TXT both"],
        &[],
    ),
    case("both.skydns.test.", SRV, NOERROR, &[], &[]),
    case("both.skydns.test.", A, NOERROR, &[], &[]),
    case("iptxt.skydns.test.", TXT, NOERROR, &[], &[]),
    case(
        "iptxt.skydns.test.",
        A,
        NOERROR,
        &["iptxt.skydns.test. 300 A 10.0.0.9"],
        &[],
    ),
    // MX: mail entries only; name host as is, IP host via the key's name with glue.
    case(
        "mail.skydns.test.",
        MX,
        NOERROR,
        &[
            "mail.skydns.test. 300 MX 10 mx2.mail.skydns.test.",
            "mail.skydns.test. 300 MX 5 mx.example.org.",
        ],
        &["mx2.mail.skydns.test. 300 A 10.0.0.25"],
    ),
    case("iptxt.skydns.test.", MX, NOERROR, &[], &[]),
    case(
        "mx.skydns.test.",
        A,
        NOERROR,
        &["mx.skydns.test. 300 A 10.1.1.1"],
        &[],
    ),
    case(
        "grp.skydns.test.",
        A,
        NOERROR,
        &[
            "grp.skydns.test. 300 A 10.2.0.1",
            "grp.skydns.test. 300 A 10.2.0.2",
        ],
        &[],
    ),
    case(
        "strip.skydns.test.",
        SRV,
        NOERROR,
        &["strip.skydns.test. 300 SRV 10 100 80 x.strip.skydns.test."],
        &["x.strip.skydns.test. 300 A 10.3.0.1"],
    ),
    case(
        "neg.skydns.test.",
        SRV,
        NOERROR,
        &["neg.skydns.test. 300 SRV 10 50 80 b.neg.skydns.test."],
        &["b.neg.skydns.test. 300 A 10.4.0.2"],
    ),
    case(
        "w97.skydns.test.",
        SRV,
        NOERROR,
        &["w97.skydns.test. 300 SRV 10 99 80 a.w97.skydns.test."],
        &["a.w97.skydns.test. 300 A 10.5.0.1"],
    ),
    case(
        "dup.skydns.test.",
        SRV,
        NOERROR,
        &[
            "dup.skydns.test. 300 SRV 10 50 80 www.example.org.",
            "dup.skydns.test. 300 SRV 10 50 80 www.example.org.",
        ],
        &[],
    ),
    case(
        "skydns.test.",
        A,
        NOERROR,
        &["skydns.test. 300 A 10.6.0.1"],
        &[],
    ),
    case(
        "skydns.test.",
        NS,
        NOERROR,
        &["skydns.test. 300 NS ns1.ns.dns.skydns.test."],
        &["ns1.ns.dns.skydns.test. 300 A 10.6.0.53"],
    ),
    case("region1.skydns.test.", NS, NOERROR, &[], &[]),
    case(
        "ttl.skydns.test.",
        A,
        NOERROR,
        &["ttl.skydns.test. 50 A 10.8.0.1"],
        &[],
    ),
    case(
        "bad.skydns.test.",
        A,
        NOERROR,
        &["bad.skydns.test. 300 A 10.7.0.1"],
        &[],
    ),
    case("x.upper.skydns.test.", A, NXDOMAIN, &[], &[]),
    case("nothere.skydns.test.", A, NXDOMAIN, &[], &[]),
    case("nothere.skydns.test.", HINFO, NXDOMAIN, &[], &[]),
    case("prod.region1.skydns.test.", HINFO, NOERROR, &[], &[]),
    case(
        "1.0.0.10.in-addr.arpa.",
        PTR,
        NOERROR,
        &["1.0.0.10.in-addr.arpa. 300 PTR a.example.test."],
        &[],
    ),
    // PTR reads the exact key only: deeper keys do not make the name exist.
    case("0.0.10.in-addr.arpa.", PTR, NXDOMAIN, &[], &[]),
    case("2.0.0.10.in-addr.arpa.", PTR, NXDOMAIN, &[], &[]),
];

async fn load(etcd: &EtcdServer) -> i64 {
    let mut client = etcd.client().await;
    let mut revision = 0;
    for (key, value) in KEYS {
        let response = client.put(*key, *value, None).await.unwrap();
        revision = response.header().unwrap().revision();
    }
    revision
}

#[tokio::test]
async fn every_scenario_answers_as_coredns_does() {
    let etcd = EtcdServer::start().await;
    load(&etcd).await;
    let server = TestServer::start_etcd(
        &etcd.url,
        &["skydns.test.", "10.in-addr.arpa."],
        None,
        |_| {},
    )
    .await;
    check_every_scenario(&server).await;
}

/// The same etcd zones from a Corefile as an operator would write it for CoreDNS (the reverse
/// zone from a CIDR, the endpoint as a bare host:port) answer every scenario alike.
#[tokio::test]
async fn every_scenario_answers_alike_from_a_corefile() {
    let etcd = EtcdServer::start().await;
    load(&etcd).await;
    let endpoint = etcd.url.trim_start_matches("http://");
    let corefile = format!(
        "skydns.test:1053 10.0.0.0/8:1053 {{\n  etcd {{\n    path /skydns\n    endpoint {endpoint}\n  }}\n}}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    check_every_scenario(&TestServer::start_corefile(&corefile, dir.path()).await).await;
}

async fn check_every_scenario(server: &TestServer) {
    for case in CASES {
        let label = format!("{} {}", case.qname, case.qtype);
        let reply = udp(server.addr, &query(case.qname, case.qtype)).await;
        assert_eq!(reply.metadata.response_code, case.rcode, "{label}");
        assert!(reply.metadata.authoritative, "{label}: AA");
        assert_eq!(
            section(&reply.answers),
            sorted(case.answer),
            "{label}: answer"
        );
        assert_eq!(
            section(&reply.additionals),
            sorted(case.additional),
            "{label}: additional"
        );
        if reply.answers.is_empty() {
            // NXDOMAIN and NODATA carry the synthesised SOA, TTL 30 (as CoreDNS does).
            assert_eq!(reply.authorities.len(), 1, "{label}: SOA in authority");
            let soa = &reply.authorities[0];
            assert_eq!(soa.ttl, 30, "{label}");
            let RData::SOA(data) = &soa.data else {
                panic!("{label}: not an SOA")
            };
            assert!(
                data.mname.to_ascii().starts_with("ns.dns."),
                "{label}: {}",
                data.mname
            );
            assert_eq!(
                (data.refresh, data.retry, data.expire, data.minimum),
                (7200, 1800, 86400, 30)
            );
        } else {
            assert!(reply.authorities.is_empty(), "{label}: empty authority");
        }
    }
}

#[tokio::test]
async fn soa_answers_any_name_with_a_serial_that_moves_only_with_the_zone() {
    let etcd = EtcdServer::start().await;
    load(&etcd).await;
    let server =
        TestServer::start_etcd(&etcd.url, &["skydns.test.", "other.test."], None, |_| {}).await;
    let serial = |reply: hickory_proto::op::Message| match &reply.answers[0].data {
        RData::SOA(soa) => (reply.answers[0].name.to_ascii(), soa.serial),
        other => panic!("not an SOA: {other:?}"),
    };
    let (owner, before) = serial(udp(server.addr, &query("anything.skydns.test.", SOA)).await);
    assert_eq!(owner, "skydns.test.");
    let mut client = etcd.client().await;
    // A write to another zone leaves this zone's serial alone...
    let revision = server
        .put(
            &mut client,
            "/skydns/test/other/x",
            r#"{"host":"10.0.0.1"}"#,
        )
        .await;
    assert_eq!(
        serial(udp(server.addr, &query("skydns.test.", SOA)).await).1,
        before
    );
    let (_, other) = serial(udp(server.addr, &query("other.test.", SOA)).await);
    assert_eq!(i64::from(other), revision);
    // ...a write to this zone moves it to that write's revision.
    let revision = server
        .put(
            &mut client,
            "/skydns/test/skydns/new",
            r#"{"host":"10.0.0.2"}"#,
        )
        .await;
    let (_, after) = serial(udp(server.addr, &query("skydns.test.", SOA)).await);
    assert_eq!(i64::from(after), revision);
    assert!(after > before);
}

#[tokio::test]
async fn names_outside_the_zones_are_refused_and_owner_case_is_kept() {
    let etcd = EtcdServer::start().await;
    load(&etcd).await;
    let server = TestServer::start_etcd(&etcd.url, &["skydns.test."], None, |_| {}).await;
    let reply = udp(server.addr, &query("example.org.", A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    // The answer's owner is a pointer to the question, which is echoed byte for byte.
    let request = query("A.Server1.PROD.region1.skydns.test.", A)
        .to_vec()
        .unwrap();
    let raw = crate::support::dns::udp_raw(server.addr, &request)
        .await
        .unwrap();
    let reply = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert_eq!(reply.answers.len(), 1);
    let end = request.len();
    assert_eq!(raw[12..end], request[12..end]);
    assert_eq!(raw[end..end + 2], [0xC0, 0x0C]);
}

#[tokio::test]
async fn a_text_of_exactly_255_bytes_gets_a_trailing_empty_string() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let value = format!(r#"{{"text":"{}"}}"#, "a".repeat(255));
    client
        .put("/skydns/test/skydns/long", value, None)
        .await
        .unwrap();
    let server = TestServer::start_etcd(&etcd.url, &["skydns.test."], None, |_| {}).await;
    let reply = udp(server.addr, &query("long.skydns.test.", TXT)).await;
    let RData::TXT(txt) = &reply.answers[0].data else {
        panic!("not a TXT")
    };
    let lengths: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lengths, vec![255, 0]);
}
