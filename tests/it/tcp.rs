//! TCP: several queries per connection, idle timeout, the connection cap, graceful shutdown.

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
    let server = TestServer::start_with(&fixture_zones(), |c| c.tcp.max_connections = 2).await;
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
