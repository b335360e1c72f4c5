//! DNS over HTTPS (RFC 8484): hyper serving the one `Handler`'s bytes on a TLS connection that
//! the TCP accept loop admitted (so it holds a slot of the connection bound).
//!
//! `/dns-query` only; GET with `?dns=` (base64url without padding) and POST with
//! `application/dns-message`; HTTP/2 when the client chose `h2` by ALPN, HTTP/1.1 otherwise.
//! Errors as RFC 8484 and HTTP say: another path 404, another method 405, another content type
//! 415, a `dns` parameter or body that is no DNS query 400, a body over 65,535 bytes 413.
//!
//! Bounds: streams per HTTP/2 connection ([`MAX_STREAMS`]); a connection that completes no
//! request for the idle timeout is closed, as a DoT or TCP connection is; on shutdown hyper
//! finishes the requests in flight and says goodbye (GOAWAY, or `Connection: close`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::pressure::{Connection, ConnectionTable};
use super::wire::Transport;
use super::{Current, HandlerSlot, TcpLimits, tls};

/// Concurrent requests one HTTP/2 connection may have open (the answer is synchronous, so more
/// would only queue).
pub const MAX_STREAMS: u32 = 16;

/// The DNS message media type (RFC 8484 §6).
const DNS_MESSAGE: &str = "application/dns-message";

/// What one connection's requests share.
struct Shared {
    handlers: Arc<HandlerSlot>,
    current: Mutex<Current>,
    peer: SocketAddr,
    connections: Arc<super::TcpShared>,
    connection: Arc<Connection>,
}

/// Serves HTTP on an accepted, handshaken TLS `stream` until the client leaves, it idles past
/// `limits.idle_timeout`, or `shutdown` (then requests in flight finish first).
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<S>(
    stream: S,
    h2: bool,
    peer: SocketAddr,
    handlers: Arc<HandlerSlot>,
    current: Current,
    limits: TcpLimits,
    shutdown: &CancellationToken,
    tcp: Arc<super::TcpShared>,
    connection: Arc<Connection>,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Shared {
        handlers,
        current: Mutex::new(current),
        peer,
        connections: tcp.clone(),
        connection: connection.clone(),
    });
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(&shared, request).await) }
    });
    let io = TokioIo::new(stream);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .serve_connection(io, service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            limits,
            shutdown,
            &tcp.connections,
            &connection,
        )
        .await
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .serve_connection(io, service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            limits,
            shutdown,
            &tcp.connections,
            &connection,
        )
        .await
    }
}

/// Runs a hyper connection to its end, closing it when it has completed no request for the
/// idle timeout, and shutting it down gracefully (bounded by the idle timeout) on `shutdown`.
async fn drive<C>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    limits: TcpLimits,
    shutdown: &CancellationToken,
    connections: &ConnectionTable,
    connection: &Connection,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        let quiet = connections.quiet_for(connection);
        let left = limits.idle_timeout.saturating_sub(quiet);
        if left.is_zero() {
            return Ok(());
        }
        tokio::select! {
            result = conn.as_mut() => return result,
            () = shutdown.cancelled() => {
                graceful(conn.as_mut());
                return tokio::time::timeout(limits.idle_timeout, conn)
                    .await
                    .unwrap_or(Ok(()));
            }
            () = tokio::time::sleep(left) => {}
        }
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/dns-query" {
        return status(StatusCode::NOT_FOUND);
    }
    let query = match *request.method() {
        Method::GET => {
            let Some(query) = request.uri().query().and_then(dns_param) else {
                return status(StatusCode::BAD_REQUEST);
            };
            query
        }
        Method::POST => {
            let media = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(str::trim);
            if !media.is_some_and(|m| m.eq_ignore_ascii_case(DNS_MESSAGE)) {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            match Limited::new(request.into_body(), usize::from(u16::MAX))
                .collect()
                .await
            {
                Ok(body) => body.to_bytes().to_vec(),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    return status(StatusCode::PAYLOAD_TOO_LARGE);
                }
                Err(_) => return status(StatusCode::BAD_REQUEST),
            }
        }
        _ => {
            let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    let mut out = Vec::new();
    let sent = {
        let mut current = shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shared.handlers.refresh(&mut current, Transport::Tcp, true);
        let current = &mut *current;
        current.handler.respond(
            &query,
            Transport::Tcp,
            shared.peer,
            &mut current.scratch,
            &mut out,
        )
    };
    if !sent {
        return status(StatusCode::BAD_REQUEST);
    }
    tls::pad(&query, &mut out);
    shared.connections.connections.progress(&shared.connection);
    let max_age = min_ttl(&out);
    let mut response = Response::new(Full::new(Bytes::from(out)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// The `dns` parameter of a GET query string, decoded (base64url; RFC 8484 §4.1 says without
/// padding, and padding is tolerated).
fn dns_param(query: &str) -> Option<Vec<u8>> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(value).ok()?;
    (!bytes.is_empty() && bytes.len() <= usize::from(u16::MAX)).then_some(bytes)
}

/// RFC 8484 §5.1: a response may be cached no longer than its smallest TTL: the answer
/// section's, or for a negative answer the authority section's (the SOA); 0 when it has none.
fn min_ttl(response: &[u8]) -> u32 {
    let Ok(message) = hickory_proto::op::Message::from_vec(response) else {
        return 0;
    };
    let section = if message.answers.is_empty() {
        &message.authorities
    } else {
        &message.answers
    };
    section.iter().map(|r| r.ttl).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_parameter_is_base64url_with_or_without_padding() {
        assert_eq!(dns_param("dns=AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(dns_param("ct=x&dns=_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(dns_param("dns=_-8="), Some(vec![0xff, 0xef]));
        assert_eq!(dns_param("dns=+/8"), None, "not the URL alphabet");
        assert_eq!(dns_param("dns="), None);
        assert_eq!(dns_param("name=x"), None);
    }
}
