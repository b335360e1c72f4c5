#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! The answer path, measured: the baseline for the UDP performance work.
//!
//! - `answer/*`: `answer()` alone (index lookup, RFC 2782 order, additional records) on the
//!   shipped zone and on a generated zone of 1,000 services (3 instances each).
//! - `respond/*`: a whole query, bytes in → bytes out, through the same handler the UDP loop uses
//!   (decode, zone match, answer, encode with truncation).
//!
//! - `answer_etcd/*`: `answer()` on an etcd mirror of 1,000 services (records synthesised per
//!   question, CoreDNS rules).
//!
//! - `answer_etcd/*`: `answer()` on an etcd mirror of 1,000 services (records synthesised per
//!   question, CoreDNS rules).
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
use srvd::server::handler::{Handler, Scratch};
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
    let mut rng = SmallRng::seed_from_u64(1);
    let mut buffers = Some(AnswerBuffers::default());
    let mut group = c.benchmark_group(group_name);
    for (label, qname, qtype) in cases {
        let name = Name::from_ascii(qname).expect("name");
        group.bench_function(*label, |b| {
            b.iter(|| {
                let question = Question::new(&name, *qtype);
                let zone = index.find_zone(&question.key).expect("zone");
                let mut out = Answer::with_buffers(buffers.take().unwrap_or_default());
                answer::answer(index, zone, &question, &mut rng, &mut out);
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
    let handler = Handler::new(Arc::new(IndexHandle::new(index())));
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(1232);
    let mut group = c.benchmark_group("respond");
    for (label, qname, qtype) in [
        ("srv_udp", "_http._tcp.svc777.bench.test.", RecordType::SRV),
        ("a_udp", "i1.svc777.bench.test.", RecordType::A),
    ] {
        let mut message = Message::new(1, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
        let request = message.to_vec().expect("encode");
        group.bench_function(label, |b| {
            b.iter(|| {
                let sent =
                    handler.respond(black_box(&request), Transport::Udp, &mut scratch, &mut out);
                black_box((sent, out.len()));
            });
        });
    }
    group.finish();
}

/// An index whose zone `etcd.test.` comes from a mirror of 1,000 services × 3 instances (the
/// SkyDNS layout), as the sync task would publish it.
fn etcd_index() -> Index {
    use srvd::backend::skydns::decode;
    use srvd::config::{EtcdConfig, parse_zone};
    use srvd::index::EtcdData;
    use srvd::index::leases::{LeaseBounds, LeaseTable};
    use srvd::index::mirror::Mirror;

    let mut etcd = EtcdConfig::new(Vec::new());
    etcd.zones = vec![parse_zone("etcd.test.").expect("zone")];
    let (base, paths) = build_index(Vec::new(), Some(&etcd)).expect("index");
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
            let entry = decode(&key, value.as_bytes(), 0).expect("value");
            entries.push((Arc::new(entry), 1));
        }
    }
    let mirror = Mirror::from_listing(&paths, 1, entries, None);
    base.with_etcd(EtcdData {
        mirror: Some(mirror),
        root: "/skydns".into(),
        leases: Arc::new(LeaseTable::new(LeaseBounds::default(), |_| {})),
    })
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

criterion_group!(benches, bench_answer, bench_etcd_answer, bench_respond);
criterion_main!(benches);
