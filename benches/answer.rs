#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! The answer path, measured: the baseline for the UDP performance work.
//!
//! - `answer/*`: `answer()` alone (index lookup, RFC 2782 order, additional records) on the
//!   shipped zone and on a generated zone of 1,000 services (3 instances each).
//! - `respond/*`: a whole query, bytes in → bytes out, through the same handler the UDP loop uses
//!   (decode, zone match, answer, encode with truncation), with the per-query metrics on
//!   (`*_udp`) and off (`*_udp_no_metrics`).
//!
//! - `answer_etcd/*`: `answer()` on an etcd mirror of 1,000 services (records synthesised per
//!   question, CoreDNS rules).
//! - `answer_registry/*`: `answer()` on the service registry's DNS-SD names (`--registry`), 1,000
//!   services × 3 instances in the registry layout, beside `answer_etcd/*`'s SkyDNS questions.
//! - `answer_large/*`: the questions that used to cost seconds (issue 11): SRV over 5,000 and
//!   10,000 keys under one name, A at an apex of 15,000 keys, `any.<zone>`, and an A question
//!   into a web of 9 names that all alias each other; UDP-sized (1,232 bytes) and TCP-sized.
//!
//! Run: `cargo bench --bench answer`. Data is generated here, never committed.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use srvd::answer::{self, Answer, AnswerBuffers, Question};
use srvd::daemon::build_index;
use srvd::index::{Index, IndexHandle};
use srvd::ops::metrics::DnsMetrics;
use srvd::server::handler::Handler;
use srvd::server::wire::Transport;
use srvd::zonefile;

/// A zone `bench.test.` with `services` SRV names, 3 instances each, with A and AAAA.
fn generated_zone(services: usize) -> String {
    let mut z = String::from(
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\n@ IN NS ns1\nns1 IN A 10.0.0.53\n",
    );
    for s in 0..services {
        for i in 0..3 {
            let _ = writeln!(
                z,
                "_http._tcp.svc{s} IN SRV {} {} 8080 i{i}.svc{s}",
                10 + i / 2 * 10,
                10 + i * 20
            );
            let _ = writeln!(z, "i{i}.svc{s} IN A 10.{}.{}.{i}", s / 256, s % 256);
            let _ = writeln!(z, "i{i}.svc{s} IN AAAA fd00::{s:x}:{i}");
        }
        let _ = writeln!(z, "_http._tcp.svc{s} IN TXT \"txtvers=1\" \"path=/\"");
    }
    z
}

fn index() -> Index {
    let shipped = zonefile::embedded().expect("embedded zone");
    let generated = zonefile::parse(
        &generated_zone(1_000),
        "bench.test.",
        "bench.test.zone",
        None,
    )
    .expect("generated zone");
    build_index(vec![shipped, generated], None)
        .expect("index")
        .0
}

/// Benches `answer()` for each `(label, qname, qtype)` against `index`, recycling the buffers as
/// the listeners do.
fn bench_questions(
    c: &mut Criterion,
    group_name: &str,
    index: &Index,
    cases: &[(&str, &str, RecordType)],
) {
    bench_questions_limited(c, group_name, index, 1232, cases);
}

/// [`bench_questions`] for responses of at most `limit` bytes.
fn bench_questions_limited(
    c: &mut Criterion,
    group_name: &str,
    index: &Index,
    limit: u16,
    cases: &[(&str, &str, RecordType)],
) {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut buffers = Some(AnswerBuffers::default());
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);
    for (label, qname, qtype) in cases {
        let name = Name::from_ascii(qname).expect("name");
        group.bench_function(*label, |b| {
            b.iter(|| {
                let question = Question::new(&name, *qtype);
                let zone = index.find_zone(&question.key).expect("zone");
                let mut out = Answer::with_buffers(buffers.take().unwrap_or_default());
                answer::answer(index, zone, &question, limit, &mut rng, &mut out);
                black_box(out.answers.len() + out.additional.len());
                buffers = Some(out.into_buffers());
            });
        });
    }
    group.finish();
}

fn bench_answer(c: &mut Criterion) {
    bench_questions(
        c,
        "answer",
        &index(),
        &[
            (
                "srv_shipped",
                "_http._tcp.web.service.local.",
                RecordType::SRV,
            ),
            (
                "srv_1k_services",
                "_http._tcp.svc777.bench.test.",
                RecordType::SRV,
            ),
            ("a_1k_services", "i1.svc777.bench.test.", RecordType::A),
            (
                "nxdomain_1k_services",
                "nope.svc777.bench.test.",
                RecordType::A,
            ),
        ],
    );
}

