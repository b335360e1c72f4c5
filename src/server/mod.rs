//! The listeners: UDP receive threads and TCP accept loops over already-bound sockets.
//!
//! ```text
//! UdpSocket ×cores (SO_REUSEPORT) ─ recvmmsg ─► Handler::respond ×n ─► sendmmsg  (a thread each)
//! TcpListener ─ accept (≤ max connections; under pressure close the quietest) ─►
//!     connection task: [len][msg] … ─► respond ─► write
//!     DoT: the same task, TLS handshake first (bounded), then the same loop; padded answers
//!     DoH: the same task, TLS handshake first, then hyper (`doh`) ─► respond ─► padded answer
//! ```
//! Why own loops rather than hickory-server's `Server`: it has no cap on concurrent TCP
//! connections, spawns a task per UDP datagram and logs at `info` per query; srvd needs the cap,
//! and the query path must stay cheap and quiet. The handler is the same for every transport.
//!
//! DNS over TLS and over HTTPS are accepted by the same accept loop as TCP and hold a slot of
//! the same connection bound from `accept` on, handshake included (a client that never
//! finishes its handshake is the quietest connection, closed first under pressure, and is
//! dropped after the idle timeout anyway). A failed handshake is logged at `debug` only: the
//! network decides how often it happens.
//!
//! UDP: one socket per core this process may use, all on the port (SO_REUSEPORT: the kernel
//! spreads clients over them), each read by its own blocking thread that answers inline, up to
//! 32 queries per system call each way. No
//! async runtime on this path (a readiness poll and a wake-up per datagram cost more than a
//! cached answer), and no two threads contend for one queue; a costly question holds one thread
//! while the others keep answering. Each socket asks for a 4 MiB receive buffer
//! ([`UDP_RECEIVE_BUFFER`], past net.core.rmem_max when privileged), so a burst waits in the
//! kernel instead of being dropped. At the TCP bound, `pressure` picks a connection to close and
//! throttles the warnings.
//!
//! Shutdown ([`CancellationToken`]): loops stop receiving and accepting (listeners are dropped, so
//! new connections are refused; an idle UDP thread notices within 100 ms); a TCP connection that
//! has started reading a query finishes it and writes the answer, then closes. A reload that
//! changes what an address serves stores a new handler in its [`HandlerSlot`]: the same loops
//! on the same sockets take it before their next query, so no datagram finds no reader.

mod doh;
pub mod handler;
pub mod prepared;
pub mod pressure;
pub mod tls;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// The sockets of one listen address (UDP and TCP on the same port), bound before anything is
/// served and then owned by the loops serving them: an address that stays across a reload keeps
/// them, so there is no moment without a socket and no race to bind the port again.
#[derive(Debug, Clone)]
pub struct Sockets {
    /// The bound address (the configured one, with port 0 resolved).
    pub addr: SocketAddr,
    /// One per receive thread, on the same port (SO_REUSEPORT: the kernel spreads clients over
    /// them, so no two threads contend for one socket's queue).
    udp: Vec<Arc<std::net::UdpSocket>>,
    tcp: Arc<TcpListener>,
}

/// The handler an address answers with now. A reload that changes what the address serves
/// stores a new one; every loop of the address takes it before its next query (a generation
/// number says when: one relaxed load per query, no reference count touched).
#[derive(Debug)]
pub struct HandlerSlot {
    generation: std::sync::atomic::AtomicU64,
    handler: arc_swap::ArcSwap<Handler>,
}

/// A loop's copy of the slot's handler, with the loop's buffers and counters for it.
struct Current {
    generation: u64,
    handler: Arc<Handler>,
    scratch: Scratch,
}

impl HandlerSlot {
    /// A slot holding `handler`.
    pub fn new(handler: Handler) -> Self {
        Self {
            generation: std::sync::atomic::AtomicU64::new(0),
            handler: arc_swap::ArcSwap::from_pointee(handler),
        }
    }

