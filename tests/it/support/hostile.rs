//! The hostile workloads of issue 16, shared by the fast cases (tests/it/hostile.rs) and the
//! soak runs (tests/soak/hostile.rs), which differ only in size and duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::dns::{query, section, udp};
use super::load::Traffic;

/// The questions the valid half asks of the shipped zone (service.local.), with their types.
pub const SHIPPED_QUESTIONS: &[(&str, RecordType)] = &[
    ("_http._tcp.web.service.local.", RecordType::SRV),
    ("inst0._http._tcp.web.service.local.", RecordType::A),
    ("inst1._http._tcp.web.service.local.", RecordType::AAAA),
    ("_postgresql._tcp.db.service.local.", RecordType::TXT),
    ("_services._dns-sd._udp.service.local.", RecordType::PTR),
    ("www.service.local.", RecordType::A),
    ("nothing-here.service.local.", RecordType::A),
];

/// A question's name in wire form, uncompressed.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
}

/// RD set, as stub resolvers send.
const QUERY_FLAGS: u16 = 0x0100;

/// The expected answer to a question: RCODE and the answer section, sorted.
type Expected = (ResponseCode, Vec<String>);

/// Valid queries at the shipped zone and malformed packets, half and half:
/// classes 0..=5 valid; 6 a header cut short (silence), 7 a label length over 63 or past the
/// end, 8 a compression loop, 9 QDCOUNT=5 with one question, 10 a response (QR set: silence),
/// 11 garbage (seeded by the ID; silence when its QR bit is set, FORMERR otherwise).
pub struct MixedTraffic {
    questions: Vec<(Vec<u8>, RecordType)>,
    expected: Vec<Expected>,
}

impl MixedTraffic {
    /// Asks each question once over UDP; the blast's answers must equal these.
    pub async fn learn(addr: SocketAddr) -> Self {
        let mut expected = Vec::new();
        for (name, qtype) in SHIPPED_QUESTIONS {
            let reply = udp(addr, &query(name, *qtype)).await;
            expected.push((reply.metadata.response_code, section(&reply.answers)));
        }
        assert!(
            expected[..6]
                .iter()
                .all(|(rcode, answers)| *rcode == ResponseCode::NoError && !answers.is_empty()),
            "the shipped zone answers the valid questions: {expected:#?}"
        );
        Self {
            questions: SHIPPED_QUESTIONS
                .iter()
                .map(|(name, qtype)| (wire_name(name), *qtype))
                .collect(),
            expected,
        }
    }

    fn question(&self, id: u16) -> usize {
        usize::from(id / 12) % self.questions.len()
    }

    fn garbage(id: u16, out: &mut Vec<u8>) {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(u64::from(id));
        let len = rng.random_range(12..80);
        out.clear();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend((2..len).map(|_| rng.random::<u8>()));
    }
}

impl Traffic for MixedTraffic {
    const CLASSES: usize = 12;

    fn class(&self, id: u16) -> usize {
        usize::from(id % 12)
    }

    fn packet(&self, id: u16, out: &mut Vec<u8>) {
        let variant = (id / 12).is_multiple_of(2);
        let (name, qtype) = &self.questions[self.question(id)];
        let question = |out: &mut Vec<u8>, name: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(&u16::from(*qtype).to_be_bytes());
            out.extend_from_slice(&[0, 1]);
        };
        match self.class(id) {
            0..=5 => {
                header(out, id, QUERY_FLAGS, [1, 0, 0, 0]);
                question(out, name);
            }
            6 => {
                header(out, id, QUERY_FLAGS, [1, 0, 0, 0]);
                out.truncate(2 + usize::from(id / 12) % 10);
            }
            7 => {
                header(out, id, QUERY_FLAGS, [1, 0, 0, 0]);
                if variant {
                    let mut long = vec![64u8];
                    long.extend_from_slice(&[b'x'; 64]);
                    long.push(0);
                    question(out, &long);
                } else {
                    // A label of 63 bytes with 3 present.
                    out.extend_from_slice(&[63, b'a', b'b', b'c']);
                }
            }
            8 => {
                header(out, id, QUERY_FLAGS, [1, 0, 0, 0]);
                // The name points at itself, or at a label that points back at it.
                let looped: &[u8] = if variant {
                    &[0xC0, 12]
                } else {
                    &[1, b'a', 0xC0, 12]
                };
                question(out, looped);
            }
            9 => {
                header(out, id, QUERY_FLAGS, [5, 0, 0, 0]);
                question(out, name);
            }
            10 => {
                header(out, id, 0x8500, [1, 1, 0, 0]);
                question(out, name);
            }
            _ => Self::garbage(id, out),
        }
    }

    fn expects_reply(&self, id: u16) -> bool {
        match self.class(id) {
            6 | 10 => false,
            11 => {
                let mut packet = Vec::new();
                Self::garbage(id, &mut packet);
                packet[2] & 0x80 == 0
            }
            _ => true,
        }
    }

    fn judge(&self, id: u16, request: &[u8], reply: &[u8]) -> Result<(), String> {
        if self.class(id) <= 5 {
            let message = Message::from_vec(reply).map_err(|e| format!("undecodable: {e}"))?;
            let (rcode, answers) = &self.expected[self.question(id)];
            let got = (message.metadata.response_code, section(&message.answers));
            if message.metadata.truncation || got != (*rcode, answers.clone()) {
                return Err(format!(
                    "asked {:?}, got {got:?} (TC {})",
                    SHIPPED_QUESTIONS[self.question(id)],
                    message.metadata.truncation
                ));
            }
            return Ok(());
        }
        formerr_no_larger(request, reply)
    }
}

