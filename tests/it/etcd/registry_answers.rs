//! The registry's DNS-SD names as a resolver sees them: registry values written to a real etcd,
//! answered by srvd over real UDP and TCP, compared record by record (rcode, AA, exact RDATA,
//! additional records, the zone's SOA for negative answers).

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Label, Name, RData, Record, RecordType};

use crate::support::dns::{self, query, udp, with_edns};
use crate::support::etcd::EtcdServer;
use crate::support::eventually;
use crate::support::fixture_zones;
use crate::support::srvd::TestServer;

const SERVICES: &str = "/services";

/// Record text as `name ttl TYPE rdata`, TXT as its quoted strings (hickory's `Display` runs
/// them together, which would hide the empty-string and string-boundary rules).
fn line(record: &Record) -> String {
    let data = match &record.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!(
        "{} {} {} {}",
        record.name.to_ascii().to_lowercase(),
        record.ttl,
        record.record_type(),
        data
    )
}

fn lines(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(line)
        .collect();
    out.sort();
    out
}

fn sorted(expected: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// The owner of the one SOA in the authority section, if that is all it holds.
fn soa_owner(reply: &Message) -> Option<String> {
    match &reply.authorities[..] {
        [soa] if soa.record_type() == RecordType::SOA => Some(soa.name.to_ascii().to_lowercase()),
        _ => None,
    }
}

fn with_registry(zone: &'static str, ttl: u32) -> impl FnOnce(&mut srvd::config::EtcdConfig) {
    move |etcd| {
        etcd.registry_prefixes = vec![SERVICES.to_string()];
        etcd.registry_zone = Some(srvd::config::parse_zone(zone).unwrap());
        etcd.registry_ttl = ttl;
    }
}

async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    client
        .put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

async fn put_leased(client: &mut Client, key: &str, value: &str, lease: i64) -> i64 {
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// One question and the whole expected reply.
struct Case {
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &'static [&'static str],
    additional: &'static [&'static str],
}

const fn ok(
    name: &'static str,
    qtype: RecordType,
    answers: &'static [&'static str],
    additional: &'static [&'static str],
) -> Case {
    Case {
        name,
        qtype,
        rcode: ResponseCode::NoError,
        answers,
        additional,
    }
}

/// NOERROR without answers (NODATA), or NXDOMAIN / REFUSED: no records at all.
const fn empty(name: &'static str, qtype: RecordType, rcode: ResponseCode) -> Case {
    Case {
        name,
        qtype,
        rcode,
        answers: &[],
        additional: &[],
    }
}

const NODATA: ResponseCode = ResponseCode::NoError;
const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;

