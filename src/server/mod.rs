//! The listeners: UDP receive loops and TCP accept loops over already-bound sockets.
//!
//! ```text
//! UdpSocket ─ recv ─► Handler::respond ─► send_to            (inline, one loop per socket)
//! TcpListener ─ accept (≤ max connections) ─► connection task: [len][msg] … ─► respond ─► write
//! ```
//! Why own loops rather than hickory-server's `Server`: it has no cap on concurrent TCP
//! connections, spawns a task per UDP datagram and logs at `info` per query; srvd needs the cap,
//! and the query path must stay cheap and quiet. The handler is the same for both transports.
//!
//! Shutdown ([`CancellationToken`]): loops stop receiving and accepting (listeners are dropped, so
//! new connections are refused); a TCP connection that has started reading a query finishes it and
//! writes the answer, then closes.

pub mod handler;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use self::handler::{Handler, Scratch};
use self::wire::Transport;

/// On shutdown, how long an idle TCP connection may still deliver a query that was already sent.
const SHUTDOWN_READ_GRACE: Duration = Duration::from_millis(100);

/// Limits on TCP clients.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// A connection with no complete query for this long is closed (RFC 7766 §6.2.3 suggests
    /// seconds, not minutes).
    pub idle_timeout: Duration,
    /// Connections beyond this many are closed at once; existing ones keep working.
    pub max_connections: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Sockets to serve, bound by the caller.
#[derive(Debug, Default)]
pub struct Listeners {
    /// UDP sockets.
    pub udp: Vec<UdpSocket>,
    /// TCP listeners.
    pub tcp: Vec<TcpListener>,
}

/// Serves `listeners` until `shutdown` is cancelled and in-flight TCP answers are written.
pub async fn run(
    listeners: Listeners,
    handler: Handler,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    for socket in listeners.udp {
        tracker.spawn(serve_udp(socket, handler.clone(), shutdown.clone()));
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    for listener in listeners.tcp {
        tracker.spawn(serve_tcp(
            listener,
            handler.clone(),
            limits,
            slots.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_udp(socket: UdpSocket, handler: Handler, shutdown: CancellationToken) {
    // 4096 covers any query a client sends over UDP; a longer datagram is cut by the kernel and
    // then fails to decode (FORMERR), which is the right answer for it.
    let mut request = vec![0u8; 4096];
    let mut response = Vec::with_capacity(usize::from(wire::MAX_UDP_PAYLOAD));
    let mut scratch = Scratch::default();
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
        if handler.respond(&request[..len], Transport::Udp, &mut scratch, &mut response)
            && let Err(error) = socket.send_to(&response, peer).await
        {
            debug!(%error, %peer, "udp send error");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    handler: Handler,
    limits: TcpLimits,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let at_limit = AtomicBool::new(false);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(%error, "tcp accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !at_limit.swap(true, Ordering::Relaxed) {
                warn!(
                    limit = limits.max_connections,
                    "tcp connection limit reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        at_limit.store(false, Ordering::Relaxed);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) = serve_connection(stream, &handler, limits, &shutdown).await {
                debug!(%error, %peer, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

/// Serves queries on one connection, one at a time, until EOF, idle timeout or shutdown.
async fn serve_connection(
    mut stream: TcpStream,
    handler: &Handler,
    limits: TcpLimits,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut request = Vec::new();
    let mut response = Vec::new();
    let mut scratch = Scratch::default();
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

        if !handler.respond(&request, Transport::Tcp, &mut scratch, &mut response) {
            // Nothing to say to garbage on a stream: close it.
            return Ok(());
        }
        framed.clear();
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        timeout(limits.idle_timeout, stream.write_all(&framed))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
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

/// Binds UDP and TCP on `addr`. With port 0, both get the same free port.
///
/// # Errors
/// The bind error, when the address is taken or not local.
pub async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let tcp = TcpListener::bind(addr).await?;
        let udp = UdpSocket::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last_error = None;
    for _ in 0..16 {
        let tcp = TcpListener::bind(addr).await?;
        let bound = tcp.local_addr()?;
        match UdpSocket::bind(bound).await {
            Ok(udp) => return Ok((udp, tcp)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}