/// A FORMERR reply (QR set) no larger than the packet that caused it.
fn formerr_no_larger(request: &[u8], reply: &[u8]) -> Result<(), String> {
    if reply.len() < 12 || reply[2] & 0x80 == 0 || reply[3] & 0x0f != 1 {
        return Err(format!("not a FORMERR response: {reply:02x?}"));
    }
    if reply.len() > request.len() {
        return Err(format!(
            "a {}-byte FORMERR to a {}-byte packet",
            reply.len(),
            request.len()
        ));
    }
    Ok(())
}

/// Well-formed questions for names outside every zone srvd serves (it serves service.local.):
/// class 0 A without EDNS, 1 AAAA with EDNS, 2 SRV with EDNS and a client cookie, 3 TXT for
/// `local.` (the zone's parent) or a long mixed-case name.
pub struct OutsideTraffic;

impl OutsideTraffic {
    fn name(id: u16) -> String {
        match id % 4 {
            3 if (id / 4).is_multiple_of(2) => "local.".to_string(),
            3 => format!("Some-Rather-Long-Label-{id}.Another-Label.Outside.Example.ORG."),
            _ => format!("h{id}.outside{}.example.org.", id % 7),
        }
    }
}

impl Traffic for OutsideTraffic {
    const CLASSES: usize = 4;

    fn class(&self, id: u16) -> usize {
        usize::from(id % 4)
    }

    fn packet(&self, id: u16, out: &mut Vec<u8>) {
        let class = self.class(id);
        let additional = u16::from(class == 1 || class == 2);
        header(out, id, QUERY_FLAGS, [1, 0, 0, additional]);
        out.extend_from_slice(&wire_name(&Self::name(id)));
        let qtype = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
        ][class];
        out.extend_from_slice(&u16::from(qtype).to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        if additional == 1 {
            // OPT: root, type 41, payload 1232, version 0, DO clear.
            out.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
            if class == 2 {
                // RDLEN 12: option COOKIE (10), 8 bytes of client cookie.
                out.extend_from_slice(&[0, 12, 0, 10, 0, 8]);
                out.extend_from_slice(&u64::from(id).to_be_bytes());
            } else {
                out.extend_from_slice(&[0, 0]);
            }
        }
    }

    fn expects_reply(&self, _id: u16) -> bool {
        true
    }

    fn judge(&self, id: u16, request: &[u8], reply: &[u8]) -> Result<(), String> {
        let message = Message::from_vec(reply).map_err(|e| format!("undecodable: {e}"))?;
        if message.metadata.response_code != ResponseCode::Refused {
            return Err(format!("{:?}", message.metadata.response_code));
        }
        if reply.len() > request.len() {
            return Err(format!(
                "amplified: {} bytes for a {}-byte query",
                reply.len(),
                request.len()
            ));
        }
        let echoed = message.queries.first().map(|q| q.name().to_ascii());
        if echoed.as_deref() != Some(Self::name(id).as_str()) || !message.answers.is_empty() {
            return Err(format!(
                "question {echoed:?}, {} answers",
                message.answers.len()
            ));
        }
        Ok(())
    }
}

