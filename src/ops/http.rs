//! The HTTP side of `health`, `ready` and `prometheus`: hyper's HTTP/1 server on srvd's runtime.
//!
//! Each distinct address gets one listener serving the paths of every endpoint configured on
//! it (CoreDNS lets `health`, `ready` and `prometheus` share an address the same way). Bounded:
//! at most [`MAX_CONNECTIONS`] connections per listener (more are closed at once), request
//! headers must arrive within [`HEADER_TIMEOUT`], and a connection lives at most
//! [`CONNECTION_LIMIT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::Ops;

/// Connections served at once per listener (probes and scrapers need a handful).
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this long.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// Which paths one listener serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paths {
    /// `/health`.
    pub health: bool,
    /// `/ready`.
    pub ready: bool,
    /// `/metrics`.
    pub metrics: bool,
}

/// Groups the configured endpoints by address: one entry per distinct address.
pub fn group(
    health: Option<SocketAddr>,
    ready: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> Vec<(SocketAddr, Paths)> {
    let mut out: Vec<(SocketAddr, Paths)> = Vec::new();
    for (addr, set) in [
        (health, (|p: &mut Paths| p.health = true) as fn(&mut Paths)),
        (ready, |p: &mut Paths| p.ready = true),
        (metrics, |p: &mut Paths| p.metrics = true),
    ] {
        let Some(addr) = addr else { continue };
        // Port 0 asks for a free port: two of those are two listeners.
        match out.iter_mut().find(|(a, _)| *a == addr && addr.port() != 0) {
            Some((_, paths)) => set(paths),
            None => {
                let mut paths = Paths::default();
                set(&mut paths);
                out.push((addr, paths));
            }
        }
    }
    out
}

/// Serves `paths` on `listener` until `shutdown`.
pub async fn serve(
    listener: Arc<TcpListener>,
    paths: Paths,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "http accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "http connection limit reached; closing");
            continue;
        };
        let ops = ops.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let ops = ops.clone();
                async move { Ok::<_, Infallible>(route(&request, paths, &ops)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = tokio::time::timeout(CONNECTION_LIMIT, connection) => {
                    if let Ok(Err(error)) = result {
                        debug!(%error, %peer, "http connection ended");
                    }
                }
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// Answers one request. Bodies are as CoreDNS writes them: `OK` for a healthy `/health` and
/// a ready `/ready`; not ready lists what it waits for, one per line.
fn route(request: &Request<Incoming>, paths: Paths, ops: &Ops) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/health" if paths.health => {
            if ops.healthy() {
                text(StatusCode::OK, "OK")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "lameduck: shutting down\n")
            }
        }
        "/ready" if paths.ready => {
            let waiting = ops.not_ready();
            if waiting.is_empty() {
                text(StatusCode::OK, "OK")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", waiting.join("\n")),
                )
            }
        }
        "/metrics" if paths.metrics => match ops.metrics_text() {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
