//! TCP: several queries per connection, idle timeout, the connection cap (closing the quietest
//! connection under pressure, throttled warnings), graceful shutdown.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::dns::{query, tcp_recv, tcp_send, udp};
use crate::support::{fixture_zones, srvd::TestServer};

#[tokio::test]
async fn several_queries_share_one_connection() {
    let server = TestServer::start(&fixture_zones()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for name in [
        "a.svc.example.test.",
        "b.svc.example.test.",
        "c.svc.example.test.",
    ] {
        let message = query(name, RecordType::A);
        tcp_send(&mut stream, &message.to_vec().unwrap()).await;
        let reply = tcp_recv(&mut stream).await.expect("reply");
        assert_eq!(reply.metadata.id, message.metadata.id);
        assert_eq!(reply.answers.len(), 1, "{name}");
    }
    // Two queries written back to back (pipelined) get two answers.
    let (q1, q2) = (
        query("a.svc.example.test.", RecordType::A),
        query("mail.example.test.", RecordType::AAAA),
    );
    let mut both = Vec::new();
    for q in [&q1, &q2] {
        let bytes = q.to_vec().unwrap();
        both.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        both.extend_from_slice(&bytes);
    }
    stream.write_all(&both).await.unwrap();
    assert_eq!(
        tcp_recv(&mut stream).await.unwrap().metadata.id,
        q1.metadata.id
    );
    assert_eq!(
        tcp_recv(&mut stream).await.unwrap().metadata.id,
        q2.metadata.id
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_timeout() {
    let server = TestServer::start_with(&fixture_zones(), |c| {
        c.tcp.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The server closes the idle connection: the read sees EOF well within the reply wait.
    assert!(tcp_recv(&mut stream).await.is_none(), "connection closed");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_while_existing_ones_keep_working() {
    // Both existing connections count as active: none is quiet for an hour.
    let server = TestServer::start_with(&fixture_zones(), |c| {
        c.tcp.max_connections = 2;
        c.tcp.close_idle_after = Duration::from_secs(3600);
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    // Make sure both are accepted and being served.
    for stream in [&mut first, &mut second] {
        tcp_send(
            stream,
            &query("a.svc.example.test.", RecordType::A)
                .to_vec()
                .unwrap(),
        )
        .await;
        assert!(tcp_recv(stream).await.is_some());
    }
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    tcp_send(
        &mut third,
        &query("a.svc.example.test.", RecordType::A)
            .to_vec()
            .unwrap(),
    )
    .await;
    assert!(
        tcp_recv(&mut third).await.is_none(),
        "the third connection is closed unanswered"
    );
    tcp_send(
        &mut first,
        &query("b.svc.example.test.", RecordType::A)
            .to_vec()
            .unwrap(),
    )
    .await;
    assert_eq!(
        tcp_recv(&mut first).await.unwrap().answers.len(),
        1,
        "existing connection works"
    );
    // Once one closes, a new connection is served again.
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(server.addr).await.unwrap();
        tcp_send(
            &mut again,
            &query("c.svc.example.test.", RecordType::A)
                .to_vec()
                .unwrap(),
        )
        .await;
        if tcp_recv(&mut again).await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed slot is reused"
        );
        tokio::task::yield_now().await;
    }
}

/// Sends one A query on `stream` and says whether an answer came back (false: closed).
async fn answered(stream: &mut TcpStream) -> bool {
    let message = query("a.svc.example.test.", RecordType::A);
    // A write to a connection the server already closed may fail; that is "not answered".
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    if stream.write_all(&framed).await.is_err() {
        return false;
    }
    tcp_recv(stream)
        .await
        .is_some_and(|reply| reply.metadata.id == message.metadata.id && reply.answers.len() == 1)
}

#[tokio::test]
async fn under_pressure_the_quietest_connections_are_closed_so_new_clients_are_served() {
    let server = TestServer::start_with(&fixture_zones(), |c| {
        c.tcp.max_connections = 3;
        c.tcp.close_idle_after = Duration::ZERO;
    })
    .await;
    // An idle connection (never sent anything), a slowloris stalled mid-query, an active client.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0, 40, 0xab, 0xcd]).await.unwrap();
    let mut active = TcpStream::connect(server.addr).await.unwrap();
    assert!(answered(&mut active).await);

    // The table is full; a new client is served, and the idle connection (quiet the longest)
    // made room for it.
    let mut first_new = TcpStream::connect(server.addr).await.unwrap();
    assert!(answered(&mut first_new).await, "a new client is served");
    assert!(
        tcp_recv(&mut idle).await.is_none(),
        "the idle one was closed"
    );
    // Next the stalled one goes; the active client is untouched.
    let mut second_new = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        answered(&mut second_new).await,
        "another new client is served"
    );
    assert!(
        tcp_recv(&mut stalled).await.is_none(),
        "the stalled one was closed"
    );
    assert!(
        answered(&mut active).await,
        "the active client keeps its connection"
    );
    assert!(answered(&mut first_new).await);
}

/// Captures every `warn!` line logged on this thread while it lives.
///
/// Through one process-wide subscriber that writes into the capturing thread's buffer, not a
/// thread-scoped one: with scoped subscribers, tracing caches each call site's interest, and a
/// `warn!` first reached by another test's thread (where nobody listens) could be cached as
/// uninteresting while this test set its subscriber up, dropping its lines under a loaded suite.
struct CapturedWarnings {
    lines: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes into the current thread's capture buffer, if any.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with_borrow(|capture| {
            if let Some(lines) = capture {
                lines.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for CapturedWarnings {
    fn drop(&mut self) {
        CAPTURE.with_borrow_mut(|capture| *capture = None);
    }
}

impl CapturedWarnings {
    fn start() -> Self {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(|| ThreadSink)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with_borrow_mut(|capture| *capture = Some(lines.clone()));
        Self { lines }
    }

    fn matching(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.lines.lock().unwrap())
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// An attacker who holds every slot but one and cycles connections through the last one must
/// not be able to make srvd log a line per connection.
#[tokio::test(flavor = "current_thread")]
async fn warnings_about_the_connection_bound_are_throttled() {
    let warnings = CapturedWarnings::start();
    for close_idle_after in [Duration::from_secs(3600), Duration::ZERO] {
        let server = TestServer::start_with(&fixture_zones(), |c| {
            c.tcp.max_connections = 2;
            c.tcp.close_idle_after = close_idle_after;
        })
        .await;
        let mut held = TcpStream::connect(server.addr).await.unwrap();
        assert!(answered(&mut held).await);
        for _ in 0..200 {
            let mut cycling = TcpStream::connect(server.addr).await.unwrap();
            let mut over = TcpStream::connect(server.addr).await.unwrap();
            // Either the new connection is refused, or it is served after closing another.
            let _ = answered(&mut over).await;
            let _ = answered(&mut cycling).await;
        }
        server.shutdown().await;
    }
    let lines = warnings.matching("tcp connection limit reached");
    // Two servers, each throttled to one line per kind per 10 s (more only if a run straddles a
    // period); unthrottled, this was a line per refused connection: 200 per server.
    assert!(lines.len() <= 6, "{} warnings: {lines:#?}", lines.len());
    assert!(
        lines.iter().any(|l| l.contains("refused=")) && lines.iter().any(|l| l.contains("closed=")),
        "both kinds carry their counts: {lines:#?}"
    );
}

#[tokio::test]
async fn shutdown_finishes_the_query_in_flight_then_stops_listening() {
    let server = TestServer::start(&fixture_zones()).await;
    let addr = server.addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Warm up: the connection is accepted and served.
    tcp_send(
        &mut stream,
        &query("a.svc.example.test.", RecordType::A)
            .to_vec()
            .unwrap(),
    )
    .await;
    tcp_recv(&mut stream).await.unwrap();

    // Half a query is on the wire when shutdown begins.
    let message = query("b.svc.example.test.", RecordType::A);
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let (head, tail) = framed.split_at(5);
    stream.write_all(head).await.unwrap();
    stream.flush().await.unwrap();
    server.begin_shutdown();

    // New connections are refused once the listener is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still open"
        );
        tokio::task::yield_now().await;
    }
    stream.write_all(tail).await.unwrap();
    let reply = tcp_recv(&mut stream)
        .await
        .expect("the in-flight query is answered");
    assert_eq!(reply.metadata.id, message.metadata.id);
    assert_eq!(reply.answers.len(), 1);
    assert!(
        tcp_recv(&mut stream).await.is_none(),
        "then the connection closes"
    );
    // UDP is no longer served either: a fresh server proves the helper still works.
    let other = TestServer::start(&fixture_zones()).await;
    assert_eq!(
        udp(other.addr, &query("a.svc.example.test.", RecordType::A))
            .await
            .answers
            .len(),
        1
    );
    server.shutdown().await;
}