    /// Answers with `handler` from every loop's next query on.
    pub fn set(&self, handler: Handler) {
        self.handler.store(Arc::new(handler));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    fn current(&self, transport: Transport, shared: bool) -> Current {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let handler = self.handler.load_full();
        Current {
            generation,
            scratch: handler.scratch(transport, shared),
            handler,
        }
    }

    /// Takes the newest handler (and new counters for it) when the slot changed.
    #[inline]
    fn refresh(&self, current: &mut Current, transport: Transport, shared: bool) {
        if self.generation.load(std::sync::atomic::Ordering::Acquire) != current.generation {
            *current = self.current(transport, shared);
        }
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

    /// Starts serving `sockets` with the handler in `handler` (whatever it holds at each query):
    /// a receive thread per UDP socket, and one TCP accept loop. Cancelling the returned token
    /// stops just these loops (TCP connections they accepted finish the query in flight, then
    /// close); the sockets close when the last loop ends.
    pub fn serve(&self, sockets: &Sockets, handler: &Arc<HandlerSlot>) -> CancellationToken {
        let stop = self.shutdown.child_token();
        for (i, socket) in sockets.udp.iter().enumerate() {
            let (socket, handler, loop_stop) = (socket.clone(), handler.clone(), stop.clone());
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("srvd-udp-{i}"))
                .spawn(move || {
                    serve_udp(&socket, &handler, &loop_stop);
                    drop(done);
                });
            match spawned {
                // `wait` covers the thread: its end resolves `finished`.
                Ok(_) => {
                    self.tracker.spawn(async move {
                        let _ = finished.await;
                    });
                }
                Err(error) => warn!(%error, "cannot start a UDP receive thread"),
            }
        }
        self.tracker.spawn(serve_tcp(
            sockets.tcp.clone(),
            handler.clone(),
            self.limits,
            self.tcp.clone(),
            self.tracker.clone(),
            stop.clone(),
            None,
        ));
        stop
    }

    /// Starts serving DNS over TLS or HTTPS (`transport`) on `listener` with `config`'s
    /// certificate, under the same connection bound, idle timeout and shutdown rules as TCP.
    /// Cancelling the returned token stops this listener alone.
    pub fn serve_encrypted(
        &self,
        listener: Arc<TcpListener>,
        handler: &Arc<HandlerSlot>,
        transport: tls::Encrypted,
        config: Arc<rustls::ServerConfig>,
    ) -> CancellationToken {
        let stop = self.shutdown.child_token();
        self.tracker.spawn(serve_tcp(
            listener,
            handler.clone(),
            self.limits,
            self.tcp.clone(),
            self.tracker.clone(),
            stop.clone(),
            Some((transport, tokio_rustls::TlsAcceptor::from(config))),
        ));
        stop
    }

    /// Waits, after `shutdown` was cancelled, until every loop and connection has finished.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// How often an idle receive thread looks at its stop token.
const UDP_STOP_CHECK: Duration = Duration::from_millis(100);

/// Queries a receive thread takes per system call, and answers it sends per call.
const UDP_BATCH: usize = 32;

/// One receive thread: a blocking loop on its own socket, answering inline, a batch at a time
/// (recvmmsg takes every query already queued, up to [`UDP_BATCH`], waiting only for the first;
/// sendmmsg sends their answers). No async runtime on this path: a readiness poll and a task
/// wake-up per datagram cost more than the answer.
fn serve_udp(socket: &std::net::UdpSocket, slot: &HandlerSlot, stop: &CancellationToken) {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

    // Each loop owns its counters: the query path never shares a cache line.
    let mut current = slot.current(Transport::Udp, false);
    // 4096 covers any query a client sends over UDP; a longer datagram is cut by the kernel and
    // then fails to decode (FORMERR), which is the right answer for it.
    let mut requests: Box<[[u8; 4096]; UDP_BATCH]> = Box::new([[0u8; 4096]; UDP_BATCH]);
    let mut responses: Vec<Vec<u8>> = (0..UDP_BATCH)
        .map(|_| Vec::with_capacity(usize::from(wire::MAX_UDP_PAYLOAD)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut received: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(UDP_BATCH);
    let mut answered: Vec<(usize, rustix::net::SocketAddrAny)> = Vec::with_capacity(UDP_BATCH);
    // Queries already received are answered; then the stop token wins.
    while !stop.is_cancelled() {
        received.clear();
        {
            // On the stack: nothing is allocated per system call.
            let mut buffers = requests.each_mut().map(|b| [IoSliceMut::new(b)]);
            match recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                buffers.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(messages) => received
                    .extend(messages.map(|m| (m.bytes, m.address.as_ref().and_then(socket_addr)))),
                // The read timeout (to look at the stop token) or a signal.
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep serving.
                    debug!(%error, "udp receive error");
                    continue;
                }
            }
        }
        slot.refresh(&mut current, Transport::Udp, false);
        answered.clear();
        for (i, (len, peer)) in received.iter().enumerate() {
            let Some(peer) = *peer else { continue };
            if current.handler.respond(
                &requests[i][..*len],
                Transport::Udp,
                peer,
                &mut current.scratch,
                &mut responses[i],
            ) {
                answered.push((i, rustix::net::SocketAddrAny::from(peer)));
            }
        }
        send_all(socket, &responses, &answered);
    }

    fn send_all(
        socket: &std::net::UdpSocket,
        responses: &[Vec<u8>],
        answered: &[(usize, rustix::net::SocketAddrAny)],
    ) {
        let slices: Vec<[IoSlice<'_>; 1]> = answered
            .iter()
            .map(|(i, _)| [IoSlice::new(&responses[*i])])
            .collect();
        let mut controls: Vec<rustix::net::SendAncillaryBuffer<'_, '_, '_>> =
            answered.iter().map(|_| Default::default()).collect();
        let mut messages: Vec<rustix::net::MMsgHdr<'_>> = answered
            .iter()
            .zip(&slices)
            .zip(controls.iter_mut())
            .map(|(((_, peer), slice), control)| {
                rustix::net::MMsgHdr::new_with_addr(peer, slice, control)
            })
            .collect();
        let mut start = 0;
        while start < messages.len() {
            match rustix::net::sendmmsg(
                socket,
                &mut messages[start..],
                rustix::net::SendFlags::empty(),
            ) {
                Ok(0) => break,
                Ok(sent) => start += sent,
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => {
                    // This answer cannot go (its client vanished); the rest still can.
                    debug!(%error, peer = ?answered[start].1, "udp send error");
                    start += 1;
                }
            }
        }
    }
}

/// The std address of a peer (IPv4 or IPv6; other families are not ours to answer).
fn socket_addr(address: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
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

/// The accept loop of one TCP listener; with `tls`, each connection is DNS over TLS or HTTPS.
async fn serve_tcp(
    listener: Arc<TcpListener>,
    handlers: Arc<HandlerSlot>,
    limits: TcpLimits,
    tcp: Arc<TcpShared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    tls: Option<(tls::Encrypted, tokio_rustls::TlsAcceptor)>,
) {
    let mut listener_current = handlers.current(Transport::Tcp, true);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors before the bound (a soft limit below it): the
                    // pressure rule makes room as it does at the bound; the connection that
                    // could not be accepted waits in the backlog meanwhile.
                    if out_of_files(&error)
                        && let Some(closed) = tcp.connections.close_oldest_idle(limits.close_idle_after)
                    {
                        if let Some(count) = tcp.closed_idle.hit() {
                            warn!(
                                %error,
                                closed = count,
                                "out of file descriptors; closing the tcp connections idle the longest to make room"
                            );
                        }
                        let _ = timeout(SLOT_WAIT, closed.ended()).await;
                        continue;
                    }
                    // Otherwise back off briefly instead of spinning.
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
        // One listener's connections share its counters (atomic adds: TCP is the rare path).
        handlers.refresh(&mut listener_current, Transport::Tcp, true);
        let current = Current {
            generation: listener_current.generation,
            handler: listener_current.handler.clone(),
            scratch: Handler::scratch_like(&listener_current.scratch),
        };
        let handlers = handlers.clone();
        let shutdown = shutdown.clone();
        let tcp = tcp.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            // The first query's deadline runs from the accept: a DoT client that dawdles through
            // its handshake gets no fresh idle timeout for the query after it.
            let first_deadline = tokio::time::Instant::now() + limits.idle_timeout;
            let served = async {
                let Some((transport, acceptor)) = tls else {
                    return serve_connection(stream, peer, &handlers, current, limits, first_deadline, &shutdown, &tcp.connections, &connection, false)
                        .await
                        .map_err(|e| e.to_string());
                };
                // The handshake holds the slot, so it is bounded like a query, within the same
                // deadline as the first query.
                let stream = tokio::select! {
                    biased;
                    handshake = tokio::time::timeout_at(first_deadline, acceptor.accept(stream)) => match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => return Err(format!("tls handshake failed: {error}")),
                        Err(_) => return Err("tls handshake timed out".into()),
                    },
                    () = shutdown.cancelled() => return Ok(()),
                };
                tcp.connections.progress(&connection);
                match transport {
                    tls::Encrypted::Tls => serve_connection(stream, peer, &handlers, current, limits, first_deadline, &shutdown, &tcp.connections, &connection, true)
                        .await
                        .map_err(|e| e.to_string()),
                    tls::Encrypted::Https => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        doh::serve(stream, h2, peer, handlers.clone(), current, limits, &shutdown, tcp.clone(), connection.clone())
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            };
            tokio::select! {
                result = served => {
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

/// Whether an accept failed for want of file descriptors (this process's or the system's).
fn out_of_files(error: &io::Error) -> bool {
    let code = error.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Descriptors srvd needs besides its TCP connections: listeners, UDP sockets, etcd and HTTP
/// connections, files read at a reload.
const RESERVED_FILES: u64 = 64;

/// Raises the soft limit on open files to the hard one, as every Go program (CoreDNS among
/// them) does at start: the usual soft limit, 1024, is below what a bound of thousands of TCP
/// connections needs. Warns when the limit in force cannot hold `max_connections`; past it
/// the accept loop closes the quietest connection as it does at the bound. A process-wide
/// change, so the daemon makes it at start, not `Server::new` (a library call).
pub(crate) fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let soft = limit.current;
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            debug!(%error, ?soft, "cannot raise the soft limit on open files");
        }
    }
    let open_files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = (max_connections as u64).saturating_add(RESERVED_FILES);
    if open_files < needed {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            warn!(
                open_files,
                max_connections,
                "the open files limit (RLIMIT_NOFILE) is below the tcp connection bound; out of descriptors, the tcp connections idle the longest are closed to make room"
            );
        });
    }
}

/// A connection slot: a free one, or the slot of the quietest connection, closed to make room.
async fn slot(tcp: &TcpShared, limits: TcpLimits) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = tcp.slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    tcp.connections.close_oldest_idle(limits.close_idle_after)?;
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
/// The first query must be whole by `first_deadline` (set at the accept), each later one within
/// the idle timeout of the answer before it. `encrypted` (DNS over TLS): answers are padded
/// when the query asks (RFC 7830).
#[allow(clippy::too_many_arguments)]
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    handlers: &HandlerSlot,
    mut current: Current,
    limits: TcpLimits,
    first_deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
    connections: &ConnectionTable,
    connection: &Connection,
    encrypted: bool,
) -> io::Result<()> {
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut framed = Vec::new();
    let mut next_deadline = Some(first_deadline);
    loop {
        // Between queries shutdown wins; once the first byte of a query arrived, it is in flight
        // and gets its answer (bounded by the idle timeout).
        // Bytes already received win over shutdown (`biased`, read first). The reactor may learn
        // of them only after the shutdown wake-up, so on shutdown a query that has reached the
        // socket still gets a short, bounded chance to be read.
        // One deadline for the whole query, from the last answer (or the accept): a slowloris
        // trickling a byte now and then gets no fresh timeout per part of it.
        let deadline = next_deadline
            .take()
            .unwrap_or_else(|| tokio::time::Instant::now() + limits.idle_timeout);
        let mut first = [0u8; 1];
        let n = tokio::select! {
            biased;
            read = tokio::time::timeout_at(deadline, stream.read(&mut first)) => match read {
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
        read_by(&mut stream, &mut second, deadline).await?;
        let len = usize::from(u16::from_be_bytes([first[0], second[0]]));
        request.resize(len, 0);
        read_by(&mut stream, &mut request, deadline).await?;
        connections.progress(connection);

        handlers.refresh(&mut current, Transport::Tcp, true);
        let (handler, scratch) = (&current.handler, &mut current.scratch);
        if !handler.respond(&request, Transport::Tcp, peer, scratch, &mut response) {
            // Nothing to say to garbage on a stream: close it.
            return Ok(());
        }
        if encrypted {
            tls::pad(&request, &mut response);
        }
        framed.clear();
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        // A TLS stream holds what it encrypted until flushed (a no-op on plain TCP).
        let written = async {
            stream.write_all(&framed).await?;
            stream.flush().await
        };
        timeout(limits.idle_timeout, written)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
        connections.progress(connection);
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

async fn read_by<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    tokio::time::timeout_at(deadline, stream.read_exact(buf))
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
pub fn bind(addr: SocketAddr) -> io::Result<Sockets> {
    on_every_interface(addr, bind_pair)
}

/// A TCP listener on `addr` for HTTP, where `[::]` means every interface as in [`bind`].
///
/// # Errors
/// The bind error, when the address is taken or not local.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(on_every_interface(addr, tcp_socket)?)
}

/// Binds with `bind(addr, dual_stack)`: dual-stack for `[::]`, falling back to `0.0.0.0` on a
/// host without IPv6; as given otherwise.
fn on_every_interface<T>(
    addr: SocketAddr,
    bind: impl Fn(SocketAddr, bool) -> io::Result<T>,
) -> io::Result<T> {
    if addr.ip() != std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        return bind(addr, false);
    }
    match bind(addr, true) {
        Err(error) if no_ipv6(&error) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::info!(%addr, %error, "no IPv6 on this host; listening on {v4}");
            bind(v4, false)
        }
        other => other,
    }
}

/// Whether `error` says the host has no IPv6 (rather than that the port is taken).
fn no_ipv6(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrNotAvailable || error.raw_os_error() == Some(97) // EAFNOSUPPORT
}

fn bind_pair(addr: SocketAddr, dual_stack: bool) -> io::Result<Sockets> {
    // Port 0: the port TCP got may be taken for UDP; then another, a bounded number of times.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        // TCP first and without SO_REUSEPORT: a second server on the port fails here, rather
        // than sharing the UDP port with this one.
        let tcp = TcpListener::from_std(tcp_socket(addr, dual_stack)?)?;
        let bound = tcp.local_addr()?;
        let udp: io::Result<Vec<_>> = (0..udp_threads())
            .map(|_| udp_socket(bound, dual_stack).map(Arc::new))
            .collect();
        match udp {
            Ok(udp) => {
                if let Some(first) = udp.first() {
                    report_receive_buffer(first, bound);
                }
                return Ok(Sockets {
                    addr: bound,
                    udp,
                    tcp: Arc::new(tcp),
                });
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

/// One UDP receive thread per core this process may run on (`taskset` and cgroup limits
/// count): more would only take turns.
fn udp_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// What srvd asks for each UDP socket's receive buffer: a burst of 4 MiB of queries waits in
/// the kernel instead of being dropped (the default, about 208 KiB, lost queries at saturation).
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Says once per address when the kernel gave less receive buffer than asked (an unprivileged
/// process is capped at net.core.rmem_max).
fn report_receive_buffer(socket: &std::net::UdpSocket, addr: SocketAddr) {
    // Linux reports twice what was set (the other half is its bookkeeping).
    let got = socket2::SockRef::from(socket)
        .recv_buffer_size()
        .map_or(0, |n| n / 2);
    if got < UDP_RECEIVE_BUFFER {
        tracing::info!(
            %addr,
            asked_kib = UDP_RECEIVE_BUFFER >> 10,
            got_kib = got >> 10,
            "UDP receive buffer capped by net.core.rmem_max (raise it, or run with CAP_NET_ADMIN, to absorb larger bursts)"
        );
    }
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
    socket.set_reuse_port(true)?;
    // Past rmem_max when privileged; otherwise as much as rmem_max allows.
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, UDP_RECEIVE_BUFFER).is_err()
    {
        socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER)?;
    }
    socket.bind(&addr.into())?;
    // Blocking, with a timeout, so an idle receive thread still sees its stop token.
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    Ok(socket.into())
}