/// Registry values in every accepted form, and bad ones that must be skipped without hiding the
/// others. The zone is both a zone file (the fixture `example.test.`) and etcd's, so a host-name
/// `Addr` inside it gets the file's addresses as glue.
const VALUES: &[(&str, &str)] = &[
    // The Go service-instance form, every field given.
    (
        "web/web-01",
        r#"{"Addr":"10.0.1.10","Port":8080,"Weight":50,"Metadata":{"version":"2","path":"/api"}}"#,
    ),
    // Field names in any case; priority and weight 0 are served as written; tags lower-cased.
    (
        "web/web-02",
        r#"{"addr":"10.0.1.11","PORT":8081,"priority":0,"WEIGHT":0,"Tags":["canary","Blue"]}"#,
    ),
    // etcd's gRPC naming endpoints: the port in Addr, a string Metadata; shares 10.0.1.10.
    (
        "web/web-03",
        r#"{"Addr":"10.0.1.10:8082","Metadata":"grpc=yes"}"#,
    ),
    // A host name inside the zone (glue from the zone file), an empty Metadata object.
    (
        "web/web-04",
        r#"{"ADDR":"a.svc.example.test","Port":8083,"Tags":["canary"],"Metadata":{}}"#,
    ),
    // IPv6: bracketed with the port, null Metadata; unbracketed with Port, non-string values.
    ("api/v6a", r#"{"Addr":"[fd00::1]:9000","Metadata":null}"#),
    (
        "api/v6b",
        r#"{"Addr":"fd00::2","Port":9001,"Metadata":{"n":1,"b":true}}"#,
    ),
    // Ids equal but for case: one DNS instance, the lowest etcd key's ("DUP" < "dup").
    ("api/dup", r#"{"Addr":"10.0.3.1","Port":1}"#),
    ("api/DUP", r#"{"Addr":"10.0.3.2","Port":2}"#),
    // A host name outside the zone: no glue.
    ("ext/e1", r#"{"Addr":"db.example.net:5432"}"#),
    // etcd's naming endpoints are often keyed by host:port: a dot inside one instance label.
    ("grpc/10.0.1.20:9090", r#"{"Addr":"10.0.1.20:9090"}"#),
    // Proto udp.
    ("dns/d1", r#"{"Addr":"10.0.2.1","Port":53,"Proto":"udp"}"#),
    // Bad values: skipped, each alone.
    ("web/bad-json", "not json"),
    ("web/no-port", r#"{"Addr":"10.0.1.99"}"#),
    ("web/big-port", r#"{"Addr":"10.0.1.98","Port":70000}"#),
    ("web/no-addr", r#"{"Port":80}"#),
    (
        "web/bad-meta",
        r#"{"Addr":"10.0.1.97","Port":1,"Metadata":5}"#,
    ),
    (
        "web/bad-tags",
        r#"{"Addr":"10.0.1.96","Port":1,"Tags":"canary"}"#,
    ),
    ("bad_name/x", r#"{"Addr":"10.0.1.95","Port":1}"#),
];

fn table() -> Vec<Case> {
    use RecordType::{A, AAAA, PTR, SRV, TXT};
    const WEB_ADDITIONAL: &[&str] = &[
        "web-01._web._tcp.example.test. 5 SRV 10 50 8080 10-0-1-10.addr.example.test.",
        "web-01._web._tcp.example.test. 5 TXT \"version=2\" \"path=/api\"",
        "web-02._web._tcp.example.test. 5 SRV 0 0 8081 10-0-1-11.addr.example.test.",
        "web-02._web._tcp.example.test. 5 TXT \"\"",
        "web-03._web._tcp.example.test. 5 SRV 10 1 8082 10-0-1-10.addr.example.test.",
        "web-03._web._tcp.example.test. 5 TXT \"grpc=yes\"",
        "web-04._web._tcp.example.test. 5 SRV 10 1 8083 a.svc.example.test.",
        "web-04._web._tcp.example.test. 5 TXT \"\"",
        "10-0-1-10.addr.example.test. 5 A 10.0.1.10",
        "10-0-1-11.addr.example.test. 5 A 10.0.1.11",
        "a.svc.example.test. 300 A 192.0.2.1",
        "a.svc.example.test. 300 AAAA 2001:db8::1",
    ];
    vec![
        // _S._P.Z PTR: one per instance, SRV/TXT/addresses in additional (RFC 6763 §12.1).
        ok(
            "_web._tcp.example.test.",
            PTR,
            &[
                "_web._tcp.example.test. 5 PTR web-01._web._tcp.example.test.",
                "_web._tcp.example.test. 5 PTR web-02._web._tcp.example.test.",
                "_web._tcp.example.test. 5 PTR web-03._web._tcp.example.test.",
                "_web._tcp.example.test. 5 PTR web-04._web._tcp.example.test.",
            ],
            WEB_ADDITIONAL,
        ),
        // _S._P.Z SRV: every instance, addresses (each once) in additional.
        ok(
            "_web._tcp.example.test.",
            SRV,
            &[
                "_web._tcp.example.test. 5 SRV 10 50 8080 10-0-1-10.addr.example.test.",
                "_web._tcp.example.test. 5 SRV 0 0 8081 10-0-1-11.addr.example.test.",
                "_web._tcp.example.test. 5 SRV 10 1 8082 10-0-1-10.addr.example.test.",
                "_web._tcp.example.test. 5 SRV 10 1 8083 a.svc.example.test.",
            ],
            &[
                "10-0-1-10.addr.example.test. 5 A 10.0.1.10",
                "10-0-1-11.addr.example.test. 5 A 10.0.1.11",
                "a.svc.example.test. 300 A 192.0.2.1",
                "a.svc.example.test. 300 AAAA 2001:db8::1",
            ],
        ),
        empty("_web._tcp.example.test.", TXT, NODATA),
        empty("_web._tcp.example.test.", A, NODATA),
        // <id>._S._P.Z SRV / TXT.
        ok(
            "web-01._web._tcp.example.test.",
            SRV,
            &["web-01._web._tcp.example.test. 5 SRV 10 50 8080 10-0-1-10.addr.example.test."],
            &["10-0-1-10.addr.example.test. 5 A 10.0.1.10"],
        ),
        ok(
            "web-01._web._tcp.example.test.",
            TXT,
            &["web-01._web._tcp.example.test. 5 TXT \"version=2\" \"path=/api\""],
            &[],
        ),
        ok(
            "WEB-02._web._TCP.example.test.",
            TXT,
            &["web-02._web._tcp.example.test. 5 TXT \"\""],
            &[],
        ),
        ok(
            "web-03._web._tcp.example.test.",
            TXT,
            &["web-03._web._tcp.example.test. 5 TXT \"grpc=yes\""],
            &[],
        ),
        ok(
            "web-04._web._tcp.example.test.",
            SRV,
            &["web-04._web._tcp.example.test. 5 SRV 10 1 8083 a.svc.example.test."],
            &[
                "a.svc.example.test. 300 A 192.0.2.1",
                "a.svc.example.test. 300 AAAA 2001:db8::1",
            ],
        ),
        ok(
            "web-04._web._tcp.example.test.",
            TXT,
            &["web-04._web._tcp.example.test. 5 TXT \"\""],
            &[],
        ),
        empty("web-01._web._tcp.example.test.", A, NODATA),
        empty("web-01._web._tcp.example.test.", PTR, NODATA),
        // IPv6 and non-string metadata.
        ok(
            "_api._tcp.example.test.",
            SRV,
            &[
                "_api._tcp.example.test. 5 SRV 10 1 9000 fd00-0-0-0-0-0-0-1.addr.example.test.",
                "_api._tcp.example.test. 5 SRV 10 1 9001 fd00-0-0-0-0-0-0-2.addr.example.test.",
                "_api._tcp.example.test. 5 SRV 10 1 2 10-0-3-2.addr.example.test.",
            ],
            &[
                "fd00-0-0-0-0-0-0-1.addr.example.test. 5 AAAA fd00::1",
                "fd00-0-0-0-0-0-0-2.addr.example.test. 5 AAAA fd00::2",
                "10-0-3-2.addr.example.test. 5 A 10.0.3.2",
            ],
        ),
        ok(
            "v6a._api._tcp.example.test.",
            TXT,
            &["v6a._api._tcp.example.test. 5 TXT \"\""],
            &[],
        ),
        ok(
            "v6b._api._tcp.example.test.",
            TXT,
            &["v6b._api._tcp.example.test. 5 TXT \"n=1\" \"b=true\""],
            &[],
        ),
        // Case duplicates: listed once, the lowest key's value under either spelling.
        ok(
            "_api._tcp.example.test.",
            PTR,
            &[
                "_api._tcp.example.test. 5 PTR DUP._api._tcp.example.test.",
                "_api._tcp.example.test. 5 PTR v6a._api._tcp.example.test.",
                "_api._tcp.example.test. 5 PTR v6b._api._tcp.example.test.",
            ],
            &[
                "dup._api._tcp.example.test. 5 SRV 10 1 2 10-0-3-2.addr.example.test.",
                "dup._api._tcp.example.test. 5 TXT \"\"",
                "v6a._api._tcp.example.test. 5 SRV 10 1 9000 fd00-0-0-0-0-0-0-1.addr.example.test.",
                "v6a._api._tcp.example.test. 5 TXT \"\"",
                "v6b._api._tcp.example.test. 5 SRV 10 1 9001 fd00-0-0-0-0-0-0-2.addr.example.test.",
                "v6b._api._tcp.example.test. 5 TXT \"n=1\" \"b=true\"",
                "fd00-0-0-0-0-0-0-1.addr.example.test. 5 AAAA fd00::1",
                "fd00-0-0-0-0-0-0-2.addr.example.test. 5 AAAA fd00::2",
                "10-0-3-2.addr.example.test. 5 A 10.0.3.2",
            ],
        ),
        ok(
            "dup._api._tcp.example.test.",
            SRV,
            &["dup._api._tcp.example.test. 5 SRV 10 1 2 10-0-3-2.addr.example.test."],
            &["10-0-3-2.addr.example.test. 5 A 10.0.3.2"],
        ),
        // The address of the hidden case duplicate is no instance's target.
        empty("10-0-3-1.addr.example.test.", A, NXDOMAIN),
        // Host name outside the zone: no glue.
        ok(
            "_ext._tcp.example.test.",
            SRV,
            &["_ext._tcp.example.test. 5 SRV 10 1 5432 db.example.net."],
            &[],
        ),
        // An instance label with dots in it is one label, escaped in presentation form.
        ok(
            "_grpc._tcp.example.test.",
            PTR,
            &[r"_grpc._tcp.example.test. 5 PTR 10\.0\.1\.20\:9090._grpc._tcp.example.test."],
            &[
                r"10\.0\.1\.20\:9090._grpc._tcp.example.test. 5 SRV 10 1 9090 10-0-1-20.addr.example.test.",
                r#"10\.0\.1\.20\:9090._grpc._tcp.example.test. 5 TXT """#,
                "10-0-1-20.addr.example.test. 5 A 10.0.1.20",
            ],
        ),
        ok(
            r"10\.0\.1\.20:9090._grpc._tcp.example.test.",
            SRV,
            &[
                r"10\.0\.1\.20\:9090._grpc._tcp.example.test. 5 SRV 10 1 9090 10-0-1-20.addr.example.test.",
            ],
            &["10-0-1-20.addr.example.test. 5 A 10.0.1.20"],
        ),
        empty("9090._grpc._tcp.example.test.", SRV, NXDOMAIN),
        // Proto udp.
        ok(
            "_dns._udp.example.test.",
            SRV,
            &["_dns._udp.example.test. 5 SRV 10 1 53 10-0-2-1.addr.example.test."],
            &["10-0-2-1.addr.example.test. 5 A 10.0.2.1"],
        ),
        empty("_dns._tcp.example.test.", PTR, NXDOMAIN),
        empty("d1._dns._tcp.example.test.", SRV, NXDOMAIN),
        // Subtypes.
        ok(
            "_canary._sub._web._tcp.example.test.",
            PTR,
            &[
                "_canary._sub._web._tcp.example.test. 5 PTR web-02._web._tcp.example.test.",
                "_canary._sub._web._tcp.example.test. 5 PTR web-04._web._tcp.example.test.",
            ],
            &[
                "web-02._web._tcp.example.test. 5 SRV 0 0 8081 10-0-1-11.addr.example.test.",
                "web-02._web._tcp.example.test. 5 TXT \"\"",
                "web-04._web._tcp.example.test. 5 SRV 10 1 8083 a.svc.example.test.",
                "web-04._web._tcp.example.test. 5 TXT \"\"",
                "10-0-1-11.addr.example.test. 5 A 10.0.1.11",
                "a.svc.example.test. 300 A 192.0.2.1",
                "a.svc.example.test. 300 AAAA 2001:db8::1",
            ],
        ),
        ok(
            "_blue._sub._web._tcp.example.test.",
            PTR,
            &["_blue._sub._web._tcp.example.test. 5 PTR web-02._web._tcp.example.test."],
            &[
                "web-02._web._tcp.example.test. 5 SRV 0 0 8081 10-0-1-11.addr.example.test.",
                "web-02._web._tcp.example.test. 5 TXT \"\"",
                "10-0-1-11.addr.example.test. 5 A 10.0.1.11",
            ],
        ),
        empty("_blue._sub._web._tcp.example.test.", SRV, NODATA),
        empty("_green._sub._web._tcp.example.test.", PTR, NXDOMAIN),
        empty("_canary._sub._api._tcp.example.test.", PTR, NXDOMAIN),
        // Service type enumeration and browsing domains.
        ok(
            "_services._dns-sd._udp.example.test.",
            PTR,
            &[
                "_services._dns-sd._udp.example.test. 5 PTR _api._tcp.example.test.",
                "_services._dns-sd._udp.example.test. 5 PTR _dns._udp.example.test.",
                "_services._dns-sd._udp.example.test. 5 PTR _ext._tcp.example.test.",
                "_services._dns-sd._udp.example.test. 5 PTR _grpc._tcp.example.test.",
                "_services._dns-sd._udp.example.test. 5 PTR _web._tcp.example.test.",
            ],
            &[],
        ),
        empty("_services._dns-sd._udp.example.test.", TXT, NODATA),
        ok(
            "b._dns-sd._udp.example.test.",
            PTR,
            &["b._dns-sd._udp.example.test. 5 PTR example.test."],
            &[],
        ),
        ok(
            "lb._dns-sd._udp.example.test.",
            PTR,
            &["lb._dns-sd._udp.example.test. 5 PTR example.test."],
            &[],
        ),
        empty("b._dns-sd._udp.example.test.", A, NODATA),
        empty("db._dns-sd._udp.example.test.", PTR, NXDOMAIN),
        // Address targets.
        ok(
            "10-0-1-10.addr.example.test.",
            A,
            &["10-0-1-10.addr.example.test. 5 A 10.0.1.10"],
            &[],
        ),
        empty("10-0-1-10.addr.example.test.", AAAA, NODATA),
        ok(
            "fd00-0-0-0-0-0-0-1.addr.example.test.",
            AAAA,
            &["fd00-0-0-0-0-0-0-1.addr.example.test. 5 AAAA fd00::1"],
            &[],
        ),
        empty("fd00-0-0-0-0-0-0-1.addr.example.test.", A, NODATA),
        empty("fd00--1.addr.example.test.", AAAA, NXDOMAIN),
        empty("010-0-1-10.addr.example.test.", A, NXDOMAIN),
        // Empty non-terminals: NODATA.
        empty("_tcp.example.test.", A, NODATA),
        empty("_udp.example.test.", PTR, NODATA),
        empty("_sub._web._tcp.example.test.", PTR, NODATA),
        empty("addr.example.test.", A, NODATA),
        empty("_dns-sd._udp.example.test.", PTR, NODATA),
        // Bad values are not there, and hid nothing above.
        empty("bad-json._web._tcp.example.test.", SRV, NXDOMAIN),
        empty("no-port._web._tcp.example.test.", SRV, NXDOMAIN),
        empty("big-port._web._tcp.example.test.", SRV, NXDOMAIN),
        empty("bad-meta._web._tcp.example.test.", TXT, NXDOMAIN),
        empty("bad-tags._web._tcp.example.test.", SRV, NXDOMAIN),
        empty("10-0-1-99.addr.example.test.", A, NXDOMAIN),
        empty("_bad_name._tcp.example.test.", PTR, NXDOMAIN),
        empty("_nope._tcp.example.test.", PTR, NXDOMAIN),
        empty("nope._web._tcp.example.test.", SRV, NXDOMAIN),
        // The zone file's own names still answer beside the registry.
        ok(
            "a.svc.example.test.",
            A,
            &["a.svc.example.test. 300 A 192.0.2.1"],
            &[],
        ),
        // Outside every zone.
        empty("_web._tcp.example.org.", PTR, ResponseCode::Refused),
    ]
}

/// A query for `name` in presentation form where `\.` is a dot inside a label (an instance id
/// such as `10.0.1.20:9090`, which hickory's text parser refuses as a host label).
fn raw_query(name: &str, qtype: RecordType) -> Message {
    let labels: Vec<Label> = name
        .trim_end_matches('.')
        .replace("\\.", "\u{1}")
        .split('.')
        .map(|l| Label::from_raw_bytes(l.replace('\u{1}', ".").as_bytes()).unwrap())
        .collect();
    let mut name = Name::from_labels(labels).unwrap();
    name.set_fqdn(true);
    let mut message = query(".", qtype);
    message.queries[0] = Query::query(name, qtype);
    message
}

/// Every §2 question shape against every value form, one reply each over UDP (EDNS 4096 so
/// that no answer here is truncated).
#[tokio::test]
async fn registry_values_answer_every_dns_sd_question_exactly() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for (key, value) in VALUES {
        put(&mut client, &format!("{SERVICES}/{key}"), value).await;
    }
    let zones = fixture_zones();
    let server = TestServer::start_etcd(
        &etcd.url,
        &["example.test."],
        Some(&zones),
        with_registry("example.test.", 5),
    )
    .await;
    let mut failures = Vec::new();
    for case in table() {
        let reply = udp(
            server.addr,
            &with_edns(raw_query(case.name, case.qtype), 4096),
        )
        .await;
        let what = format!("{} {}", case.name, case.qtype);
        let got = (
            reply.metadata.response_code,
            lines(&reply.answers),
            lines(&reply.additionals),
        );
        let want = (case.rcode, sorted(case.answers), sorted(case.additional));
        if got != want {
            failures.push(format!("{what}:\n  got  {got:?}\n  want {want:?}"));
            continue;
        }
        if case.rcode == ResponseCode::Refused {
            continue;
        }
        if !reply.metadata.authoritative {
            failures.push(format!("{what}: AA not set"));
        }
        if reply.metadata.truncation {
            failures.push(format!("{what}: TC set"));
        }
        let soa = soa_owner(&reply);
        if case.answers.is_empty() && soa.as_deref() != Some("example.test.") {
            failures.push(format!(
                "{what}: negative answer without the zone's SOA: {:?}",
                lines(&reply.authorities)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} questions answered wrongly:\n{}",
        failures.len(),
        table().len(),
        failures.join("\n")
    );
}

/// The TXT RDATA of the only answer in a raw reply to a one-question query.
fn only_txt_rdata(raw: &[u8]) -> &[u8] {
    fn skip_name(raw: &[u8], mut at: usize) -> usize {
        loop {
            let len = raw[at];
            if len & 0xC0 == 0xC0 {
                return at + 2;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                return at;
            }
        }
    }
    assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 1, "one answer");
    let question_end = skip_name(raw, 12) + 4;
    let fixed = skip_name(raw, question_end);
    assert_eq!(&raw[fixed..fixed + 2], &[0, 16], "a TXT record");
    let rdlength = usize::from(u16::from_be_bytes([raw[fixed + 8], raw[fixed + 9]]));
    &raw[fixed + 10..fixed + 10 + rdlength]
}

async fn ptr_targets(addr: SocketAddr, name: &str) -> (ResponseCode, Vec<String>) {
    let reply = udp(addr, &with_edns(query(name, RecordType::PTR), 4096)).await;
    let mut targets: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.to_ascii()),
            _ => None,
        })
        .collect();
    targets.sort();
    (reply.metadata.response_code, targets)
}

async fn soa_serial(addr: SocketAddr, zone: &str) -> u32 {
    let reply = udp(addr, &query(zone, RecordType::SOA)).await;
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA for {zone}: {other:?}"),
    }
}

/// A service type is enumerated from its first instance's put to its last instance's removal
/// (by delete and by lease revoke), subtypes follow their tagged instances, an instance without
/// metadata has exactly one zero-length TXT string on the wire, and every registry change moves
/// the zone's SOA serial.
#[tokio::test]
async fn browsing_follows_instances_as_they_come_and_go() {
    const TYPES: &str = "_services._dns-sd._udp.reg.test.";
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let server = TestServer::start_etcd(
        &etcd.url,
        &["reg.test."],
        None,
        with_registry("reg.test.", 5),
    )
    .await;
    let nx = (NXDOMAIN, vec![]);
    assert_eq!(ptr_targets(server.addr, TYPES).await, nx);
    // The serial is the revision of the zone's last change, so reaching a write's revision is
    // both the check that it moved and the sign that the write is being answered.
    let serial_reaches = async |server: &TestServer, revision: i64, step: &str| {
        let addr = server.addr;
        let serial = eventually(Duration::from_secs(10), step, || async move {
            let serial = soa_serial(addr, "reg.test.").await;
            (i64::from(serial) >= revision).then_some(serial)
        })
        .await;
        assert_eq!(i64::from(serial), revision, "{step}: SOA serial");
    };

    let rev = put(
        &mut client,
        "/services/web/w1",
        r#"{"Addr":"10.0.0.1","Port":80}"#,
    )
    .await;
    serial_reaches(&server, rev, "first instance").await;
    assert_eq!(
        ptr_targets(server.addr, TYPES).await,
        (ResponseCode::NoError, vec!["_web._tcp.reg.test.".into()])
    );
    // RFC 6763 §6.1: no metadata is one zero-length string: RDLENGTH 1, the byte 0.
    let raw = dns::udp_raw(
        server.addr,
        &query("w1._web._tcp.reg.test.", RecordType::TXT)
            .to_vec()
            .unwrap(),
    )
    .await
    .expect("a reply");
    assert_eq!(only_txt_rdata(&raw), &[0u8]);

    let web_lease = client.lease_grant(60, None).await.unwrap().id();
    let rev = put_leased(
        &mut client,
        "/services/web/w2",
        r#"{"Addr":"10.0.0.2","Port":80,"Tags":["canary"]}"#,
        web_lease,
    )
    .await;
    serial_reaches(&server, rev, "second instance").await;
    let canary = "_canary._sub._web._tcp.reg.test.";
    assert_eq!(
        ptr_targets(server.addr, canary).await,
        (ResponseCode::NoError, vec!["w2._web._tcp.reg.test.".into()])
    );
    let db_lease = client.lease_grant(60, None).await.unwrap().id();
    let rev = put_leased(
        &mut client,
        "/services/db/d1",
        r#"{"Addr":"10.0.0.3","Port":5432}"#,
        db_lease,
    )
    .await;
    serial_reaches(&server, rev, "another type").await;
    let both = (
        ResponseCode::NoError,
        vec!["_db._tcp.reg.test.".into(), "_web._tcp.reg.test.".into()],
    );
    assert_eq!(ptr_targets(server.addr, TYPES).await, both);

    // The first web instance goes: the type stays while w2 lives.
    let rev = client
        .delete("/services/web/w1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    serial_reaches(&server, rev, "delete").await;
    assert_eq!(ptr_targets(server.addr, TYPES).await, both);
    assert_eq!(
        ptr_targets(server.addr, "_web._tcp.reg.test.").await,
        (ResponseCode::NoError, vec!["w2._web._tcp.reg.test.".into()])
    );

    // The last web instance's lease is revoked: the type, its instances and subtypes go.
    let rev = client
        .lease_revoke(web_lease)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    serial_reaches(&server, rev, "lease revoke").await;
    assert_eq!(
        ptr_targets(server.addr, TYPES).await,
        (ResponseCode::NoError, vec!["_db._tcp.reg.test.".into()])
    );
    assert_eq!(ptr_targets(server.addr, "_web._tcp.reg.test.").await, nx);
    assert_eq!(ptr_targets(server.addr, canary).await, nx);

    let rev = client
        .lease_revoke(db_lease)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    serial_reaches(&server, rev, "last type gone").await;
    assert_eq!(ptr_targets(server.addr, TYPES).await, nx);
    // With no instance left, even `_tcp.Z` is gone: nothing in the zone but its apex.
    let reply = udp(server.addr, &query("_tcp.reg.test.", RecordType::PTR)).await;
    assert_eq!(reply.metadata.response_code, NXDOMAIN);
}

fn srv_ttls(reply: &Message) -> Vec<u32> {
    reply
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::SRV)
        .map(|r| r.ttl)
        .collect()
}

/// The TTLs of the first answer to `name` that has SRV records, polled (bounded).
async fn first_srv_ttls(addr: SocketAddr, name: &str) -> Vec<u32> {
    eventually(Duration::from_secs(10), name, || async move {
        let ttls = srv_ttls(&udp(addr, &query(name, RecordType::SRV)).await);
        (!ttls.is_empty()).then_some(ttls)
    })
    .await
}

/// Registry TTLs are `--registry-ttl`, lowered to the lease's remaining time from the very first
/// answer that holds a leased key (polled from the moment of the put, so a snapshot published
/// before srvd knew the lease's deadline would show), and never raised by a long lease.
#[tokio::test]
async fn registry_ttls_follow_the_flag_and_the_lease() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let short = TestServer::start_etcd(
        &etcd.url,
        &["reg.test."],
        None,
        with_registry("reg.test.", 5),
    )
    .await;
    let long = TestServer::start_etcd(
        &etcd.url,
        &["reg.test."],
        None,
        with_registry("reg.test.", 60),
    )
    .await;

    put(
        &mut client,
        "/services/plain/p1",
        r#"{"Addr":"10.0.0.1","Port":1}"#,
    )
    .await;
    assert_eq!(
        first_srv_ttls(short.addr, "_plain._tcp.reg.test.").await,
        vec![5],
        "an unleased key: --registry-ttl"
    );

    for round in 0..5 {
        let lease = client.lease_grant(3, None).await.unwrap().id();
        let name = format!("_short{round}._tcp.reg.test.");
        let key = format!("/services/short{round}/i");
        put_leased(&mut client, &key, r#"{"Addr":"10.0.0.2","Port":2}"#, lease).await;
        let ttls = first_srv_ttls(short.addr, &name).await;
        assert!(
            ttls.iter().all(|&ttl| ttl <= 3),
            "round {round}: first answer for a 3 s lease has TTLs {ttls:?}"
        );
    }
    // Names that exist only through leased keys (an address every user of which is leased, a
    // type all of whose instances are) live no longer than those leases either.
    let reply = udp(short.addr, &query("10-0-0-2.addr.reg.test.", RecordType::A)).await;
    let ttls: Vec<u32> = reply.answers.iter().map(|r| r.ttl).collect();
    assert!(
        !ttls.is_empty() && ttls.iter().all(|&ttl| ttl <= 3),
        "the address of leased instances only: TTLs {ttls:?}"
    );
    let reply = udp(
        short.addr,
        &query("_services._dns-sd._udp.reg.test.", RecordType::PTR),
    )
    .await;
    let types: Vec<String> = reply.answers.iter().map(line).collect();
    assert!(
        types.iter().any(|t| t.contains(" 5 PTR _plain._tcp.")),
        "{types:#?}"
    );
    let leased: Vec<&String> = types.iter().filter(|t| t.contains("_short")).collect();
    assert!(
        !leased.is_empty()
            && leased
                .iter()
                .all(|t| t.split(' ').nth(1).unwrap().parse::<u32>().unwrap() <= 3),
        "types of leased instances only: {types:#?}"
    );

    let lease = client.lease_grant(3600, None).await.unwrap().id();
    put_leased(
        &mut client,
        "/services/long/l1",
        r#"{"Addr":"10.0.0.3","Port":3}"#,
        lease,
    )
    .await;
    assert_eq!(
        first_srv_ttls(long.addr, "_long._tcp.reg.test.").await,
        vec![60],
        "a 3600 s lease under --registry-ttl 60s"
    );
    assert_eq!(
        first_srv_ttls(long.addr, "_plain._tcp.reg.test.").await,
        vec![60]
    );
}

/// 2,000 instances of one type: UDP answers either fit whole or set TC, within the size asked
/// for; TCP answers carry as many as fit in one 64 KiB message, never more than exist.
#[tokio::test]
async fn a_type_with_two_thousand_instances_truncates_over_udp_and_fills_tcp() {
    const INSTANCES: usize = 2000;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let mut revision = 0;
    for chunk in 0..INSTANCES / 100 {
        let ops: Vec<TxnOp> = (chunk * 100..chunk * 100 + 100)
            .map(|i| {
                TxnOp::put(
                    format!("/services/big/i{i:04}"),
                    format!(
                        r#"{{"Addr":"10.1.{}.{}","Port":{},"Metadata":{{"n":"{i}"}}}}"#,
                        i / 256,
                        i % 256,
                        1000 + i
                    ),
                    None,
                )
            })
            .collect();
        let reply = client.txn(Txn::new().and_then(ops)).await.unwrap();
        revision = reply.header().unwrap().revision();
    }
    let server = TestServer::start_etcd(
        &etcd.url,
        &["reg.test."],
        None,
        with_registry("reg.test.", 5),
    )
    .await;
    assert_eq!(server.sync_status().registry_keys, INSTANCES);
    assert_eq!(soa_serial(server.addr, "reg.test.").await, revision as u32);
    let name = "_big._tcp.reg.test.";
    let mut figures = Vec::new();
    for qtype in [RecordType::PTR, RecordType::SRV] {
        for (limit, message) in [
            (512, query(name, qtype)),
            (1232, with_edns(query(name, qtype), 1232)),
            (4096, with_edns(query(name, qtype), 4096)),
        ] {
            let (reply, size) = dns::udp_with_size(server.addr, &message).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(size <= limit, "{qtype} UDP {limit}: {size} bytes");
            let answers = reply.answers.len();
            assert!(answers > 0, "{qtype} UDP {limit}: some answers fit");
            assert!(
                reply.metadata.truncation || answers == INSTANCES,
                "{qtype} UDP {limit}: {answers} answers without TC"
            );
            figures.push(format!(
                "{qtype} udp/{limit}: {answers} answers, {size} B, TC"
            ));
        }
        let (reply, size) = dns::tcp_with_size(server.addr, &query(name, qtype)).await;
        let mut distinct: Vec<String> = reply.answers.iter().map(line).collect();
        let answers = distinct.len();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), answers, "{qtype} TCP: no record twice");
        assert!(size <= 65_535, "{qtype} TCP: {size} bytes");
        assert!(
            reply.metadata.truncation || answers == INSTANCES,
            "{qtype} TCP: {answers} answers without TC"
        );
        // A PTR to a 24-octet instance name costs 2 + 10 + 9 octets after compression: well
        // over a thousand fit in 64 KiB.
        assert!(answers > 1000, "{qtype} TCP: only {answers} answers");
        figures.push(format!(
            "{qtype} tcp: {answers} answers, {size} B, TC={}",
            reply.metadata.truncation
        ));
    }
    eprintln!("2000 instances: {figures:#?}");
}

/// A SkyDNS key and a registry instance under the same `_S._P.Z`: the registry's records win
/// for the name it has (the type's SRV answer lists only registry instances, and its PTR only
/// registry instances), while the SkyDNS key's own name below it still answers from SkyDNS, and
/// a type the registry does not have is SkyDNS's alone.
#[tokio::test]
async fn the_registry_wins_over_skydns_for_a_service_type_it_has() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(
        &mut client,
        "/skydns/test/reg/_tcp/_web/sky",
        r#"{"host":"10.9.9.9","port":9999}"#,
    )
    .await;
    put(
        &mut client,
        "/skydns/test/reg/_tcp/_other/sky",
        r#"{"host":"10.9.9.8","port":9998}"#,
    )
    .await;
    put(
        &mut client,
        "/services/web/r1",
        r#"{"Addr":"10.0.0.1","Port":80}"#,
    )
    .await;
    let server = TestServer::start_etcd(
        &etcd.url,
        &["reg.test."],
        None,
        with_registry("reg.test.", 5),
    )
    .await;
    let ask = async |name: &str, qtype: RecordType| {
        let reply = udp(server.addr, &with_edns(query(name, qtype), 4096)).await;
        (reply.metadata.response_code, lines(&reply.answers))
    };
    assert_eq!(
        ask("_web._tcp.reg.test.", RecordType::SRV).await,
        (
            ResponseCode::NoError,
            sorted(&["_web._tcp.reg.test. 5 SRV 10 1 80 10-0-0-1.addr.reg.test."])
        )
    );
    assert_eq!(
        ask("_web._tcp.reg.test.", RecordType::PTR).await,
        (
            ResponseCode::NoError,
            sorted(&["_web._tcp.reg.test. 5 PTR r1._web._tcp.reg.test."])
        )
    );
    let (rcode, sky) = ask("sky._web._tcp.reg.test.", RecordType::SRV).await;
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(sky.len(), 1, "{sky:?}");
    assert!(
        sky[0].contains("SRV 10 100 9999 sky._web._tcp.reg.test."),
        "{sky:?}"
    );
    let (rcode, other) = ask("_other._tcp.reg.test.", RecordType::SRV).await;
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].contains(" 9998 "), "{other:?}");
}

/// `--registry-zone` naming a zone that no `--zone` names: the registry is answered there (with
/// its own SOA), and only there; the SkyDNS zone keeps its keys and none of the registry's.
#[tokio::test]
async fn a_registry_zone_of_its_own_holds_the_registry_alone() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "/skydns/test/sky/x", r#"{"host":"10.9.9.9"}"#).await;
    put(
        &mut client,
        "/services/web/r1",
        r#"{"Addr":"10.0.0.1","Port":80}"#,
    )
    .await;
    let server = TestServer::start_etcd(
        &etcd.url,
        &["sky.test."],
        None,
        with_registry("reg.test.", 5),
    )
    .await;
    let ask = async |name: &str, qtype: RecordType| {
        let reply = udp(server.addr, &query(name, qtype)).await;
        (
            reply.metadata.response_code,
            reply.metadata.authoritative,
            lines(&reply.answers),
            soa_owner(&reply),
        )
    };
    assert_eq!(
        ask("_web._tcp.reg.test.", RecordType::SRV).await,
        (
            ResponseCode::NoError,
            true,
            sorted(&["_web._tcp.reg.test. 5 SRV 10 1 80 10-0-0-1.addr.reg.test."]),
            None
        )
    );
    assert_eq!(
        ask("_web._tcp.sky.test.", RecordType::SRV).await,
        (NXDOMAIN, true, vec![], Some("sky.test.".into()))
    );
    assert_eq!(
        ask("x.reg.test.", RecordType::A).await,
        (NXDOMAIN, true, vec![], Some("reg.test.".into()))
    );
    let (rcode, aa, answers, _) = ask("x.sky.test.", RecordType::A).await;
    assert_eq!((rcode, aa), (ResponseCode::NoError, true));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].ends_with("A 10.9.9.9"), "{answers:?}");
    assert!(soa_serial(server.addr, "reg.test.").await > 0);
}