fn bench_respond(c: &mut Criterion) {
    let metrics = Arc::new(DnsMetrics::new());
    let mut index = index();
    index.set_metrics_slots(|origin| metrics.zone_slot(&origin.to_string()));
    let index = Arc::new(IndexHandle::new(index));
    let server = metrics.server_slot("dns://127.0.0.1:1053");
    // `*_udp`: metrics on, as `srvd serve --metrics` runs, so the per-query counting is
    // included; `*_udp_no_metrics`: the same handler without them, for the difference. Both
    // answer a repeated question from its prepared response; `*_udp_from_scratch` builds
    // every answer (`--answer-cache-mib 0`, and the first asking after any change).
    let counted = Handler::new(index.clone()).with_ops(Some(metrics), server, None);
    let scratch_only = Handler::new(index.clone()).with_prepared_bytes(0);
    let plain = Handler::new(index);
    let peer = "127.0.0.1:40000".parse().expect("addr");
    let mut out = Vec::with_capacity(1232);
    let mut group = c.benchmark_group("respond");
    for (label, qname, qtype) in [
        ("srv_udp", "_http._tcp.svc777.bench.test.", RecordType::SRV),
        ("a_udp", "i1.svc777.bench.test.", RecordType::A),
    ] {
        let mut message = Message::new(1, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
        let request = message.to_vec().expect("encode");
        for (suffix, handler) in [
            ("", &counted),
            ("_no_metrics", &plain),
            ("_from_scratch", &scratch_only),
        ] {
            let mut scratch = handler.scratch(Transport::Udp, false);
            group.bench_function(format!("{label}{suffix}"), |b| {
                b.iter(|| {
                    let sent = handler.respond(
                        black_box(&request),
                        Transport::Udp,
                        peer,
                        &mut scratch,
                        &mut out,
                    );
                    black_box((sent, out.len()));
                });
            });
        }
    }
    group.finish();
}

/// An index whose zone `etcd.test.` comes from a mirror of 1,000 services × 3 instances (the
/// SkyDNS layout), as the sync task would publish it.
fn etcd_index() -> Index {
    let mut entries = Vec::new();
    for s in 0..1_000u32 {
        for i in 0..3u32 {
            let key = format!("/skydns/test/etcd/svc{s}/_tcp/_http/i{i}");
            let value = format!(
                r#"{{"host":"10.{}.{}.{i}","port":8080,"priority":{},"weight":{}}}"#,
                s / 256,
                s % 256,
                10 + i / 2 * 10,
                10 + i * 20
            );
            entries.push((key, value));
        }
    }
    mirror_index(&["etcd.test."], entries)
}

/// An index of etcd zones `zones` holding `entries` (key, JSON value), as the sync task would
/// publish it.
fn mirror_index(zones: &[&str], entries: Vec<(String, String)>) -> Index {
    use srvd::backend::skydns::decode;
    use srvd::config::{EtcdConfig, parse_zone};
    use srvd::index::EtcdData;
    use srvd::index::leases::{LeaseBounds, LeaseTable};
    use srvd::index::mirror::Mirror;

    let mut etcd = EtcdConfig::new(Vec::new());
    etcd.zones = zones.iter().map(|z| parse_zone(z).expect("zone")).collect();
    let (base, paths) = build_index(Vec::new(), Some(&etcd)).expect("index");
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(key, value)| {
            let entry = decode(&key, value.as_bytes(), 0).expect("value");
            (Arc::new(entry), 1)
        })
        .collect();
    let mirror = Mirror::from_listing(&paths, 1, entries, None);
    base.with_etcd(EtcdData {
        mirror: Some(mirror),
        root: "/skydns".into(),
        leases: Arc::new(LeaseTable::new(LeaseBounds::default(), |_| {})),
    })
}

/// An index whose zone `etcd.test.` is the registry zone of a registry mirror of 1,000
/// services × 3 instances (`/services/svc<s>/i<i>`), the same data as [`etcd_index`] in the
/// registry layout, with two metadata pairs each.
fn registry_index() -> Index {
    use srvd::backend::registry::decode;
    use srvd::index::registry::RegistryMirror;

    let mut etcd = srvd::config::EtcdConfig::new(Vec::new());
    etcd.zones = vec![srvd::config::parse_zone("etcd.test.").expect("zone")];
    etcd.registry_prefixes = vec!["/services".into()];
    let (base, paths) = build_index(Vec::new(), Some(&etcd)).expect("index");
    let mut entries = Vec::new();
    for s in 0..1_000u32 {
        for i in 0..3u32 {
            let key = format!("/services/svc{s}/i{i}");
            let value = format!(
                r#"{{"Addr":"10.{}.{}.{i}","Port":8080,"Priority":{},"Weight":{},"Metadata":{{"txtvers":"1","path":"/"}}}}"#,
                s / 256,
                s % 256,
                10 + i / 2 * 10,
                10 + i * 20
            );
            let entry = decode("/services", &key, value.as_bytes(), 0).expect("value");
            entries.push(Arc::new(entry));
        }
    }
    let mut mirror = srvd::index::mirror::Mirror::from_listing(&paths, 1, Vec::new(), None);
    *mirror.registry_mut() = RegistryMirror::from_entries(
        srvd::config::parse_zone("etcd.test.").expect("zone"),
        entries,
    );
    base.with_etcd(srvd::index::EtcdData {
        mirror: Some(mirror),
        root: "/skydns".into(),
        leases: Arc::new(srvd::index::leases::LeaseTable::new(
            srvd::index::leases::LeaseBounds::default(),
            |_| {},
        )),
    })
}

