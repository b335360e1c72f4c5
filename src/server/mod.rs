//! The listeners: UDP receive loops and TCP accept loops over already-bound sockets.
//!
//! ```text
//! UdpSocket ─ recv ─► Handler::respond ─► send_to    (inline, one loop per runtime worker)
//! TcpListener ─ accept (≤ max connections; under pressure close the quietest) ─►
//!     connection task: [len][msg] … ─► respond ─► write
//! ```
//! Why own loops rather than hickory-server's `Server`: it has no cap on concurrent TCP
//! connections, spawns a task per UDP datagram and logs at `info` per query; srvd needs the cap,
//! and the query path must stay cheap and quiet. The handler is the same for both transports.
//!
//! Each UDP socket is read by as many receive loops as the runtime has worker threads, so one
//! costly question occupies one loop while the others keep answering (and both cores serve).
//! At the TCP bound, `pressure` picks a connection to close and throttles the warnings.
//!
//! Shutdown ([`CancellationToken`]): loops stop receiving and accepting (listeners are dropped, so
//! new connections are refused); a TCP connection that has started reading a query finishes it and
//! writes the answer, then closes. A reload stops one address's loops the same way after new
//! loops already serve its kept [`Sockets`], so no datagram and no connection finds no reader.

pub mod handler;
pub mod pressure;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use self::handler::{Handler, Scratch};
use self::pressure::{Connection, ConnectionTable, THROTTLE_PERIOD, Throttle};
use self::wire::Transport;

/// On shutdown, how long an idle TCP connection may still deliver a query that was already sent.
const SHUTDOWN_READ_GRACE: Duration = Duration::from_millis(100);

/// Limits on TCP clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// A connection with no complete query for this long is closed (RFC 7766 §6.2.3 suggests
    /// seconds, not minutes).
    pub idle_timeout: Duration,
    /// At most this many connections are open at once.
    pub max_connections: usize,
    /// At the bound, a new connection closes the connection that has made no progress for the
    /// longest time, if that is at least this long; otherwise the new one is closed at once.
    pub close_idle_after: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_connections: 512,
            close_idle_after: Duration::from_secs(1),
        }
    }
}

/// How long the accept loop waits for the slot of a connection it closed under pressure.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The sockets of one listen address (UDP and TCP on the same port). They outlive the loops
/// serving them: a reload gives an address that stays new loops on the same sockets, so there is
/// no moment without a socket and no race to bind the port again.
#[derive(Debug, Clone)]
pub struct Sockets {
    /// The bound address (the configured one, with port 0 resolved).
    pub addr: SocketAddr,
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpListener>,
}

impl Sockets {
    /// A handle that does not keep the sockets open: the loops serving them do, so a shutdown
    /// closes them without waiting for whoever keeps this.
    pub fn downgrade(&self) -> WeakSockets {
        WeakSockets {
            addr: self.addr,
            udp: Arc::downgrade(&self.udp),
            tcp: Arc::downgrade(&self.tcp),
        }
    }
}

/// [`Sockets`] that are open only while some loop serves them.
#[derive(Debug, Clone)]
pub struct WeakSockets {
    /// The bound address.
    pub addr: SocketAddr,
    udp: std::sync::Weak<UdpSocket>,
    tcp: std::sync::Weak<TcpListener>,
}

impl WeakSockets {
    /// The sockets, while loops still serve them.
    pub fn upgrade(&self) -> Option<Sockets> {
        Some(Sockets {
            addr: self.addr,
            udp: self.udp.upgrade()?,
            tcp: self.tcp.upgrade()?,
        })
    }
}

/// The serving loops of every listen address, and what their TCP connections share. Each
/// address's loops are started and stopped on their own ([`Server::serve`]).
#[derive(Debug)]
pub struct Server {
    limits: TcpLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    tcp: Arc<TcpShared>,
}

impl Server {
    /// No loops yet; `shutdown` stops every loop the server ever starts.
    pub fn new(limits: TcpLimits, shutdown: CancellationToken) -> Self {
        Self {
            limits,
            shutdown,
            tracker: TaskTracker::new(),
            tcp: Arc::new(TcpShared {
                slots: Arc::new(Semaphore::new(limits.max_connections)),
                connections: ConnectionTable::default(),
                refused: Throttle::new(THROTTLE_PERIOD),
                closed_idle: Throttle::new(THROTTLE_PERIOD),
                accept_errors: Throttle::new(THROTTLE_PERIOD),
            }),
        }
    }

