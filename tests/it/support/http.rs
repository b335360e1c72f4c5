//! A minimal HTTP/1 GET over a real socket (hyper's client), for the ops endpoints, and reading
//! metrics from their Prometheus text.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// `GET path` from `addr`: the status code and the body as text (bounded by `REPLY_WAIT`).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(super::dns::REPLY_WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no HTTP answer from {addr}{path}"))
}

/// The address of the binary's HTTP listener serving `what` (`health`, `ready`, `metrics`),
/// from its `serving http` log lines.
pub fn addr_in_log(log: &[String], what: &str) -> SocketAddr {
    log.iter()
        .filter(|l| l.contains("serving http") && l.contains(&format!("{what}=true")))
        .find_map(|l| l.split("addr=").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `serving http` line for {what}: {log:#?}"))
}

/// The sum of the samples of metric `name` in Prometheus text `body`: unlabelled, every label
/// set, or (when `name` carries its labels) that one series. `None` when it has no sample.
pub fn samples(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// [`samples`], 0 when the metric has no sample yet (a counter before its first event).
pub fn sum_samples(body: &str, name: &str) -> f64 {
    samples(body, name).unwrap_or(0.0)
}

/// Scrapes `GET /metrics` from `addr`: [`samples`] of `name`, which must be there.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = get(addr, "/metrics").await;
    samples(&body, name).unwrap_or_else(|| panic!("no {name} in /metrics from {addr}: {body}"))
}