fn bench_registry_answer(c: &mut Criterion) {
    bench_questions(
        c,
        "answer_registry",
        &registry_index(),
        &[
            (
                "srv_1k_services",
                "_svc777._tcp.etcd.test.",
                RecordType::SRV,
            ),
            (
                "ptr_1k_services",
                "_svc777._tcp.etcd.test.",
                RecordType::PTR,
            ),
            (
                "instance_srv",
                "i1._svc777._tcp.etcd.test.",
                RecordType::SRV,
            ),
            (
                "instance_txt",
                "i1._svc777._tcp.etcd.test.",
                RecordType::TXT,
            ),
            ("address_a", "10-3-9-1.addr.etcd.test.", RecordType::A),
            (
                "service_types_1k",
                "_services._dns-sd._udp.etcd.test.",
                RecordType::PTR,
            ),
            (
                "nxdomain_1k_services",
                "nope._svc777._tcp.etcd.test.",
                RecordType::SRV,
            ),
        ],
    );
}

/// Zone `large.test.`: 5,000 SRV keys under `_http._tcp.svc5k`, 10,000 under `_http._tcp.svc10k`
/// (15,000 keys at the apex, all IP hosts). Zone `web.test.`: 9 names `n0`…`n8`, each with its
/// own address and one key per other name (host = that name): 90 keys.
fn large_index() -> Index {
    let mut entries = Vec::new();
    for (service, count) in [("svc5k", 5_000u32), ("svc10k", 10_000)] {
        for i in 0..count {
            let n = if count == 5_000 { i } else { 5_000 + i };
            entries.push((
                format!("/skydns/test/large/{service}/_tcp/_http/i{i}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}","port":8080,"weight":{}}}"#,
                    n >> 16,
                    (n >> 8) & 255,
                    n & 255,
                    (i % 5) * 10
                ),
            ));
        }
    }
    for i in 0..9u32 {
        entries.push((
            format!("/skydns/test/web/n{i}/self"),
            format!(r#"{{"host":"10.9.0.{i}"}}"#),
        ));
        for j in (0..9).filter(|j| *j != i) {
            entries.push((
                format!("/skydns/test/web/n{i}/to{j}"),
                format!(r#"{{"host":"n{j}.web.test"}}"#),
            ));
        }
    }
    mirror_index(&["large.test.", "web.test."], entries)
}

fn bench_large_answer(c: &mut Criterion) {
    let index = large_index();
    let cases = [
        ("srv_5k", "_http._tcp.svc5k.large.test.", RecordType::SRV),
        ("srv_10k", "_http._tcp.svc10k.large.test.", RecordType::SRV),
        ("srv_apex_15k", "large.test.", RecordType::SRV),
        ("srv_any_15k", "any.large.test.", RecordType::SRV),
        ("a_apex_15k", "large.test.", RecordType::A),
        ("a_any_15k", "any.large.test.", RecordType::A),
        ("a_cname_web_9", "n0.web.test.", RecordType::A),
    ];
    bench_questions_limited(c, "answer_large_udp", &index, 1232, &cases);
    bench_questions_limited(c, "answer_large_tcp", &index, u16::MAX, &cases);
}

fn bench_etcd_answer(c: &mut Criterion) {
    bench_questions(
        c,
        "answer_etcd",
        &etcd_index(),
        &[
            (
                "srv_1k_services",
                "_http._tcp.svc777.etcd.test.",
                RecordType::SRV,
            ),
            (
                "a_1k_services",
                "i1._http._tcp.svc777.etcd.test.",
                RecordType::A,
            ),
            (
                "nxdomain_1k_services",
                "nope.svc777.etcd.test.",
                RecordType::A,
            ),
        ],
    );
}

criterion_group!(
    benches,
    bench_answer,
    bench_etcd_answer,
    bench_registry_answer,
    bench_large_answer,
    bench_respond
);
criterion_main!(benches);
