//! A small DNS client over real UDP and TCP sockets, built on hickory-proto's message codec.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a test waits for a reply before calling it silence.
pub const REPLY_WAIT: Duration = Duration::from_secs(2);

/// A query message for `name`/`qtype` with RD set and no EDNS.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    message
}

/// The same query with an EDNS(0) OPT advertising `payload` bytes.
pub fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.edns = Some(edns);
    message
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends raw bytes over UDP; the raw reply, or `None` after [`REPLY_WAIT`].
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let local = if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(REPLY_WAIT, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends `message` over UDP and decodes the reply (panics on silence).
pub async fn udp(addr: SocketAddr, message: &Message) -> Message {
    let (reply, _) = udp_with_size(addr, message).await;
    reply
}

/// Like [`udp`], also returning the reply's size in bytes.
pub async fn udp_with_size(addr: SocketAddr, message: &Message) -> (Message, usize) {
    let raw = udp_raw(addr, &message.to_vec().unwrap())
        .await
        .expect("a UDP reply");
    let reply = Message::from_vec(&raw).expect("a decodable reply");
    assert_eq!(reply.metadata.id, message.metadata.id);
    (reply, raw.len())
}

/// Writes one length-prefixed message to a stream.
pub async fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.unwrap();
}

/// Reads one length-prefixed message; `None` on EOF.
pub async fn tcp_recv(stream: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 2];
    match tokio::time::timeout(REPLY_WAIT, stream.read_exact(&mut len)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => panic!("no TCP reply within {REPLY_WAIT:?}"),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    Some(Message::from_vec(&buf).expect("a decodable reply"))
}

/// One query over a new TCP connection.
pub async fn tcp(addr: SocketAddr, message: &Message) -> Message {
    tcp_with_size(addr, message).await.0
}

/// Like [`tcp`], also returning the reply's size in bytes (without the length prefix).
pub async fn tcp_with_size(addr: SocketAddr, message: &Message) -> (Message, usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    tcp_send(&mut stream, &message.to_vec().unwrap()).await;
    let mut len = [0u8; 2];
    tokio::time::timeout(REPLY_WAIT, stream.read_exact(&mut len))
        .await
        .expect("a TCP reply in time")
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).expect("a decodable reply");
    assert_eq!(reply.metadata.id, message.metadata.id);
    (reply, buf.len())
}

/// Records of one type in a section.
pub fn of_type(records: &[Record], rtype: RecordType) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.record_type() == rtype)
        .collect()
}

/// Zone-file-like text of a record, sorted lists of which compare sections.
pub fn text(record: &Record) -> String {
    format!(
        "{} {} {} {}",
        record.name.to_ascii().to_lowercase(),
        record.ttl,
        record.record_type(),
        record.data
    )
}

/// The sorted text of a section.
pub fn section(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(text).collect();
    out.sort();
    out
}

/// Expected zone-file-like lines, sorted to compare with [`section`].
pub fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// SRV (priority, weight, port, target) of every SRV record, in order.
pub fn srvs(records: &[Record]) -> Vec<(u16, u16, u16, String)> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.priority, srv.weight, srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect()
}

/// Runs `dig ARGS +tries=1 +time=5` and returns its output with runs of whitespace collapsed
/// to one space (dig aligns columns with tabs).
pub fn dig(args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args(args)
        .args(["+tries=1", "+time=5"])
        .output()
        .expect("dig is installed (scripts/install-deps installs dnsutils)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The A addresses srvd gives for `name`, or `None` for NXDOMAIN.
pub async fn a_of(addr: SocketAddr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let reply = udp(addr, &query(name, RecordType::A)).await;
    if reply.metadata.response_code == ResponseCode::NXDomain {
        return None;
    }
    Some(
        reply
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
    )
}
