#![allow(missing_docs, clippy::expect_used)]
//! What counting queries for `/metrics` costs on the query path, measured so that this
//! machine's noise (runs of the same code differ by ±15%) cannot hide or fake it: the same
//! query is answered by two handlers, metrics on and off, in alternating rounds within one
//! process, and each side's fastest rounds are compared (a round hit by a noisy neighbour is
//! slow on whichever side it lands; the fastest rounds are the ones that were not).
//!
//! Run: `cargo bench --bench metrics_overhead` (under `cargo test` it runs a few small rounds,
//! only to show it works).
//!
//! Instructions, which noise does not move: `--only A:on` (or `A:off`, `SRV:on`, `SRV:off`)
//! answers that one query `--queries N` times and nothing else, for `perf stat`:
//! `benches/load/metrics-instructions` runs each side at two counts and prints instructions per
//! query (the difference of the two runs, so the set-up cancels out).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use srvd::index::IndexHandle;
use srvd::ops::metrics::DnsMetrics;
use srvd::server::handler::Handler;
use srvd::server::wire::Transport;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value("--only");
    let full = args.iter().any(|a| a == "--bench");
    let (rounds, per_round) = if full { (40, 200_000) } else { (2, 1_000) };
    let zone = srvd::zonefile::embedded().expect("embedded zone");
    let (mut index, _) = srvd::daemon::build_index(vec![zone], None).expect("index");
    let metrics = Arc::new(DnsMetrics::new());
    index.set_metrics_slots(|origin| metrics.zone_slot(&origin.to_string()));
    let index = Arc::new(IndexHandle::new(index));
    let server = metrics.server_slot("dns://127.0.0.1:1053");
    let counted = Handler::new(index.clone()).with_ops(Some(metrics), server, None);
    let plain = Handler::new(index);
    let peer = "127.0.0.1:40000".parse().expect("addr");
    for (label, qname, qtype) in [
        ("A", "inst0._http._tcp.web.service.local.", RecordType::A),
        ("SRV", "_http._tcp.web.service.local.", RecordType::SRV),
    ] {
        let mut message = Message::new(1, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
        let request = message.to_vec().expect("encode");
        let mut out = Vec::with_capacity(1232);
        let mut scratch_on = counted.scratch(Transport::Udp, false);
        let mut scratch_off = plain.scratch(Transport::Udp, false);
        if let Some(only) = &only {
            let Some((name, side)) = only.split_once(':') else {
                panic!("--only TYPE:on|off");
            };
            if name != label {
                continue;
            }
            let queries: u64 =
                value("--queries").map_or(1_000_000, |q| q.parse().expect("--queries N"));
            let (handler, scratch) = match side {
                "on" => (&counted, &mut scratch_on),
                "off" => (&plain, &mut scratch_off),
                other => panic!("--only {name}:{other}: expected on or off"),
            };
            for _ in 0..queries {
                let sent =
                    handler.respond(black_box(&request), Transport::Udp, peer, scratch, &mut out);
                black_box((sent, out.len()));
            }
            continue;
        }
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which side goes first, so neither always follows the other.
            for side in [round % 2, 1 - round % 2] {
                let (handler, scratch, times) = if side == 0 {
                    (&counted, &mut scratch_on, &mut on)
                } else {
                    (&plain, &mut scratch_off, &mut off)
                };
                let start = Instant::now();
                for _ in 0..per_round {
                    let sent = handler.respond(
                        black_box(&request),
                        Transport::Udp,
                        peer,
                        scratch,
                        &mut out,
                    );
                    black_box((sent, out.len()));
                }
                times.push(start.elapsed().as_nanos() as f64 / f64::from(per_round));
            }
        }
        on.sort_by(f64::total_cmp);
        off.sort_by(f64::total_cmp);
        // The mean of the fastest quarter of rounds on each side.
        let fast = |v: &[f64]| {
            let n = (v.len() / 4).max(1);
            v[..n].iter().sum::<f64>() / n as f64
        };
        let median = |v: &[f64]| v[v.len() / 2];
        println!(
            "{label}: metrics on {:.1} ns/query, off {:.1} ns/query (fastest quarter of {rounds} alternating rounds of {per_round}); on/off {:.3}; medians {:.1} / {:.1}",
            fast(&on),
            fast(&off),
            fast(&on) / fast(&off),
            median(&on),
            median(&off)
        );
    }
}
