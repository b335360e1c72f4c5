//! Large answers against a real etcd: 10,000 SRV keys under one name and 10,000 more at the zone
//! apex. Each big question comes back with as many whole records as fit (TC set), and a cheap
//! question sent meanwhile from another socket is still answered within a resolver's timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::dns::{self, query, tcp_with_size, udp, udp_with_size, with_edns};
use crate::support::etcd::EtcdServer;
use crate::support::srvd::TestServer;

const ZONE: &str = "big.test.";
const SRV_NAME: &str = "_http._tcp.svc.big.test.";
const KEYS: u32 = 10_000;
/// More than any one SRV or A record of these answers takes on the wire, so a reply this close to
/// the limit had no room for one more record. An SRV whose target `i9999._http._tcp.svc.big.test.`
/// is sent uncompressed (as RFC 2782 asks) takes 50 bytes with a compressed owner, but hickory's
/// encoder compresses at most 120 names per message, so past those the owner is written in full
/// too (about 80 bytes).
const LARGEST_RECORD: usize = 100;

fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// Writes `KEYS` SRV keys under [`SRV_NAME`] and `KEYS` host keys right below the apex, in
/// transactions of 100 (etcd's default limit is 128 operations).
async fn load(etcd: &EtcdServer) {
    let mut client = etcd.client().await;
    for chunk in 0..(2 * KEYS / 100) {
        let ops: Vec<etcd_client::TxnOp> = (chunk * 100..chunk * 100 + 100)
            .map(|i| {
                let (key, value) = if i < KEYS {
                    (
                        format!("/skydns/test/big/svc/_tcp/_http/i{i}"),
                        format!(
                            r#"{{"host":"{}","port":8080,"weight":{}}}"#,
                            ip(i),
                            (i % 5) * 10
                        ),
                    )
                } else {
                    (
                        format!("/skydns/test/big/h{i}"),
                        format!(r#"{{"host":"{}"}}"#, ip(i)),
                    )
                };
                etcd_client::TxnOp::put(key, value, None)
            })
            .collect();
        client
            .txn(etcd_client::Txn::new().and_then(ops))
            .await
            .unwrap();
    }
}

/// A cut answer: TC set, NOERROR, only records of `rtype`, all distinct, and so many that not
/// even the smallest one more would have fitted in `limit`.
fn assert_full_and_cut(reply: &Message, size: usize, limit: usize, rtype: RecordType) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.truncation, "TC set for a cut {rtype} answer");
    assert!(size <= limit, "{size} bytes > {limit}");
    assert!(
        size + LARGEST_RECORD > limit,
        "{size} bytes of {limit}: another {rtype} record would have fitted"
    );
    assert_eq!(
        dns::of_type(&reply.answers, rtype).len(),
        reply.answers.len()
    );
    let mut texts = dns::section(&reply.answers);
    let n = texts.len();
    texts.dedup();
    assert_eq!(texts.len(), n, "a record repeated");
}

fn assert_srv_shape(reply: &Message) {
    for (priority, weight, port, target) in dns::srvs(&reply.answers) {
        assert_eq!((priority, port), (10, 8080), "{target}");
        assert!(weight >= 1, "{target}");
        assert!(target.ends_with("._http._tcp.svc.big.test."), "{target}");
    }
}

async fn soa_is_answered(addr: SocketAddr) {
    let reply = udp(addr, &query(ZONE, RecordType::SOA)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(reply.answers[0].data, RData::SOA(_)), "{reply:?}");
}

// Two workers: srvd's UDP loop answers inline on one, so the client's timers keep running on the
// other while a big question is computed (on a single-threaded runtime the stall would be hidden).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_under_a_name_and_at_the_apex_are_cut_to_fit_while_others_are_served()
{
    let etcd = EtcdServer::start().await;
    load(&etcd).await;
    let server = TestServer::start_etcd(&etcd.url, &[ZONE], None, |_| {}).await;
    assert_eq!(server.sync_status().keys, 2 * KEYS as usize);
    let addr = server.addr;

    // A cheap question, over and over from other sockets, for as long as the big ones run: each
    // must come back within dns::REPLY_WAIT (2 s) or `udp` fails the test.
    let done = Arc::new(AtomicBool::new(false));
    let cheap = tokio::spawn({
        let done = done.clone();
        async move {
            let mut answered = 0u32;
            while !done.load(Ordering::Relaxed) {
                soa_is_answered(addr).await;
                answered += 1;
            }
            answered
        }
    });

    for limit in [512u16, 1232] {
        let message = with_edns(query(SRV_NAME, RecordType::SRV), limit);
        let (reply, size) = udp_with_size(addr, &message).await;
        assert_full_and_cut(&reply, size, usize::from(limit), RecordType::SRV);
        assert_srv_shape(&reply);
    }
    let (reply, size) = tcp_with_size(addr, &query(SRV_NAME, RecordType::SRV)).await;
    assert_full_and_cut(&reply, size, 65_535, RecordType::SRV);
    assert_srv_shape(&reply);
    assert!(reply.answers.len() > 500, "{}", reply.answers.len());

    // A at the apex: every key of the zone is read (no apex.dns entry), 20,000 addresses.
    let (reply, size) = udp_with_size(addr, &with_edns(query(ZONE, RecordType::A), 1232)).await;
    assert_full_and_cut(&reply, size, 1232, RecordType::A);
    let (reply, size) = tcp_with_size(addr, &query(ZONE, RecordType::A)).await;
    assert_full_and_cut(&reply, size, 65_535, RecordType::A);
    assert!(reply.answers.len() > 2_000, "{}", reply.answers.len());

    // `any.<zone>`: a wildcard over the whole zone.
    let any = format!("any.{ZONE}");
    let (reply, size) = udp_with_size(addr, &query(&any, RecordType::A)).await;
    assert_full_and_cut(&reply, size, 512, RecordType::A);
    let (reply, size) = udp_with_size(addr, &with_edns(query(&any, RecordType::SRV), 1232)).await;
    assert_full_and_cut(&reply, size, 1232, RecordType::SRV);

    done.store(true, Ordering::Relaxed);
    let answered = cheap.await.unwrap();
    assert!(answered >= 1, "the cheap question ran");
    soa_is_answered(addr).await;
}