/// A framed TCP query for `a.svc`'s shipped counterpart, with `id`.
pub fn framed_query(id: u16) -> Vec<u8> {
    let mut message = query("inst0._http._tcp.web.service.local.", RecordType::A);
    message.metadata.id = id;
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Reads one framed reply within `limit`: `Some(message)`, or `None` on EOF, reset or timeout.
pub async fn read_reply(stream: &mut TcpStream, limit: Duration) -> Option<Message> {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.ok()?;
        Message::from_vec(&buf).ok()
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// The shape of a TCP siege.
pub struct Siege {
    pub idle: usize,
    pub slowloris: usize,
    /// A slowloris client writes one byte of its query this often.
    pub byte_every: Duration,
    /// Well-behaved clients, one after the other, each with its own connection.
    pub clients: usize,
    /// The pause between two well-behaved clients (the attack goes on meanwhile).
    pub client_every: Duration,
    /// How long, after the last client, every idle connection may take to be closed by srvd.
    pub close_within: Duration,
}

/// What a siege saw.
#[derive(Debug)]
pub struct SiegeFigures {
    /// Idle connections the kernel completed (srvd's backlog takes the rest in time).
    pub idle_connected: usize,
    /// Idle connections srvd had closed by the end (every one must be).
    pub idle_closed: usize,
    /// Slowloris connections srvd closed, and connections they made.
    pub slowloris_closed: u64,
    pub slowloris_connections: u64,
    /// Slowloris clients that ever got an answer (one byte per period never completes a query
    /// before the idle timeout, so none should).
    pub slowloris_answered: u64,
    /// Each well-behaved client's wait from connect to answer; `None`: no answer within 3 s.
    pub client_waits: Vec<Option<Duration>>,
    pub elapsed: Duration,
}

/// The wait a well-behaved TCP client gives srvd (the stated bound).
pub const CLIENT_WAIT: Duration = Duration::from_secs(3);

/// Opens `siege.idle` idle connections and `siege.slowloris` slowloris clients against `addr`,
/// then runs the well-behaved clients one after the other, then checks that srvd closed every
/// idle connection.
pub async fn siege(addr: SocketAddr, siege: &Siege) -> SiegeFigures {
    let start = Instant::now();
    let mut idle = Vec::with_capacity(siege.idle);
    for _ in 0..siege.idle {
        // Past the backlog the kernel may hold a connect back; bounded by the timeout.
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        {
            idle.push(stream);
        }
    }
    let idle_connected = idle.len();

    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut loris = Vec::new();
    for i in 0..siege.slowloris {
        let (stop, closed, connections, answered) = (
            stop.clone(),
            closed.clone(),
            connections.clone(),
            answered.clone(),
        );
        let byte_every = siege.byte_every;
        loris.push(tokio::spawn(async move {
            let query = framed_query(0x4000 + i as u16);
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(byte_every).await;
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let mut sent = 0;
                let mut buf = [0u8; 512];
                let end = loop {
                    if stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    if sent < query.len() && stream.write_all(&query[sent..=sent]).await.is_err() {
                        break Some(false);
                    }
                    sent += 1;
                    tokio::select! {
                        () = tokio::time::sleep(byte_every) => {}
                        read = stream.read(&mut buf) => break Some(matches!(read, Ok(n) if n > 0)),
                    }
                };
                match end {
                    Some(true) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(false) => {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
        }));
    }

    let mut client_waits = Vec::new();
    for i in 0..siege.clients {
        tokio::time::sleep(siege.client_every).await;
        let id = 0x8000 + i as u16;
        let began = Instant::now();
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream.write_all(&framed_query(id)).await.ok()?;
            read_reply(&mut stream, CLIENT_WAIT).await
        };
        let reply = tokio::time::timeout(CLIENT_WAIT, exchange)
            .await
            .ok()
            .flatten();
        let good = reply.is_some_and(|r| {
            r.metadata.id == id
                && r.metadata.response_code == ResponseCode::NoError
                && r.answers.len() == 1
        });
        client_waits.push(good.then(|| began.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for task in loris {
        task.await.unwrap();
    }

    // srvd closes every idle connection: at the bound, to make room, or at the idle timeout.
    let deadline = tokio::time::Instant::now() + siege.close_within;
    let mut idle_closed = 0;
    let mut buf = [0u8; 64];
    for stream in &mut idle {
        if let Ok(read) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await
            && !matches!(read, Ok(n) if n > 0)
        {
            idle_closed += 1;
        }
    }
    SiegeFigures {
        idle_connected,
        idle_closed,
        slowloris_closed: closed.load(Ordering::Relaxed),
        slowloris_connections: connections.load(Ordering::Relaxed),
        slowloris_answered: answered.load(Ordering::Relaxed),
        client_waits,
        elapsed: start.elapsed(),
    }
}

/// What a SIGTERM under load saw.
#[derive(Debug, Default)]
pub struct ShutdownFigures {
    /// TCP queries fully written before SIGTERM was sent, and how many of them were answered.
    pub before: u64,
    pub before_answered: u64,
    /// Queries written after it: answered, or their connection closed (no wrong answer either way).
    pub after: u64,
    pub after_answered: u64,
    /// Wrong answers (any query).
    pub wrong: u64,
    pub udp_answered: u64,
    /// From SIGTERM to the process's exit.
    pub exit_after: Duration,
    pub exit_code: Option<i32>,
}

/// Runs `tcp` connections and `udp` sockets querying srvd in loops (one query in flight each),
/// sends SIGTERM once `warm` answers came back, and waits (at most `exit_limit`) for the exit.
pub async fn sigterm_under_load(
    srvd: &mut super::srvd::SrvdProcess,
    tcp: usize,
    udp_loops: usize,
    warm: u64,
    exit_limit: Duration,
) -> ShutdownFigures {
    let addr = srvd.addr;
    let signalled = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..tcp {
        let (signalled, answers) = (signalled.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            let mut figures = ShutdownFigures::default();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return figures;
            };
            for n in 0u16.. {
                let id = (c as u16).wrapping_mul(1000).wrapping_add(n % 1000);
                if stream.write_all(&framed_query(id)).await.is_err() {
                    break;
                }
                // Set before the signal is sent: false here means the query was on the wire first.
                let before = !signalled.load(Ordering::SeqCst);
                // Bounded: an unanswered query ends the loop after the wait.
                let reply = read_reply(&mut stream, Duration::from_secs(10)).await;
                let good = reply.as_ref().is_some_and(|r| {
                    r.metadata.id == id
                        && r.metadata.response_code == ResponseCode::NoError
                        && r.answers.len() == 1
                });
                if reply.is_some() && !good {
                    figures.wrong += 1;
                }
                if before {
                    figures.before += 1;
                    figures.before_answered += u64::from(good);
                } else {
                    figures.after += 1;
                    figures.after_answered += u64::from(good);
                }
                if reply.is_none() {
                    break;
                }
                answers.fetch_add(1, Ordering::Relaxed);
            }
            figures
        }));
    }
    for _ in 0..udp_loops {
        let answers = answers.clone();
        tasks.push(tokio::spawn(async move {
            let mut figures = ShutdownFigures::default();
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            let mut buf = vec![0u8; 2048];
            for n in 0u16.. {
                let framed = framed_query(n);
                if socket.send(&framed[2..]).await.is_err() {
                    break;
                }
                // Silence ends the loop: srvd has stopped.
                let Ok(Ok(len)) =
                    tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
                else {
                    break;
                };
                match Message::from_vec(&buf[..len]) {
                    Ok(r) if r.metadata.id == n && r.answers.len() == 1 => {
                        figures.udp_answered += 1;
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => figures.wrong += 1,
                }
            }
            figures
        }));
    }
    super::eventually(
        Duration::from_secs(30),
        "the query loops are answered",
        || {
            let enough = answers.load(Ordering::Relaxed) >= warm;
            async move { enough.then_some(()) }
        },
    )
    .await;
    signalled.store(true, Ordering::SeqCst);
    let sent = Instant::now();
    srvd.signal("TERM");
    let exit = tokio::task::block_in_place(|| srvd.wait_exit(exit_limit));
    let mut total = ShutdownFigures {
        exit_after: sent.elapsed(),
        exit_code: exit.code(),
        ..ShutdownFigures::default()
    };
    for task in tasks {
        let figures = task.await.unwrap();
        total.before += figures.before;
        total.before_answered += figures.before_answered;
        total.after += figures.after;
        total.after_answered += figures.after_answered;
        total.wrong += figures.wrong;
        total.udp_answered += figures.udp_answered;
    }
    total
}

/// The srvd binary on the shipped zone, with metrics, and `args`.
pub fn shipped(args: &[&str]) -> super::srvd::SrvdProcess {
    let zones = super::shipped_zones();
    let mut all = vec![
        "--zones-dir",
        zones.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    super::srvd::spawn_binary(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), &all)
}

async fn requests_total(srvd: &super::srvd::SrvdProcess) -> u64 {
    let metrics = super::http::addr_in_log(&srvd.log, "metrics");
    let (status, body) = super::http::get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    super::http::sum_samples(&body, "coredns_dns_requests_total") as u64
}

/// Blasts `traffic` at srvd from `senders` sockets for `duration`, prints the figures, and
/// checks what srvd promises of every reply; returns the tally.
pub async fn blast_and_check<T: Traffic>(
    srvd: &super::srvd::SrvdProcess,
    traffic: T,
    senders: usize,
    duration: Duration,
    what: &str,
) -> super::load::Tally {
    use super::load;
    let (counted_before, drops_before) = (requests_total(srvd).await, load::kernel_udp_drops());
    let addr = srvd.addr;
    let tally = tokio::task::spawn_blocking(move || load::blast(addr, traffic, senders, duration))
        .await
        .unwrap();
    let drops = load::kernel_udp_drops() - drops_before;
    let counted = requests_total(srvd).await - counted_before;
    let secs = tally.elapsed.as_secs_f64();
    println!(
        "figure: {what}: {} packets in {secs:.1} s ({:.0}/s) from {senders} sockets; {} replies \
         ({:.0}/s); per class sent {:?} replied {:?}; {} expected a reply, {} got none; srvd \
         counted {counted}; kernel UDP buffer drops (whole namespace) {drops}; reply/request bytes \
         {} / {} (largest ratio {:.2})",
        tally.total_sent(),
        tally.total_sent() as f64 / secs,
        tally.replies.iter().sum::<u64>(),
        tally.replies.iter().sum::<u64>() as f64 / secs,
        tally.sent,
        tally.replies,
        tally.expecting,
        tally.missing(),
        tally.reply_bytes,
        tally.request_bytes,
        tally.largest_ratio,
    );
    assert_eq!(
        tally.wrong, 0,
        "{what}: wrong replies, e.g. {:#?}",
        tally.wrong_examples
    );
    assert!(tally.answered > 0, "{what}: srvd answered");
    // srvd counts what it read: never more than was sent, and it answered everything it read.
    assert!(counted <= tally.expecting, "{what}: {counted} counted");
    // A packet that deserved a reply may go unanswered only if the kernel dropped it (or its
    // reply) for want of buffer space, and the kernel counts each such drop.
    assert!(
        tally.missing() <= drops,
        "{what}: {} replies missing, but the kernel dropped only {drops} datagrams",
        tally.missing()
    );
    tally
}

/// Prints a siege's figures.
pub fn report_siege(what: &str, figures: &SiegeFigures) {
    let waits: Vec<_> = figures.client_waits.iter().flatten().collect();
    println!(
        "figure: {what}: {} idle connected, {} closed by srvd; slowloris: {} connections, {} \
         closed by srvd, {} answered; well-behaved clients answered {}/{} (waits {:?}, longest \
         {:?}); siege took {:.1} s",
        figures.idle_connected,
        figures.idle_closed,
        figures.slowloris_connections,
        figures.slowloris_closed,
        figures.slowloris_answered,
        waits.len(),
        figures.client_waits.len(),
        waits,
        waits.iter().max(),
        figures.elapsed.as_secs_f64(),
    );
}

/// Checks a siege: every well-behaved client answered within [`CLIENT_WAIT`], srvd closed
/// every idle connection, slowloris clients never got an answer and were closed, and srvd
/// logged reaching its bound.
pub fn check_siege(srvd: &mut super::srvd::SrvdProcess, figures: &SiegeFigures, idle: usize) {
    assert_eq!(
        figures.client_waits.iter().flatten().count(),
        figures.client_waits.len(),
        "every well-behaved client is answered within {CLIENT_WAIT:?}: {figures:?}"
    );
    assert_eq!(figures.idle_connected, idle, "{figures:?}");
    assert_eq!(
        figures.idle_closed, figures.idle_connected,
        "srvd closes every idle connection: {figures:?}"
    );
    assert_eq!(figures.slowloris_answered, 0, "{figures:?}");
    assert!(figures.slowloris_closed > 0, "{figures:?}");
    srvd.log_until(Duration::from_secs(5), |log| {
        log.iter()
            .any(|l| l.contains("tcp connection limit reached"))
    });
}

/// Prints a SIGTERM-under-load run's figures and checks it: exit 0, no wrong answer, and every
/// TCP query sent before the signal answered.
pub fn report_and_check_sigterm(what: &str, figures: &ShutdownFigures) {
    println!(
        "figure: {what}: exit {:?} {:.3} s after SIGTERM; tcp queries sent before it {} \
         (answered {}), after {} (answered {}); udp answered {}",
        figures.exit_code,
        figures.exit_after.as_secs_f64(),
        figures.before,
        figures.before_answered,
        figures.after,
        figures.after_answered,
        figures.udp_answered,
    );
    assert_eq!(figures.exit_code, Some(0), "{figures:?}");
    assert_eq!(figures.wrong, 0, "{figures:?}");
    assert!(figures.before > 0, "{figures:?}");
    assert_eq!(
        figures.before_answered, figures.before,
        "every TCP query sent before SIGTERM is answered: {figures:?}"
    );
}
