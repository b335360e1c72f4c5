//! The lease table holds exactly the leases that keys in the mirror use: re-writing a key keeps
//! its lease (no look-up again), and a lease whose last key goes while its look-up is in flight
//! is not put back.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use hickory_proto::rr::RecordType;

use crate::support::dns::{query, tcp, udp};
use crate::support::etcd::EtcdServer;
use crate::support::eventually;
use crate::support::proxy::Proxy;
use crate::support::srvd::TestServer;

const ZONE: &[&str] = &["skydns.test."];

async fn put_leased(client: &mut Client, key: &str, lease: i64) -> i64 {
    client
        .put(
            format!("/skydns/test/skydns/{key}"),
            r#"{"host":"10.0.0.1"}"#,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Waits until `name`'s TTL comes from its lease (above the 30 s lower bound): the lease's
/// look-up has finished, and so has every look-up queued before it.
async fn until_lease_ttl(addr: SocketAddr, name: &str) {
    eventually(Duration::from_secs(5), "lease TTL learned", || async {
        let reply = udp(addr, &query(name, RecordType::A)).await;
        (reply.answers.first()?.ttl > 30).then_some(())
    })
    .await;
}

#[tokio::test]
async fn rewriting_a_leased_key_does_not_look_its_lease_up_again() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let lease = client.lease_grant(1000, None).await.unwrap().id();
    put_leased(&mut client, "k1", lease).await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    until_lease_ttl(server.addr, "k1.skydns.test.").await;
    assert_eq!(server.sync_status().lease_lookups, 1);

    let mut last = 0;
    for _ in 0..10 {
        last = put_leased(&mut client, "k1", lease).await;
    }
    server.wait_for_revision(last).await;
    // A second lease, looked up after anything the rewrites may have queued.
    let other = client.lease_grant(1000, None).await.unwrap().id();
    let r = put_leased(&mut client, "k2", other).await;
    server.wait_for_revision(r).await;
    until_lease_ttl(server.addr, "k2.skydns.test.").await;
    assert_eq!(
        server.sync_status().lease_lookups,
        2,
        "one look-up per lease, none per rewrite"
    );
    assert_eq!(server.known_leases(), 2);
}

#[tokio::test]
async fn a_lease_whose_last_key_goes_during_its_look_up_is_not_kept() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put("/skydns/test/skydns/plain", r#"{"host":"10.0.0.9"}"#, None)
        .await
        .unwrap();
    let proxy = Proxy::start(&etcd.url).await;
    let server = TestServer::start_etcd(&proxy.url, ZONE, None, |_| {}).await;

    // Written while srvd is cut off, so both arrive in one batch: the put sends the lease's
    // look-up, and the delete is applied before that look-up can answer.
    proxy.cut();
    let gone = client.lease_grant(1000, None).await.unwrap().id();
    put_leased(&mut client, "short", gone).await;
    let r = client
        .delete("/skydns/test/skydns/short", None)
        .await
        .unwrap();
    proxy.open(&[]);
    server
        .wait_for_revision(r.header().unwrap().revision())
        .await;

    let kept = client.lease_grant(1000, None).await.unwrap().id();
    let r = put_leased(&mut client, "kept", kept).await;
    server.wait_for_revision(r).await;
    until_lease_ttl(server.addr, "kept.skydns.test.").await;
    assert_eq!(
        server.known_leases(),
        1,
        "only the lease a mirrored key uses has a deadline"
    );
}

/// Keys each on a new 1-hour lease, all written in one revision (so one listing or one watch
/// batch brings them all, and their look-ups would queue behind each other); one says `ttl: 600`,
/// which caps its lease time. Returns the revision.
async fn put_on_new_leases(client: &mut Client, round: &str, keys: usize) -> i64 {
    let mut ops = Vec::new();
    for i in 0..keys {
        let lease = client.lease_grant(3600, None).await.unwrap().id();
        let value = if i == 0 {
            r#"{"host":"10.0.0.1","ttl":600}"#
        } else {
            r#"{"host":"10.0.0.1"}"#
        };
        ops.push(etcd_client::TxnOp::put(
            format!("/skydns/test/skydns/{round}k{i}"),
            value,
            Some(PutOptions::new().with_lease(lease)),
        ));
    }
    client
        .txn(etcd_client::Txn::new().and_then(ops))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Asks for each key of `round` once, the last written first, over TCP and UDP in turn; returns
/// the answers whose TTL is not the lease's time (or the value's `ttl`).
async fn first_answers_without_lease_time(
    addr: SocketAddr,
    round: &str,
    keys: usize,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for i in (0..keys).rev() {
        let name = format!("{round}k{i}.skydns.test.");
        let question = query(&name, RecordType::A);
        let reply = if i % 2 == 0 {
            tcp(addr, &question).await
        } else {
            udp(addr, &question).await
        };
        let ttl = reply.answers.first().expect("an A record").ttl;
        let expected = if i == 0 { 600..=600 } else { 3590..=3600 };
        if !expected.contains(&ttl) {
            wrong.push(format!("{name} ttl {ttl}"));
        }
    }
    wrong
}

/// The first answer for a key on a new lease already carries the lease's remaining time, never
/// the `--min-lease-ttl` floor that stands in while a deadline is unknown: for keys in the
/// first full read, and for keys arriving through the watch, round after round.
#[tokio::test]
async fn the_first_answer_for_a_key_on_a_new_lease_carries_the_lease_time() {
    const KEYS: usize = 12;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put_on_new_leases(&mut client, "listed", KEYS).await;
    let server = TestServer::start_etcd(&etcd.url, ZONE, None, |_| {}).await;
    let mut wrong = first_answers_without_lease_time(server.addr, "listed", KEYS).await;
    for round in 0..4 {
        let round = format!("watched{round}");
        let r = put_on_new_leases(&mut client, &round, KEYS).await;
        server.wait_for_revision(r).await;
        wrong.extend(first_answers_without_lease_time(server.addr, &round, KEYS).await);
    }
    assert!(
        wrong.is_empty(),
        "first answers without their lease time: {wrong:?}"
    );
    assert_eq!(
        server.sync_status().lease_lookups,
        5 * KEYS as u64,
        "one look-up per lease"
    );
}
