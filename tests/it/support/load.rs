//! Hostile traffic at full rate over real UDP sockets, and the figures to judge it by.
//!
//! Every packet is a pure function of its message ID ([`Traffic::packet`]), so a reply is
//! judged without any table of what is in flight: its ID says what was asked (and how large the
//! question was), however late it arrives and however often the 16-bit IDs wrap.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one kind of traffic sends and how a reply to it is judged.
pub trait Traffic: Send + Sync + 'static {
    /// How many classes [`Traffic::class`] returns (for the per-class counts).
    const CLASSES: usize;
    /// The class of the packet with ID `id` (0..CLASSES).
    fn class(&self, id: u16) -> usize;
    /// Writes the packet with ID `id` into `out` (cleared first).
    fn packet(&self, id: u16, out: &mut Vec<u8>);
    /// Whether srvd must reply to the packet with ID `id` (false: it must stay silent).
    fn expects_reply(&self, id: u16) -> bool;
    /// Judges `reply` to the packet `request` (ID `id`); `Err` says what is wrong with it.
    fn judge(&self, id: u16, request: &[u8], reply: &[u8]) -> Result<(), String>;
}

/// What one blast sent and got back, per class.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: Vec<u64>,
    pub replies: Vec<u64>,
    /// Packets sent that must be answered (by [`Traffic::expects_reply`]).
    pub expecting: u64,
    /// Replies to packets that expected one.
    pub answered: u64,
    /// Replies that were wrong, or came to a packet that must get none (first few kept).
    pub wrong: u64,
    pub wrong_examples: Vec<String>,
    /// Bytes of every request that got a reply, and of those replies.
    pub request_bytes: u64,
    pub reply_bytes: u64,
    pub largest_ratio: f64,
    pub elapsed: Duration,
}

impl Tally {
    fn new(classes: usize) -> Self {
        Self {
            sent: vec![0; classes],
            replies: vec![0; classes],
            ..Self::default()
        }
    }

    fn add(&mut self, other: &Self) {
        for (a, b) in self.sent.iter_mut().zip(&other.sent) {
            *a += b;
        }
        for (a, b) in self.replies.iter_mut().zip(&other.replies) {
            *a += b;
        }
        self.expecting += other.expecting;
        self.answered += other.answered;
        self.wrong += other.wrong;
        self.request_bytes += other.request_bytes;
        self.reply_bytes += other.reply_bytes;
        self.largest_ratio = self.largest_ratio.max(other.largest_ratio);
        for example in &other.wrong_examples {
            if self.wrong_examples.len() < 10 {
                self.wrong_examples.push(example.clone());
            }
        }
    }

    /// Every packet sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Packets that expected a reply and got none.
    pub fn missing(&self) -> u64 {
        self.expecting - self.answered
    }
}

/// After the last send, a receiver stops at the first quiet spell this long. Generous: on a
/// loaded machine srvd may not run for a while, and a reply to a closed socket is lost uncounted.
const DRAIN: Duration = Duration::from_secs(2);

/// Sends `traffic` to `addr` from `senders` sockets (a sending and a receiving thread each), as
/// fast as the sockets take it, for `duration`; then waits for stragglers and tallies.
pub fn blast<T: Traffic>(
    addr: SocketAddr,
    traffic: T,
    senders: usize,
    duration: Duration,
) -> Tally {
    let traffic = Arc::new(traffic);
    let start = Instant::now();
    let mut threads = Vec::new();
    for sender in 0..senders {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        // Replies wait in the kernel rather than being dropped while the receiver is busy.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        socket.set_read_timeout(Some(DRAIN)).unwrap();
        let receiving = socket.try_clone().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::new(T::CLASSES)));
        let receiver = {
            let (traffic, done, tally) = (traffic.clone(), done.clone(), tally.clone());
            std::thread::spawn(move || receive(&receiving, &*traffic, &done, &tally))
        };
        let traffic = traffic.clone();
        threads.push(std::thread::spawn(move || {
            // Each sender starts at its own ID, so the senders do not ask in lockstep.
            let mut id = (sender as u16).wrapping_mul(7919);
            let mut packet = Vec::with_capacity(512);
            let (mut sent, mut expecting) = (vec![0u64; T::CLASSES], 0u64);
            while start.elapsed() < duration {
                for _ in 0..64 {
                    traffic.packet(id, &mut packet);
                    // A full send buffer blocks; a refused send (nothing listening) is a failure.
                    socket.send(&packet).expect("udp send");
                    sent[traffic.class(id)] += 1;
                    expecting += u64::from(traffic.expects_reply(id));
                    id = id.wrapping_add(1);
                }
            }
            done.store(true, Ordering::Release);
            receiver.join().unwrap();
            let mut tally = tally.lock().unwrap().clone();
            tally.sent = sent;
            tally.expecting = expecting;
            tally
        }));
    }
    let mut total = Tally::new(T::CLASSES);
    for thread in threads {
        total.add(&thread.join().unwrap());
    }
    total.elapsed = start.elapsed();
    total
}

fn receive<T: Traffic>(socket: &UdpSocket, traffic: &T, done: &AtomicBool, tally: &Mutex<Tally>) {
    let mut buf = vec![0u8; 65535];
    let mut request = Vec::with_capacity(512);
    let mut local = Tally::new(T::CLASSES);
    // Bounded: after the senders stop, the first quiet DRAIN ends it.
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) if done.load(Ordering::Acquire) => break,
            Err(_) => continue,
        };
        let reply = &buf[..n];
        if n < 2 {
            local.wrong += 1;
            keep(&mut local, format!("a {n}-byte reply"));
            continue;
        }
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        traffic.packet(id, &mut request);
        local.replies[traffic.class(id)] += 1;
        local.request_bytes += request.len() as u64;
        local.reply_bytes += n as u64;
        local.largest_ratio = local.largest_ratio.max(n as f64 / request.len() as f64);
        let verdict = if traffic.expects_reply(id) {
            local.answered += 1;
            traffic.judge(id, &request, reply)
        } else {
            Err("a reply where srvd must stay silent".to_string())
        };
        if let Err(why) = verdict {
            local.wrong += 1;
            keep(
                &mut local,
                format!("id {id} class {}: {why}", traffic.class(id)),
            );
        }
    }
    *tally.lock().unwrap() = local;

    fn keep(tally: &mut Tally, example: String) {
        if tally.wrong_examples.len() < 10 {
            tally.wrong_examples.push(example);
        }
    }
}

/// The kernel's count of UDP datagrams dropped for want of buffer space (received and sent),
/// in this network namespace: every loss on loopback shows up here.
pub fn kernel_udp_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp is readable");
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| matches!(*name, "RcvbufErrors" | "SndbufErrors"))
        .map(|(_, value)| value.parse::<u64>().unwrap())
        .sum()
}

/// Raises this process's soft limit on open files to its hard limit (thousands of client
/// connections need it); returns the limit now in force.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).expect("raise RLIMIT_NOFILE to the hard limit");
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