    /// Starts serving `sockets` with `handler`: as many UDP receive loops as the runtime has
    /// workers, and one TCP accept loop. Cancelling the returned token stops just these loops
    /// (TCP connections they accepted finish the query in flight, then close); the sockets close
    /// when the last loop holding them ends, unless the caller keeps them for new loops.
    pub fn serve(&self, sockets: &Sockets, handler: &Handler) -> CancellationToken {
        let stop = self.shutdown.child_token();
        let loops_per_socket = tokio::runtime::Handle::current().metrics().num_workers();
        for _ in 0..loops_per_socket.max(1) {
            // Each loop owns its counters: the query path never shares a cache line.
            let scratch = handler.scratch(Transport::Udp, false);
            self.tracker.spawn(serve_udp(
                sockets.udp.clone(),
                handler.clone(),
                scratch,
                stop.clone(),
            ));
        }
        // One listener's connections share its counters (atomic adds: TCP is the rare path).
        let scratch = handler.scratch(Transport::Tcp, true);
        self.tracker.spawn(serve_tcp(
            sockets.tcp.clone(),
            handler.clone(),
            scratch,
            self.limits,
            self.tcp.clone(),
            self.tracker.clone(),
            stop.clone(),
        ));
        stop
    }

    /// Waits, after `shutdown` was cancelled, until every loop and connection has finished.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    handler: Handler,
    mut scratch: Scratch,
    shutdown: CancellationToken,
) {
    // 4096 covers any query a client sends over UDP; a longer datagram is cut by the kernel and
    // then fails to decode (FORMERR), which is the right answer for it.
    let mut request = vec![0u8; 4096];
    let mut response = Vec::with_capacity(usize::from(wire::MAX_UDP_PAYLOAD));
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut request) => match received {
                Ok(received) => received,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep serving.
                    debug!(%error, "udp receive error");
                    continue;
                }
            },
        };
        if handler.respond(
            &request[..len],
            Transport::Udp,
            peer,
            &mut scratch,
            &mut response,
        ) && let Err(error) = socket.send_to(&response, peer).await
        {
            debug!(%error, %peer, "udp send error");
        }
    }
}

/// What every TCP listener of one server shares: the connection bound and its bookkeeping.
#[derive(Debug)]
struct TcpShared {
    slots: Arc<Semaphore>,
    connections: ConnectionTable,
    refused: Throttle,
    closed_idle: Throttle,
    accept_errors: Throttle,
}

