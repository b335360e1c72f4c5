//! srvd killed (SIGKILL) in the middle of its sync and started again on the same etcd: the
//! mirror it builds equals a full read of etcd, and until its first full read it answers the
//! etcd zone SERVFAIL (never a wrong NXDOMAIN from a half-read mirror) and `/ready` says 503.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::dns::{a_of, query, udp};
use crate::support::etcd::EtcdServer;
use crate::support::http::get;
use crate::support::srvd::{SrvdProcess, spawn_binary_logging};

/// Keys loaded before srvd starts; the writer changes only the first half.
const KEYS: u32 = 20_000;
const CHURNED: u32 = KEYS / 2;

fn key(i: u32) -> String {
    format!("/skydns/test/skydns/bulk/k{i}")
}

fn name(i: u32) -> String {
    format!("k{i}.bulk.skydns.test.")
}

fn host(i: u32, round: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + (round << 16) + i)
}

fn value(ip: Ipv4Addr) -> String {
    format!(r#"{{"host":"{ip}"}}"#)
}

fn start_srvd(dir: &Path, url: &str) -> SrvdProcess {
    spawn_binary_logging(
        dir,
        &[
            "--etcd",
            url,
            "--zone",
            "skydns.test.",
            "--ready",
            "127.0.0.1:0",
        ],
        "srvd=info",
    )
}

/// The `/ready` address from srvd's "serving http" line.
fn ready_addr(srvd: &SrvdProcess) -> SocketAddr {
    srvd.log
        .iter()
        .find(|l| l.contains("serving http"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no http address in {:#?}", srvd.log))
}

/// Changes the first half of the keys in transactions of 50 (one in four a delete) until
/// `stop` or 4,000 transactions; returns how many it made.
fn writer(url: String, stop: Arc<AtomicBool>, made: Arc<AtomicU32>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = Client::connect([&url], None).await.unwrap();
        let mut round = 1;
        while !stop.load(Ordering::Relaxed) && round <= 4_000 {
            let ops: Vec<TxnOp> = (0..50)
                .map(|n| {
                    let i = (round * 50 + n) % CHURNED;
                    if (round + n) % 4 == 0 {
                        TxnOp::delete(key(i), None)
                    } else {
                        TxnOp::put(key(i), value(host(i, round % 200 + 1)), None)
                    }
                })
                .collect();
            client.txn(Txn::new().and_then(ops)).await.unwrap();
            made.store(round, Ordering::Relaxed);
            round += 1;
        }
    })
}

/// Polls one unchurned name and `/ready` until the first full read is served: every answer is
/// SERVFAIL or the right address, and once `/ready` says 200 every answer is right. Returns
/// how many SERVFAIL answers and 503s it saw.
async fn until_ready_never_half_read(addr: SocketAddr, ready: SocketAddr) -> (u32, u32) {
    let probe = KEYS - 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut servfails, mut unready) = (0, 0);
    loop {
        let was_ready = get(ready, "/ready").await.0 == 200;
        let reply = udp(addr, &query(&name(probe), RecordType::A)).await;
        let answer: Vec<Ipv4Addr> = reply
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        let right =
            reply.metadata.response_code == ResponseCode::NoError && answer == [host(probe, 0)];
        match reply.metadata.response_code {
            ResponseCode::ServFail if !was_ready => servfails += 1,
            _ => assert!(
                right,
                "a half-read mirror answered (ready: {was_ready}): {:?} {answer:?}",
                reply.metadata.response_code
            ),
        }
        if was_ready && right {
            return (servfails, unready);
        }
        if !was_ready {
            unready += 1;
        }
        assert!(Instant::now() < deadline, "srvd read etcd within 30 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srvd_killed_mid_sync_and_restarted_builds_a_mirror_equal_to_etcd() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let all: Vec<TxnOp> = (0..KEYS)
        .map(|i| TxnOp::put(key(i), value(host(i, 0)), None))
        .collect();
    for chunk in all.chunks(100) {
        client
            .txn(Txn::new().and_then(chunk.to_vec()))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU32::new(0));
    let writing = writer(etcd.url.clone(), stop.clone(), made.clone());

    // Killed at its serving line: the listing of 20,000 keys has just begun.
    let mut first = start_srvd(dir.path(), &etcd.url);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Killed while it applies the writer's burst.
    let mut second = start_srvd(dir.path(), &etcd.url);
    tokio::task::block_in_place(|| second.until_etcd_synced(Duration::from_secs(30)));
    let before = made.load(Ordering::Relaxed);
    crate::support::eventually(Duration::from_secs(30), "the burst goes on", || {
        let made = made.clone();
        async move { (made.load(Ordering::Relaxed) >= before + 20).then_some(()) }
    })
    .await;
    second.child.kill().unwrap();
    second.child.wait().unwrap();

    // Restarted while the writer still writes.
    let third = start_srvd(dir.path(), &etcd.url);
    let (servfails, unready) = until_ready_never_half_read(third.addr, ready_addr(&third)).await;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let last = client
        .put(key(KEYS), value(host(KEYS, 0)), None)
        .await
        .unwrap();
    let addr = third.addr;
    crate::support::eventually(
        Duration::from_secs(30),
        "the last write arrives",
        || async { (a_of(addr, &name(KEYS)).await == Some(vec![host(KEYS, 0)])).then_some(()) },
    )
    .await;

    // Every key as a full read of etcd holds it, and nothing for a key that is gone.
    let read = client
        .get(
            "/skydns/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_revision(last.header().unwrap().revision()),
            ),
        )
        .await
        .unwrap();
    let mut expected = vec![None; KEYS as usize + 1];
    for kv in read.kvs() {
        let i: u32 = kv
            .key_str()
            .unwrap()
            .rsplit("/k")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let host: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
        expected[i as usize] = Some(host["host"].as_str().unwrap().parse::<Ipv4Addr>().unwrap());
    }
    let deleted = expected.iter().filter(|e| e.is_none()).count();
    assert!(deleted > 0, "the writer deleted keys");
    for (i, expected) in expected.iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        assert_eq!(
            a_of(addr, &name(i)).await,
            expected.map(|a| vec![a]),
            "{}",
            key(i)
        );
    }
    eprintln!(
        "figure: {} writer transactions; restarted srvd answered SERVFAIL {servfails} times and /ready 503 {unready} times before its first read; {} keys, {deleted} deleted, all equal",
        made.load(Ordering::Relaxed),
        read.kvs().len()
    );
}
