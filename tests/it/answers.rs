//! Answer semantics over UDP against the fixture zone example.test.: one case per behaviour.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::dns::{self, of_type, query, section, sorted, udp};
use crate::support::{fixture_zones, srvd::TestServer};

/// A table case: question → rcode and the three sections as sorted zone-file text.
struct Case {
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

const SOA_NEG: &str =
    "example.test. 120 SOA ns1.example.test. hostmaster.example.test. 7 3600 600 86400 120";

const CASES: &[Case] = &[
    // A and AAAA at an exact name.
    Case {
        qname: "a.svc.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &["a.svc.example.test. 300 A 192.0.2.1"],
        authority: &[],
        additional: &[],
    },
    Case {
        qname: "a.svc.example.test.",
        qtype: RecordType::AAAA,
        rcode: ResponseCode::NoError,
        answer: &["a.svc.example.test. 300 AAAA 2001:db8::1"],
        authority: &[],
        additional: &[],
    },
    // SRV with its targets' addresses as additional records.
    Case {
        qname: "_http._tcp.svc.example.test.",
        qtype: RecordType::SRV,
        rcode: ResponseCode::NoError,
        answer: &[
            "_http._tcp.svc.example.test. 300 SRV 10 50 80 a.svc.example.test.",
            "_http._tcp.svc.example.test. 300 SRV 10 50 80 b.svc.example.test.",
            "_http._tcp.svc.example.test. 300 SRV 20 0 80 c.svc.example.test.",
        ],
        authority: &[],
        additional: &[
            "a.svc.example.test. 300 A 192.0.2.1",
            "a.svc.example.test. 300 AAAA 2001:db8::1",
            "b.svc.example.test. 300 A 192.0.2.2",
            "c.svc.example.test. 300 A 192.0.2.3",
        ],
    },
    // TXT with several strings.
    Case {
        qname: "_http._tcp.svc.example.test.",
        qtype: RecordType::TXT,
        rcode: ResponseCode::NoError,
        answer: &["_http._tcp.svc.example.test. 300 TXT k=vpath=/"],
        authority: &[],
        additional: &[],
    },
    // DNS-SD browsing: PTR to an instance, with its SRV, TXT and addresses (RFC 6763 §12.1).
    Case {
        qname: "_http._tcp.svc.example.test.",
        qtype: RecordType::PTR,
        rcode: ResponseCode::NoError,
        answer: &["_http._tcp.svc.example.test. 300 PTR a.svc.example.test."],
        authority: &[],
        additional: &[
            "a.svc.example.test. 300 A 192.0.2.1",
            "a.svc.example.test. 300 AAAA 2001:db8::1",
            "a.svc.example.test. 300 SRV 10 50 80 a.svc.example.test.",
            "a.svc.example.test. 300 TXT inst=a",
        ],
    },
    // MX and NS get their targets' addresses too.
    Case {
        qname: "example.test.",
        qtype: RecordType::MX,
        rcode: ResponseCode::NoError,
        answer: &["example.test. 300 MX 10 mail.example.test."],
        authority: &[],
        additional: &[
            "mail.example.test. 300 A 192.0.2.25",
            "mail.example.test. 300 AAAA 2001:db8::25",
        ],
    },
    Case {
        qname: "example.test.",
        qtype: RecordType::NS,
        rcode: ResponseCode::NoError,
        answer: &["example.test. 300 NS ns1.example.test."],
        authority: &[],
        additional: &["ns1.example.test. 300 A 192.0.2.53"],
    },
    // NXDOMAIN and NODATA carry the SOA at min(SOA TTL, MINIMUM) (RFC 2308).
    Case {
        qname: "missing.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NXDomain,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    Case {
        qname: "b.svc.example.test.",
        qtype: RecordType::AAAA,
        rcode: ResponseCode::NoError,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // Empty non-terminals are NODATA, not NXDOMAIN (RFC 8020), at every level.
    Case {
        qname: "y.ent.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    Case {
        qname: "ent.example.test.",
        qtype: RecordType::TXT,
        rcode: ResponseCode::NoError,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // Below an existing name, no wildcard: NXDOMAIN.
    Case {
        qname: "z.x.y.ent.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NXDomain,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // RFC 4592 wildcards: synthesized at the question name, one or more labels deep.
    Case {
        qname: "anything.wild.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &["anything.wild.example.test. 300 A 192.0.2.100"],
        authority: &[],
        additional: &[],
    },
    Case {
        qname: "two.labels.wild.example.test.",
        qtype: RecordType::TXT,
        rcode: ResponseCode::NoError,
        answer: &["two.labels.wild.example.test. 300 TXT wild"],
        authority: &[],
        additional: &[],
    },
    Case {
        qname: "anything.wild.example.test.",
        qtype: RecordType::MX,
        rcode: ResponseCode::NoError,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // The wildcard's parent owns nothing but has a child: NODATA.
    Case {
        qname: "wild.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // CNAMEs are answered and followed inside the zone.
    Case {
        qname: "chain.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &[
            "a.svc.example.test. 300 A 192.0.2.1",
            "alias.example.test. 300 CNAME a.svc.example.test.",
            "chain.example.test. 300 CNAME alias.example.test.",
        ],
        authority: &[],
        additional: &[],
    },
    Case {
        qname: "alias.example.test.",
        qtype: RecordType::CNAME,
        rcode: ResponseCode::NoError,
        answer: &["alias.example.test. 300 CNAME a.svc.example.test."],
        authority: &[],
        additional: &[],
    },
    // A CNAME to a missing name: the chain, then NXDOMAIN for its end (RFC 6604).
    Case {
        qname: "dangling.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NXDomain,
        answer: &["dangling.example.test. 300 CNAME nothere.example.test."],
        authority: &[SOA_NEG],
        additional: &[],
    },
    // A CNAME out of the zone is left to the resolver.
    Case {
        qname: "outside.example.test.",
        qtype: RecordType::A,
        rcode: ResponseCode::NoError,
        answer: &["outside.example.test. 300 CNAME www.example.org."],
        authority: &[],
        additional: &[],
    },
    // ANY gets one RRset, never the whole node (RFC 8482).
    Case {
        qname: "a.svc.example.test.",
        qtype: RecordType::ANY,
        rcode: ResponseCode::NoError,
        answer: &["a.svc.example.test. 300 A 192.0.2.1"],
        authority: &[],
        additional: &[],
    },
];

#[tokio::test]
async fn every_answer_case_matches_over_udp() {
    check_every_case(&TestServer::start(&fixture_zones()).await).await;
}

/// The same zones named one by one in a Corefile (`file`, with `root`), as CoreDNS would load
/// them, answer every case alike.
#[tokio::test]
async fn every_answer_case_matches_with_the_same_zones_from_a_corefile() {
    let corefile = format!(
        "example.test:1053 big.test:1053 {{\n  root {}\n  file example.test.zone example.test\n  file big.test.zone big.test\n}}\n",
        fixture_zones().display()
    );
    check_every_case(&TestServer::start_corefile(&corefile, &fixture_zones()).await).await;
}

async fn check_every_case(server: &TestServer) {
    for case in CASES {
        let reply = udp(server.addr, &query(case.qname, case.qtype)).await;
        let label = format!("{} {}", case.qname, case.qtype);
        assert_eq!(reply.metadata.response_code, case.rcode, "{label}");
        assert!(reply.metadata.authoritative, "{label}: AA");
        assert_eq!(
            section(&reply.answers),
            sorted(case.answer),
            "{label}: answer"
        );
        assert_eq!(
            section(&reply.authorities),
            sorted(case.authority),
            "{label}: authority"
        );
        assert_eq!(
            section(&reply.additionals),
            sorted(case.additional),
            "{label}: additional"
        );
    }
}

#[tokio::test]
async fn owner_names_are_spelled_as_asked_and_matched_case_insensitively() {
    let server = TestServer::start(&fixture_zones()).await;
    for (asked, qtype) in [
        ("_HTTP._Tcp.SVC.Example.TEST.", RecordType::SRV),
        ("AnyThing.WILD.example.test.", RecordType::A),
    ] {
        let message = query(asked, qtype);
        let request = message.to_vec().unwrap();
        let raw = dns::udp_raw(server.addr, &request).await.unwrap();
        let reply = hickory_proto::op::Message::from_vec(&raw).unwrap();
        assert!(!reply.answers.is_empty(), "{asked}");
        // The question is echoed byte for byte, and the first answer's owner is a pointer to it
        // (offset 12): the client sees its own spelling.
        let question_end = request.len();
        assert_eq!(
            raw[12..question_end],
            request[12..question_end],
            "{asked}: question echoed"
        );
        assert_eq!(
            raw[question_end..question_end + 2],
            [0xC0, 0x0C],
            "{asked}: owner → question"
        );
    }
}

#[tokio::test]
async fn flags_are_aa_set_rd_copied_ra_clear() {
    let server = TestServer::start(&fixture_zones()).await;
    for rd in [true, false] {
        let mut message = query("a.svc.example.test.", RecordType::A);
        message.metadata.recursion_desired = rd;
        let reply = udp(server.addr, &message).await;
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.metadata.recursion_desired, rd);
        assert!(!reply.metadata.recursion_available);
        assert!(!reply.metadata.truncation);
    }
}

#[tokio::test]
async fn cname_loop_ends_with_the_chain_and_no_crash() {
    let server = TestServer::start(&fixture_zones()).await;
    let reply = udp(server.addr, &query("loop1.example.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let cnames = of_type(&reply.answers, RecordType::CNAME);
    assert!(
        !cnames.is_empty() && cnames.len() <= 8,
        "{} CNAMEs",
        cnames.len()
    );
    // and the server keeps answering
    let reply = udp(server.addr, &query("a.svc.example.test.", RecordType::A)).await;
    assert_eq!(reply.answers.len(), 1);
}

#[tokio::test]
async fn names_outside_every_zone_are_refused_without_aa() {
    let server = TestServer::start(&fixture_zones()).await;
    for name in ["www.example.org.", "test.", "."] {
        let reply = udp(server.addr, &query(name, RecordType::A)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(!reply.metadata.authoritative);
        assert!(reply.answers.is_empty());
    }
}

#[tokio::test]
async fn zone_transfers_are_refused() {
    let server = TestServer::start(&fixture_zones()).await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let reply = dns::tcp(server.addr, &query("example.test.", qtype)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qtype}"
        );
        assert!(reply.answers.is_empty());
    }
}

#[tokio::test]
async fn the_most_specific_zone_answers() {
    // big.test. and example.test. are both loaded; each answers for itself.
    let server = TestServer::start(&fixture_zones()).await;
    let reply = udp(server.addr, &query("host-3.big.test.", RecordType::A)).await;
    assert_eq!(
        section(&reply.answers),
        vec!["host-3.big.test. 300 A 10.1.0.3"]
    );
    let reply = udp(server.addr, &query("big.test.", RecordType::SOA)).await;
    assert_eq!(reply.answers.len(), 1);
    assert!(dns::text(&reply.answers[0]).contains("ns1.big.test."));
}

#[tokio::test]
async fn every_listen_address_serves_udp_and_tcp_including_ipv6() {
    let server = TestServer::start_with(&fixture_zones(), |c| {
        c.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    })
    .await;
    let addrs = server.addrs();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[1].is_ipv6());
    for addr in addrs {
        let message = query("a.svc.example.test.", RecordType::A);
        assert_eq!(udp(addr, &message).await.answers.len(), 1, "udp {addr}");
        assert_eq!(
            dns::tcp(addr, &message).await.answers.len(),
            1,
            "tcp {addr}"
        );
    }
}

/// `tests/data/escaped`: escaped.test., a DNS-SD instance whose label is mixed-case and holds an
/// escaped dot.
fn escaped_zones() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/escaped")
}

#[tokio::test]
async fn browsing_an_instance_with_a_mixed_case_escaped_dot_label_keeps_its_spelling() {
    let server = TestServer::start(&escaped_zones()).await;
    let reply = udp(
        server.addr,
        &query("_PRINTER._tcp.escaped.test.", RecordType::PTR),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // The answer's owner as asked; every name inside a record, and the additional records'
    // owners, as written in the zone file (RFC 4343 §2, RFC 6763 §4.1).
    let exact = |records: &[hickory_proto::rr::Record]| -> Vec<String> {
        let mut out: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        exact(&reply.answers),
        ["_PRINTER._tcp.escaped.test. PTR Printer\\.2._printer._tcp.escaped.test."]
    );
    // RFC 6763 §12.1: the instance's SRV and TXT and the target's address.
    assert_eq!(
        exact(&reply.additionals),
        sorted(&[
            "Host-P.escaped.test. A 192.0.2.31",
            "Printer\\.2._printer._tcp.escaped.test. SRV 0 0 631 Host-P.escaped.test.",
            "Printer\\.2._printer._tcp.escaped.test. TXT rp=queue",
        ])
    );
}
