//! etcd → srvd figures, measured against a real etcd and the real `srvd` binary on loopback:
//!
//! 1. propagation: the time from `put` returning to srvd's answer changing, over 100 updates on
//!    an idle server (p50, p99, max);
//! 2. initial sync: 100,000 SkyDNS keys in etcd, then `srvd serve --etcd …` started; the time
//!    until its "etcd initial sync complete" line and its resident memory after the read.
//!
//! Run: `cargo bench --bench etcd_sync` (needs `etcd`; scripts/install-deps installs it).
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version so it stays working.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_etcd(dir: &std::path::Path) -> (Killed, String) {
    let (client_port, peer_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let child = Killed(
        Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args([
                "--logger",
                "zap",
                "--log-level",
                "error",
                "--quota-backend-bytes",
                "4294967296",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd installed"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([&url], None).await
            && c.get("/", None).await.is_ok()
        {
            return (child, url);
        }
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the srvd binary; returns it, its address, and the time until its initial sync line.
fn start_srvd(url: &str) -> (Killed, SocketAddr, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--etcd", url])
        .args(["--zone", "bench.test."])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .current_dir(std::env::temp_dir())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let child = Killed(child);
    // srvd serves before its first read completes: wait for both lines, in either order.
    let mut synced = None;
    let mut addr = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("etcd initial sync complete") {
            synced = Some(started.elapsed());
        }
        if let Some(rest) = line.split("udp+tcp ").nth(1) {
            addr = Some(rest.split([',', ' ']).next().unwrap().parse().unwrap());
        }
        if let (Some(addr), Some(synced)) = (addr, synced) {
            return (child, addr, synced);
        }
    }
    panic!("srvd exited before serving and syncing");
}

fn a_record(socket: &UdpSocket, addr: SocketAddr, name: &Name) -> Option<std::net::Ipv4Addr> {
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name.clone(), RecordType::A));
    socket.send_to(&message.to_vec().unwrap(), addr).unwrap();
    let mut buf = [0u8; 1232];
    let n = socket.recv(&mut buf).unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    reply.answers.iter().find_map(|r| match r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (updates, keys) = if full { (100, 100_000) } else { (5, 1_000) };
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, url) = start_etcd(dir.path()).await;
    let mut client = Client::connect([&url], None).await.unwrap();

    // 1. Propagation on an idle server.
    let (srvd, addr, _) = start_srvd(&url);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let name = Name::from_ascii("probe.bench.test.").unwrap();
    let mut samples = Vec::with_capacity(updates);
    for i in 0..updates as u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i + 1);
        tokio::time::sleep(Duration::from_millis(20)).await; // idle between updates
        client
            .put(
                "/skydns/test/bench/probe",
                format!(r#"{{"host":"{ip}"}}"#),
                None,
            )
            .await
            .unwrap();
        let returned = Instant::now();
        let deadline = returned + Duration::from_secs(5);
        while a_record(&socket, addr, &name) != Some(ip) {
            assert!(
                Instant::now() < deadline,
                "update {i} not visible within 5 s"
            );
        }
        samples.push(returned.elapsed());
    }
    drop(srvd);
    samples.sort();
    println!(
        "propagation over {updates} updates (put returned -> answer changed): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );

    // 2. Initial sync of many keys.
    for chunk in (0..keys).collect::<Vec<u32>>().chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| {
                let value = format!(
                    r#"{{"host":"{}","port":8080,"priority":10,"weight":{},"text":"instance {i}"}}"#,
                    std::net::Ipv4Addr::from(0x0a00_0000 + i),
                    i % 100 + 1
                );
                TxnOp::put(format!("/skydns/test/bench/svc{}/_tcp/_http/i{i}", i / 10), value, None)
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let (srvd, addr, synced) = start_srvd(&url);
    let rss = rss_kib(srvd.0.id());
    let check = Name::from_ascii(format!(
        "i{}._http._tcp.svc{}.bench.test.",
        keys - 1,
        (keys - 1) / 10
    ))
    .unwrap();
    assert!(a_record(&socket, addr, &check).is_some(), "last key served");
    println!(
        "initial sync of {keys} keys: {:?} from process start to 'etcd initial sync complete'; RSS after sync {:.1} MiB",
        synced,
        rss as f64 / 1024.0
    );
}