async fn serve_tcp(
    listener: Arc<TcpListener>,
    handler: Handler,
    scratch: Scratch,
    limits: TcpLimits,
    tcp: Arc<TcpShared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    if let Some(count) = tcp.accept_errors.hit() {
                        warn!(%error, count, "tcp accept error");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = slot(&tcp, limits).await else {
            if let Some(count) = tcp.refused.hit() {
                warn!(
                    limit = limits.max_connections,
                    refused = count,
                    "tcp connection limit reached and every connection is active; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let connection = tcp.connections.add();
        let handler = handler.clone();
        let scratch = Handler::scratch_like(&scratch);
        let shutdown = shutdown.clone();
        let tcp = tcp.clone();
        tracker.spawn(async move {
            tokio::select! {
                result = serve_connection(stream, peer, &handler, scratch, limits, &shutdown, &tcp.connections, &connection) => {
                    if let Err(error) = result {
                        debug!(%error, %peer, "tcp connection ended");
                    }
                }
                () = connection.closed() => debug!(%peer, "tcp connection closed to make room"),
            }
            tcp.connections.remove(&connection);
            drop(permit);
        });
    }
}

/// A connection slot: a free one, or the slot of the quietest connection, closed to make room.
async fn slot(tcp: &TcpShared, limits: TcpLimits) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = tcp.slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !tcp.connections.close_oldest_idle(limits.close_idle_after) {
        return None;
    }
    if let Some(count) = tcp.closed_idle.hit() {
        warn!(
            limit = limits.max_connections,
            closed = count,
            "tcp connection limit reached; closing the connections idle the longest to make room"
        );
    }
    // The closed connection's task ends at its next await point and frees its slot.
    timeout(SLOT_WAIT, tcp.slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Serves queries on one connection, one at a time, until EOF, idle timeout or shutdown.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    mut scratch: Scratch,
    limits: TcpLimits,
    shutdown: &CancellationToken,
    connections: &ConnectionTable,
    connection: &Connection,
) -> io::Result<()> {
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut framed = Vec::new();
    loop {
        // Between queries shutdown wins; once the first byte of a query arrived, it is in flight
        // and gets its answer (bounded by the idle timeout).
        // Bytes already received win over shutdown (`biased`, read first). The reactor may learn
        // of them only after the shutdown wake-up, so on shutdown a query that has reached the
        // socket still gets a short, bounded chance to be read.
        let mut first = [0u8; 1];
        let n = tokio::select! {
            biased;
            read = timeout(limits.idle_timeout, stream.read(&mut first)) => match read {
                Ok(read) => read?,
                Err(_) => return Ok(()),
            },
            () = shutdown.cancelled() => {
                match timeout(SHUTDOWN_READ_GRACE, stream.read(&mut first)).await {
                    Ok(read) => read?,
                    Err(_) => return Ok(()),
                }
            }
        };
        if n == 0 {
            return Ok(());
        }
        let mut second = [0u8; 1];
        read_in_time(&mut stream, &mut second, limits.idle_timeout).await?;
        let len = usize::from(u16::from_be_bytes([first[0], second[0]]));
        request.resize(len, 0);
        read_in_time(&mut stream, &mut request, limits.idle_timeout).await?;
        connections.progress(connection);

        if !handler.respond(&request, Transport::Tcp, peer, &mut scratch, &mut response) {
            // Nothing to say to garbage on a stream: close it.
            return Ok(());
        }
        framed.clear();
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        timeout(limits.idle_timeout, stream.write_all(&framed))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
        connections.progress(connection);
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

async fn read_in_time(stream: &mut TcpStream, buf: &mut [u8], limit: Duration) -> io::Result<()> {
    timeout(limit, stream.read_exact(buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))?
        .map(|_| ())
}

/// Binds UDP and TCP on `addr`. With port 0, both get the same free port. `[::]` (a Corefile
/// block without `bind`) means every interface, IPv4 included, as CoreDNS listens: the sockets
/// are dual-stack, or IPv4 only (`0.0.0.0`) on a host without IPv6.
///
/// # Errors
/// The bind error, when the address is taken or not local.
pub async fn bind(addr: SocketAddr) -> io::Result<Sockets> {
    if addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        match bind_pair(addr, true) {
            Err(error) if no_ipv6(&error) => {
                let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                tracing::info!(%addr, %error, "no IPv6 on this host; listening on {v4}");
                bind_pair(v4, false)
            }
            other => other,
        }
    } else {
        bind_pair(addr, false)
    }
}

/// A TCP listener on `addr` for HTTP, where `[::]` means every interface as in [`bind`].
///
/// # Errors
/// The bind error, when the address is taken or not local.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = if addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        match tcp_socket(addr, true) {
            Err(error) if no_ipv6(&error) => {
                tcp_socket(SocketAddr::from(([0, 0, 0, 0], addr.port())), false)?
            }
            other => other?,
        }
    } else {
        tcp_socket(addr, false)?
    };
    TcpListener::from_std(listener)
}

/// Whether `error` says the host has no IPv6 (rather than that the port is taken).
pub fn no_ipv6(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrNotAvailable || error.raw_os_error() == Some(97) // EAFNOSUPPORT
}

fn bind_pair(addr: SocketAddr, dual_stack: bool) -> io::Result<Sockets> {
    let sockets = |udp: std::net::UdpSocket, tcp: std::net::TcpListener| -> io::Result<Sockets> {
        let tcp = TcpListener::from_std(tcp)?;
        Ok(Sockets {
            addr: tcp.local_addr()?,
            udp: Arc::new(UdpSocket::from_std(udp)?),
            tcp: Arc::new(tcp),
        })
    };
    if addr.port() != 0 {
        let tcp = tcp_socket(addr, dual_stack)?;
        let udp = udp_socket(addr, dual_stack)?;
        return sockets(udp, tcp);
    }
    let mut last_error = None;
    for _ in 0..16 {
        let tcp = tcp_socket(addr, dual_stack)?;
        let bound = tcp.local_addr()?;
        match udp_socket(bound, dual_stack) {
            Ok(udp) => return sockets(udp, tcp),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

/// A non-blocking socket of `kind` for `addr`, IPV6_V6ONLY off when `dual_stack`.
fn socket(addr: SocketAddr, kind: socket2::Type, dual_stack: bool) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// As `std::net::TcpListener::bind` does (SO_REUSEADDR, so a restart does not wait out
/// TIME_WAIT), with tokio's backlog.
fn tcp_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket(addr, socket2::Type::STREAM, dual_stack)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn udp_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::UdpSocket> {
    let socket = socket(addr, socket2::Type::DGRAM, dual_stack)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
