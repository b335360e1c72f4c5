//! Prepared responses against the reference path: the same records in the same sections, the
//! same header, the same TC, over a table of questions and after random etcd changes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use proptest::prelude::*;

use super::PlainQuery;
use crate::backend::skydns::decode;
use crate::config::{EtcdConfig, parse_zone};
use crate::daemon::build_index;
use crate::index::leases::{LeaseBounds, LeaseTable};
use crate::index::mirror::{Change, Mirror};
use crate::index::{EtcdData, Index, IndexHandle};
use crate::server::handler::{Handler, Scratch};
use crate::server::wire::Transport;

/// A zone file exercising every shape the file rules produce.
const FILE_ZONE: &str = r#"
$TTL 60
@        3600 IN SOA ns1 hostmaster 7 3600 600 86400 30
@        3600 IN NS  ns1
ns1           IN A   192.0.2.53
_http._tcp.web IN SRV 10 60 8080 a.web
_http._tcp.web IN SRV 10 30 8080 b.web
_http._tcp.web IN SRV 20 10 8080 c.web
_http._tcp.web IN TXT "txtvers=1" "path=/"
_http._tcp.web IN PTR a._http._tcp.web
a.web IN A 10.0.0.1
a.web IN AAAA fd00::1
b.web IN A 10.0.0.2
c.web IN A 10.0.0.3
mail  IN MX 10 a.web
*.wild IN A 10.9.9.9
*.wild IN TXT "wild"
alias IN CNAME alias2
alias2 IN CNAME _http._tcp.web
deep.ent.sub IN A 10.1.1.1
"#;

/// The etcd zone's keys (under `/skydns/test/etcd`).
fn etcd_entries() -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = [
        (
            "svc/_tcp/_http/a",
            r#"{"host":"10.1.0.1","port":8080,"priority":10,"weight":60}"#,
        ),
        (
            "svc/_tcp/_http/b",
            r#"{"host":"10.1.0.2","port":8080,"priority":10,"weight":40}"#,
        ),
        (
            "svc/_tcp/_http/c",
            r#"{"host":"h.svc.etcd.test","port":8081,"priority":20}"#,
        ),
        ("svc/h", r#"{"host":"10.1.0.9"}"#),
        ("svc/info", r#"{"text":"hello world"}"#),
        ("out/x", r#"{"host":"web.files.test"}"#),
        ("v6/x", r#"{"host":"fd00::9"}"#),
    ]
    .iter()
    .map(|(key, value)| (format!("/skydns/test/etcd/{key}"), (*value).to_string()))
    .collect();
    // A name whose A answer needs about 60 × 16 bytes: over 512, under 1232.
    for i in 0..60 {
        entries.push((
            format!("/skydns/test/etcd/many/i{i}"),
            format!(r#"{{"host":"10.2.0.{i}"}}"#),
        ));
    }
    // And one over 1232: whole only over TCP.
    for i in 0..100 {
        entries.push((
            format!("/skydns/test/etcd/lots/i{i}"),
            format!(r#"{{"host":"10.3.0.{i}"}}"#),
        ));
    }
    entries
}

/// The zones `files.test.` (zone file) and `etcd.test.` (etcd), and the etcd zones' paths.
fn base() -> (Index, Vec<String>) {
    let file = crate::zonefile::parse(FILE_ZONE, "files.test.", "files.test.zone", None).unwrap();
    let mut etcd = EtcdConfig::new(Vec::new());
    etcd.zones = vec![parse_zone("etcd.test.").unwrap()];
    build_index(vec![file], Some(&etcd)).unwrap()
}

/// A mirror of `entries` (key, JSON value) read at revision 1.
fn listing(paths: &[String], entries: &[(String, String)]) -> Mirror {
    let entries: Vec<_> = entries
        .iter()
        .map(|(key, value)| (Arc::new(decode(key, value.as_bytes(), 0).unwrap()), 1))
        .collect();
    Mirror::from_listing(paths, 1, entries, None)
}

/// `base` serving `mirror`, as the sync task publishes it.
fn with_mirror(base: &Index, mirror: &mut Mirror) -> Index {
    base.with_etcd(EtcdData {
        mirror: Some(mirror.snapshot()),
        root: "/skydns".into(),
        leases: Arc::new(LeaseTable::new(LeaseBounds::default(), |_| {})),
    })
}

/// An index of `files.test.` and `etcd.test.` (a mirror of `entries`).
fn index_of(entries: &[(String, String)]) -> Index {
    let (base, paths) = base();
    with_mirror(&base, &mut listing(&paths, entries))
}

/// One etcd change, as a watch brings it: `value` for `key`, or a delete.
fn change(key: &str, value: Option<&str>) -> Change {
    match value {
        Some(value) => Change::Put(Arc::new(decode(key, value.as_bytes(), 0).unwrap())),
        None => Change::Delete(key.to_string()),
    }
}

/// How a question is sent: the transport and the EDNS payload (`None`: no OPT record).
#[derive(Debug, Clone, Copy)]
struct Sent {
    transport: Transport,
    edns: Option<u16>,
}

const UDP_PLAIN: Sent = Sent {
    transport: Transport::Udp,
    edns: None,
};
const UDP_1232: Sent = Sent {
    transport: Transport::Udp,
    edns: Some(1232),
};
const UDP_4096: Sent = Sent {
    transport: Transport::Udp,
    edns: Some(4096),
};
const UDP_100: Sent = Sent {
    transport: Transport::Udp,
    edns: Some(100),
};
const TCP: Sent = Sent {
    transport: Transport::Tcp,
    edns: None,
};

fn query_bytes(id: u16, name: &str, qtype: RecordType, sent: Sent) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = id.is_multiple_of(2);
    message.metadata.checking_disabled = id.is_multiple_of(3);
    // `from_ascii` keeps the spelling (`from_str` folds it).
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = sent.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.edns = Some(edns);
    }
    message.to_vec().unwrap()
}

/// Two handlers on one published index: one that prepares, one that never does.
struct Pair {
    handle: Arc<IndexHandle>,
    prepared: Handler,
    reference: Handler,
    scratch: Scratch,
    reference_scratch: Scratch,
}

impl Pair {
    fn new(index: Index) -> Self {
        let handle = Arc::new(IndexHandle::new(index));
        let prepared = Handler::new(handle.clone());
        let reference = Handler::new(handle.clone()).with_prepared_bytes(0);
        Self {
            scratch: prepared.scratch(Transport::Udp, false),
            reference_scratch: reference.scratch(Transport::Udp, false),
            handle,
            prepared,
            reference,
        }
    }

    fn respond(&mut self, reference: bool, request: &[u8], transport: Transport) -> Vec<u8> {
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
        let mut out = Vec::new();
        let (handler, scratch) = if reference {
            (&self.reference, &mut self.reference_scratch)
        } else {
            (&self.prepared, &mut self.scratch)
        };
        assert!(handler.respond(request, transport, peer, scratch, &mut out));
        out
    }

    /// Whether the prepared handler holds a prepared response for `request`.
    fn holds_prepared(&self, request: &[u8], transport: Transport) -> bool {
        let query = PlainQuery::parse(request).expect("a plain query");
        let mut key = Vec::new();
        query.key(transport, &mut key);
        let index = self.handle.load_full();
        self.prepared
            .prepared()
            .expect("preparing handler")
            .holds(&index, &key)
            .unwrap_or(false)
    }
}

/// A response, in meaning: the header but the ID, the question as sent, and each section's
/// records in their uncompressed wire form (SRV RRsets and the additional section sorted: their
/// order is drawn per response, or carries no meaning).
#[derive(Debug, PartialEq, Eq)]
struct Meaning {
    flags: [u8; 2],
    counts: [u8; 8],
    question: Vec<u8>,
    answers: Vec<Vec<u8>>,
    authority: Vec<Vec<u8>>,
    additional: Vec<Vec<u8>>,
}

fn wire(record: &Record) -> Vec<u8> {
    // Owner names as sent (the client's spelling), byte for byte.
    let mut bytes = record.name.to_bytes().unwrap();
    bytes.extend(record.to_bytes().unwrap());
    bytes
}

fn meaning(response: &[u8]) -> Meaning {
    let message = Message::from_vec(response).expect("a response that decodes");
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut srv_run: Vec<Vec<u8>> = Vec::new();
    for record in &message.answers {
        if let RData::SRV(_) = record.data {
            srv_run.push(wire(record));
        } else {
            srv_run.sort();
            answers.append(&mut srv_run);
            answers.push(wire(record));
        }
    }
    srv_run.sort();
    answers.append(&mut srv_run);
    let mut additional: Vec<Vec<u8>> = message.additionals.iter().map(wire).collect();
    additional.sort();
    let question = message
        .queries
        .iter()
        .flat_map(|q| q.to_bytes().unwrap())
        .collect();
    Meaning {
        flags: [response[2], response[3]],
        counts: response[4..12].try_into().unwrap(),
        question,
        answers,
        authority: message.authorities.iter().map(wire).collect(),
        additional,
    }
}

/// Asks `name`/`qtype` as `sent` three times of each handler; every response must mean what
/// the reference's does. Returns whether the question was prepared.
fn compare(pair: &mut Pair, name: &str, qtype: RecordType, sent: Sent) -> bool {
    let what = format!("{name} {qtype} {sent:?}");
    let reference = pair.respond(true, &query_bytes(8, name, qtype, sent), sent.transport);
    let expected = meaning(&reference);
    for id in [8, 9, 10] {
        let request = query_bytes(id, name, qtype, sent);
        let response = pair.respond(false, &request, sent.transport);
        assert_eq!(response[..2], id.to_be_bytes(), "{what}: the query's ID");
        let limit = PlainQuery::parse(&request).unwrap().limit(sent.transport);
        assert!(
            response.len() <= usize::from(limit),
            "{what}: {} bytes",
            response.len()
        );
        let again = pair.respond(true, &request, sent.transport);
        assert_eq!(meaning(&response), meaning(&again), "{what}, id {id}");
        assert_eq!(meaning(&response).question, expected.question, "{what}");
    }
    pair.holds_prepared(&query_bytes(8, name, qtype, sent), sent.transport)
}

#[test]
fn prepared_responses_mean_what_the_reference_answers_mean() {
    let mut pair = Pair::new(index_of(&etcd_entries()));
    // (name, type, how it is sent, whether it can be prepared).
    let table: &[(&str, RecordType, Sent, bool)] = &[
        (
            "_http._tcp.web.files.test.",
            RecordType::SRV,
            UDP_PLAIN,
            true,
        ),
        (
            "_HTTP._Tcp.WEB.files.test.",
            RecordType::SRV,
            UDP_1232,
            true,
        ),
        ("_http._tcp.web.files.test.", RecordType::TXT, TCP, true),
        (
            "_http._tcp.web.files.test.",
            RecordType::PTR,
            UDP_4096,
            true,
        ),
        ("a.web.files.test.", RecordType::AAAA, UDP_100, true),
        ("a.web.files.test.", RecordType::MX, UDP_PLAIN, true),
        ("mail.files.test.", RecordType::MX, UDP_PLAIN, true),
        ("files.test.", RecordType::SOA, UDP_PLAIN, true),
        ("Files.Test.", RecordType::NS, UDP_1232, true),
        ("nothere.files.test.", RecordType::A, UDP_PLAIN, true),
        ("ent.sub.files.test.", RecordType::A, UDP_1232, true),
        ("x.wild.files.test.", RecordType::TXT, UDP_PLAIN, true),
        ("Y.Wild.files.test.", RecordType::A, TCP, true),
        ("alias.files.test.", RecordType::SRV, UDP_PLAIN, true),
        ("alias.files.test.", RecordType::ANY, UDP_PLAIN, true),
        (
            "_http._tcp.svc.etcd.test.",
            RecordType::SRV,
            UDP_PLAIN,
            true,
        ),
        ("_http._TCP.Svc.etcd.test.", RecordType::SRV, TCP, true),
        ("svc.etcd.test.", RecordType::A, UDP_1232, true),
        ("info.svc.etcd.test.", RecordType::TXT, UDP_PLAIN, true),
        ("x.out.etcd.test.", RecordType::A, UDP_PLAIN, true),
        ("x.v6.etcd.test.", RecordType::AAAA, UDP_PLAIN, true),
        ("x.v6.etcd.test.", RecordType::A, UDP_PLAIN, true),
        ("none.etcd.test.", RecordType::A, UDP_1232, true),
        ("etcd.test.", RecordType::SOA, UDP_PLAIN, true),
        ("*.svc.etcd.test.", RecordType::A, UDP_PLAIN, true),
        // Over 512 bytes: truncated by the reference, never prepared; whole at 1232.
        ("many.etcd.test.", RecordType::A, UDP_PLAIN, false),
        ("many.etcd.test.", RecordType::A, UDP_1232, true),
        ("lots.etcd.test.", RecordType::A, UDP_1232, false),
        ("lots.etcd.test.", RecordType::A, TCP, true),
    ];
    for &(name, qtype, sent, preparable) in table {
        assert_eq!(
            compare(&mut pair, name, qtype, sent),
            preparable,
            "{name} {qtype} {sent:?}: prepared"
        );
    }
    // The truncated answer stays what the reference sends: TC, whole records only.
    let truncated = pair.respond(
        false,
        &query_bytes(1, "many.etcd.test.", RecordType::A, UDP_PLAIN),
        Transport::Udp,
    );
    assert_eq!(truncated[2] & 0x02, 0x02, "TC");
}

/// A question spelled two ways gets two entries, each echoing its own spelling.
#[test]
fn each_spelling_is_prepared_and_echoed_as_asked() {
    let mut pair = Pair::new(index_of(&etcd_entries()));
    for name in ["svc.etcd.test.", "SVC.Etcd.test.", "svc.etcd.test."] {
        let request = query_bytes(2, name, RecordType::A, UDP_PLAIN);
        pair.respond(false, &request, Transport::Udp);
        let response = pair.respond(false, &request, Transport::Udp);
        let message = Message::from_vec(&response).unwrap();
        assert_eq!(message.queries[0].name().to_ascii(), name);
        assert!(message.answers.iter().all(|r| r.name.to_ascii() == name));
    }
}

/// A change keeps every prepared response that did not read the changed key, and drops those
/// that did (the SOA serial of a negative answer reads the whole zone).
#[test]
fn a_change_drops_only_the_responses_that_read_its_key() {
    let (base, paths) = base();
    let mut mirror = listing(&paths, &etcd_entries());
    let mut pair = Pair::new(with_mirror(&base, &mut mirror));
    let asked = [
        ("svc.etcd.test.", RecordType::A),
        ("_http._tcp.svc.etcd.test.", RecordType::SRV),
        ("x.v6.etcd.test.", RecordType::AAAA),
        ("x.out.etcd.test.", RecordType::A),
        ("none.etcd.test.", RecordType::A),
        ("_http._tcp.web.files.test.", RecordType::SRV),
    ];
    for (name, qtype) in asked {
        assert!(compare(&mut pair, name, qtype, UDP_1232), "{name} prepared");
    }
    // The SRV target h.svc.etcd.test gets a new address.
    let key = "/skydns/test/etcd/svc/h";
    mirror.apply(2, [change(key, Some(r#"{"host":"10.1.0.10"}"#))]);
    pair.handle.publish(with_mirror(&base, &mut mirror));
    let held = |pair: &Pair, name: &str, qtype| {
        pair.holds_prepared(&query_bytes(8, name, qtype, UDP_1232), Transport::Udp)
    };
    // Read /svc (its subtree holds h), h itself as glue, or the zone's serial: dropped.
    assert!(!held(&pair, "svc.etcd.test.", RecordType::A));
    assert!(!held(&pair, "_http._tcp.svc.etcd.test.", RecordType::SRV));
    assert!(!held(&pair, "none.etcd.test.", RecordType::A));
    // Never read it: kept.
    assert!(held(&pair, "x.v6.etcd.test.", RecordType::AAAA));
    assert!(held(&pair, "x.out.etcd.test.", RecordType::A));
    assert!(held(&pair, "_http._tcp.web.files.test.", RecordType::SRV));
    for (name, qtype) in asked {
        assert!(
            compare(&mut pair, name, qtype, UDP_1232),
            "{name} prepared again"
        );
    }
}

/// With a SkyDNS and a registry prefix, the mirror's revision is the one both prefixes have
/// reached, so a change in the prefix that is ahead leaves that revision where it was: the
/// responses that read the change must still be dropped (seen as a registry browse answering
/// NXDOMAIN after the zone's serial had reached the instance's write).
#[test]
fn a_change_ahead_of_the_mirrors_revision_still_drops_what_read_it() {
    let (base, paths) = base();
    let mut mirror = listing(&paths, &etcd_entries());
    let mut pair = Pair::new(with_mirror(&base, &mut mirror));
    let asked = [
        ("svc.etcd.test.", RecordType::A),
        ("none.etcd.test.", RecordType::A),
    ];
    for (name, qtype) in asked {
        assert!(compare(&mut pair, name, qtype, UDP_1232), "{name} prepared");
    }
    mirror.apply(
        2,
        [change(
            "/skydns/test/etcd/svc/h",
            Some(r#"{"host":"10.1.0.10"}"#),
        )],
    );
    mirror.apply(
        3,
        [change(
            "/skydns/test/etcd/none",
            Some(r#"{"host":"10.1.0.11"}"#),
        )],
    );
    // The other prefix is still at revision 1.
    mirror.set_revision(1);
    pair.handle.publish(with_mirror(&base, &mut mirror));
    for (name, qtype) in asked {
        assert!(
            !pair.holds_prepared(&query_bytes(8, name, qtype, UDP_1232), Transport::Udp),
            "{name} dropped"
        );
        assert!(
            compare(&mut pair, name, qtype, UDP_1232),
            "{name} follows the change"
        );
    }
}

/// etcd may answer a progress request before it sends events of lower revisions still queued
/// for the watch (etcd issue #15220), so a published revision can be ahead of an event applied
/// later. A response built from that snapshot must still be dropped when the late event
/// changes what it read.
#[test]
fn an_event_applied_after_a_snapshot_at_a_higher_revision_still_drops_what_read_it() {
    let (base, paths) = base();
    let mut mirror = listing(&paths, &etcd_entries());
    // Published as at revision 10: a progress answer vouched for it.
    mirror.set_revision(10);
    let mut pair = Pair::new(with_mirror(&base, &mut mirror));
    assert!(compare(
        &mut pair,
        "svc.etcd.test.",
        RecordType::A,
        UDP_1232
    ));
    // The event of revision 5 arrives only now.
    mirror.apply(
        5,
        [change(
            "/skydns/test/etcd/svc/h",
            Some(r#"{"host":"10.1.0.10"}"#),
        )],
    );
    pair.handle.publish(with_mirror(&base, &mut mirror));
    let request = query_bytes(8, "svc.etcd.test.", RecordType::A, UDP_1232);
    assert!(!pair.holds_prepared(&request, Transport::Udp), "dropped");
    assert!(compare(
        &mut pair,
        "svc.etcd.test.",
        RecordType::A,
        UDP_1232
    ));
}

/// 20,000 distinct questions through a cache of 256 KiB: it keeps answering, and never holds
/// more than its budget.
#[test]
fn the_cache_stays_within_its_budget() {
    let budget = 256 << 10;
    let handle = Arc::new(IndexHandle::new(index_of(&etcd_entries())));
    let handler = Handler::new(handle).with_prepared_bytes(budget);
    let mut scratch = handler.scratch(Transport::Udp, false);
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
    let mut out = Vec::new();
    let mut most = 0;
    for i in 0..20_000 {
        let request = query_bytes(1, &format!("n{i}.etcd.test."), RecordType::A, UDP_PLAIN);
        for _ in 0..2 {
            assert!(handler.respond(&request, Transport::Udp, peer, &mut scratch, &mut out));
            assert_eq!(out[3] & 0x0f, 3, "n{i}: NXDOMAIN");
        }
        let (entries, bytes) = handler.prepared().unwrap().held();
        assert!(bytes <= budget, "{bytes} bytes held, budget {budget}");
        most = most.max(entries);
    }
    assert!(most > 500, "at most {most} entries were held at once");
}

/// Queries of another shape are answered from scratch, as before: the fast path only reads
/// what it can answer exactly.
#[test]
fn other_shapes_go_the_reference_way() {
    let ok = query_bytes(4, "svc.etcd.test.", RecordType::A, UDP_PLAIN);
    assert!(PlainQuery::parse(&ok).is_some());
    let mut response = ok.clone();
    response[2] |= 0x80;
    let mut notify = ok.clone();
    notify[2] |= 4 << 3;
    let mut two = ok.clone();
    two[5] = 2;
    let mut chaos = ok.clone();
    let last = chaos.len() - 1;
    chaos[last] = 3;
    let mut trailing = ok.clone();
    trailing.push(0);
    let mut pointer = ok[..12].to_vec();
    pointer.extend([0xc0, 0x0c, 0, 1, 0, 1]);
    let edns = query_bytes(4, "svc.etcd.test.", RecordType::A, UDP_1232);
    assert!(PlainQuery::parse(&edns).is_some());
    let mut version1 = edns.clone();
    let at = version1.len() - 5;
    version1[at] = 1;
    let mut option = edns.clone();
    let at = option.len() - 1;
    option[at] = 4;
    option.extend([0, 10, 0, 0]);
    let axfr = query_bytes(4, "etcd.test.", RecordType::AXFR, UDP_PLAIN);
    for (what, bytes) in [
        ("a response", response),
        ("opcode NOTIFY", notify),
        ("two questions", two),
        ("class CH", chaos),
        ("a trailing byte", trailing),
        ("a compressed question", pointer),
        ("EDNS version 1", version1),
        ("an EDNS option", option),
        ("AXFR", axfr),
        ("a header only", ok[..12].to_vec()),
        ("a cut name", ok[..16].to_vec()),
    ] {
        assert!(PlainQuery::parse(&bytes).is_none(), "{what}");
    }
}

/// One change to the etcd keys: set key `key` to value `value`, or delete it.
#[derive(Debug, Clone)]
struct RandomChange {
    key: usize,
    value: Option<usize>,
}

const KEYS: [&str; 6] = [
    "svc/_tcp/_http/a",
    "svc/_tcp/_http/b",
    "svc/_tcp/_http/c",
    "svc/h",
    "svc/info",
    "out/x",
];

fn value(kind: usize, key: usize) -> String {
    match kind {
        0 => format!(
            r#"{{"host":"10.4.0.{key}","port":80{key},"priority":{},"weight":{}}}"#,
            key % 2,
            10 * key
        ),
        1 => r#"{"host":"h.svc.etcd.test","port":8080}"#.to_string(),
        2 => format!(r#"{{"text":"t{key}"}}"#),
        _ => format!(r#"{{"host":"fd00::{key}","ttl":{}}}"#, 30 + key),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After each random change, published as a new snapshot, every prepared response means
    /// what a freshly built one means: no response outlives the snapshot it was built from.
    #[test]
    fn prepared_responses_follow_every_change(
        changes in prop::collection::vec(
            (0..KEYS.len(), prop::option::of(0..4usize))
                .prop_map(|(key, value)| RandomChange { key, value }),
            1..10,
        )
    ) {
        let keys: Vec<(String, String)> = KEYS
            .iter()
            .enumerate()
            .map(|(i, key)| (format!("/skydns/test/etcd/{key}"), value(i % 3, i)))
            .collect();
        let (base, paths) = base();
        let mut mirror = listing(&paths, &keys);
        let mut pair = Pair::new(with_mirror(&base, &mut mirror));
        let questions = [
            ("_http._tcp.svc.etcd.test.", RecordType::SRV),
            ("svc.etcd.test.", RecordType::A),
            ("svc.etcd.test.", RecordType::TXT),
            ("h.svc.etcd.test.", RecordType::AAAA),
            ("x.out.etcd.test.", RecordType::A),
        ];
        let mut revision = 1;
        for change in changes {
            for (name, qtype) in questions {
                compare(&mut pair, name, qtype, UDP_1232);
            }
            let key = format!("/skydns/test/etcd/{}", KEYS[change.key]);
            let new = change.value.map(|kind| value(kind, change.key));
            revision += 1;
            mirror.apply(revision, [self::change(&key, new.as_deref())]);
            pair.handle.publish(with_mirror(&base, &mut mirror));
        }
        for (name, qtype) in questions {
            compare(&mut pair, name, qtype, UDP_1232);
        }
    }
}
