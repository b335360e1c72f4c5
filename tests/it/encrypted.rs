//! DNS over TLS and over HTTPS: real clients (`dig +tls`, `+https`, `+https-get`, a hyper
//! HTTP/1.1 client, a tokio-rustls DoT client) against certificates made here with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use srvd::config::EncryptedListen;
use srvd::server::tls::{Encrypted, RESPONSE_BLOCK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::dns::{dig, query, with_edns};
use crate::support::srvd::TestServer;
use crate::support::{eventually, fixture_zones};

/// The name in the test certificate.
const HOST: &str = "srvd.test";

/// A CA and a leaf certificate for [`HOST`] and 127.0.0.1 signed by it, written as PEM into
/// `dir`: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "srvd test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![HOST.to_string(), "127.0.0.1".into()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, HOST);
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// srvd on the fixture zones with a DoT and a DoH listener on free ports.
struct Encrypting {
    server: TestServer,
    dot: SocketAddr,
    doh: SocketAddr,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut srvd::config::Config)) -> Encrypting {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let listen = |transport| EncryptedListen {
        transport,
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: cert.clone(),
        key: key.clone(),
        zones: None,
    };
    let server = TestServer::start_with(&fixture_zones(), |config| {
        config.encrypted = vec![listen(Encrypted::Tls), listen(Encrypted::Https)];
        tweak(config);
    })
    .await;
    let addrs = server.encrypted_addrs();
    Encrypting {
        dot: addrs[0],
        doh: addrs[1],
        server,
        ca,
        _dir: dir,
    }
}

/// dig's answer as the rcode and each section's records, sorted (RFC 2782 order aside).
fn sections(output: &str) -> (String, Vec<(String, Vec<String>)>) {
    let status = output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's output: {output}"))
        .to_string();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in output.lines() {
        if let Some(name) = line
            .strip_prefix(";; ")
            .and_then(|l| l.strip_suffix(" SECTION:"))
        {
            sections.push((name.to_string(), Vec::new()));
        } else if !line.is_empty()
            && !line.starts_with(';')
            && let Some((_, records)) = sections.last_mut()
        {
            records.push(line.to_string());
        }
    }
    for (_, records) in &mut sections {
        records.sort();
    }
    sections.retain(|(name, _)| name != "QUESTION");
    (status, sections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_tls_and_https_get_and_post_gets_the_plain_tcp_answers() {
    let srvd = start(|_| {}).await;
    let plain = srvd.server.addr;
    let ca = format!("+tls-ca={}", srvd.ca.display());
    let host = format!("+tls-hostname={HOST}");
    for (name, qtype, status, answers) in [
        ("_http._tcp.svc.example.test.", "SRV", "NOERROR", 3),
        ("a.svc.example.test.", "A", "NOERROR", 1),
        ("_http._tcp.svc.example.test.", "TXT", "NOERROR", 1),
        ("nothere.example.test.", "A", "NXDOMAIN", 0),
        ("elsewhere.org.", "A", "REFUSED", 0),
    ] {
        let tcp_port = plain.port().to_string();
        let reference = dig(&["@127.0.0.1", "-p", &tcp_port, "+tcp", name, qtype]);
        let (want_status, want) = sections(&reference);
        assert_eq!(want_status, status, "{name} {qtype} over TCP: {reference}");
        let answer = want.iter().find(|(s, _)| s == "ANSWER");
        assert_eq!(
            answer.map_or(0, |(_, r)| r.len()),
            answers,
            "{name} {qtype}: {reference}"
        );
        if qtype == "SRV" {
            let glue = want.iter().find(|(s, _)| s == "ADDITIONAL");
            assert!(
                glue.is_some_and(|(_, r)| r.iter().any(|l| l.contains("192.0.2.1"))),
                "SRV with glue over TCP: {reference}"
            );
        }
        for (port, mode) in [
            (srvd.dot.port(), "+tls"),
            (srvd.doh.port(), "+https"),
            (srvd.doh.port(), "+https-get"),
        ] {
            let port = port.to_string();
            let output = dig(&["@127.0.0.1", "-p", &port, mode, &ca, &host, name, qtype]);
            assert_eq!(
                sections(&output),
                (want_status.clone(), want.clone()),
                "{name} {qtype} with dig {mode}: {output}"
            );
        }
    }
}

/// A rustls client trusting `ca`, offering `alpn`.
fn client_config(ca: &Path, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, alpn));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    connector.connect(name, tcp).await
}

/// One DoT exchange on `stream`: the response's bytes.
async fn dot_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut framed = u16::try_from(request.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut response = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response).await?;
    Ok(response)
}

/// `message` with EDNS, its OPT record carrying an empty Padding option (RFC 7830).
fn asking_for_padding(message: hickory_proto::op::Message) -> Vec<u8> {
    let mut bytes = with_edns(message, 1232).to_vec().unwrap();
    let len = bytes.len();
    assert_eq!(
        bytes[len - 11..len - 8],
        [0, 0, 41],
        "OPT is the last record"
    );
    bytes[len - 2..].copy_from_slice(&4u16.to_be_bytes());
    bytes.extend_from_slice(&[0, 12, 0, 0]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_answers_are_padded_to_468_byte_blocks_only_when_asked() {
    let srvd = start(|config| config.metrics = Some("127.0.0.1:0".parse().unwrap())).await;
    let question = || {
        query(
            "_http._tcp.svc.example.test.",
            hickory_proto::rr::RecordType::SRV,
        )
    };
    let padded_query = asking_for_padding(question());
    let plain_query = with_edns(question(), 1232).to_vec().unwrap();

    let mut dot = tls_connect(srvd.dot, &srvd.ca, b"dot").await.unwrap();
    let padded = dot_exchange(&mut dot, &padded_query).await.unwrap();
    let unpadded = dot_exchange(&mut dot, &plain_query).await.unwrap();
    assert_eq!(
        padded.len() % RESPONSE_BLOCK,
        0,
        "DoT: {} bytes",
        padded.len()
    );
    assert!(padded.len() > unpadded.len());
    let message = hickory_proto::op::Message::from_vec(&padded).unwrap();
    assert_eq!(message.answers.len(), 3, "the answer survives the padding");
    let unpadded_message = hickory_proto::op::Message::from_vec(&unpadded).unwrap();
    assert_eq!(unpadded_message.answers.len(), 3);

    // Plain TCP never pads, even when asked.
    let mut tcp = TcpStream::connect(srvd.server.addr).await.unwrap();
    let over_tcp = dot_exchange(&mut tcp, &padded_query).await.unwrap();
    assert_eq!(over_tcp.len(), unpadded.len(), "TCP is not padded");

    // DoH pads too.
    let (status, _, body) = doh_http1(&srvd, "POST", "/dns-query", Some(DNS), padded_query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len() % RESPONSE_BLOCK, 0, "DoH: {} bytes", body.len());

    // Each encrypted listener is counted as its own server, as CoreDNS labels them.
    let metrics = srvd.server.http_addrs()[0];
    let (_, text) = crate::support::http::get(metrics, "/metrics").await;
    for label in [
        format!("tls://{}", srvd.dot),
        format!("https://{}", srvd.doh),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("coredns_dns_requests_total{")
                    && l.contains(&format!("server=\"{label}\""))),
            "{label} in {text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("coredns_plugin_enabled{")
                    && l.contains(&format!("server=\"{label}\""))
                    && l.contains("name=\"file\"")),
            "the file plugin enabled on {label}: {text}"
        );
    }
}

const DNS: &str = "application/dns-message";

/// One HTTP/1.1 request over TLS to srvd's DoH listener: status, headers, body.
async fn doh_http1(
    srvd: &Encrypting,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, hyper::HeaderMap, Vec<u8>) {
    let stream = tls_connect(srvd.doh, &srvd.ca, b"http/1.1").await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, HOST);
    if let Some(content_type) = content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_over_http1_answers_get_and_post_and_refuses_what_rfc_8484_refuses() {
    let srvd = start(|_| {}).await;
    let request = query("a.svc.example.test.", hickory_proto::rr::RecordType::A)
        .to_vec()
        .unwrap();

    let get = format!("/dns-query?dns={}", base64url(&request));
    for (method, uri, content_type, body) in [
        ("GET", get.as_str(), None, Vec::new()),
        ("POST", "/dns-query", Some(DNS), request.clone()),
    ] {
        let (status, headers, body) = doh_http1(&srvd, method, uri, content_type, body).await;
        assert_eq!(status, StatusCode::OK, "{method}");
        assert_eq!(headers[hyper::header::CONTENT_TYPE], DNS, "{method}");
        // The fixture's a.svc A record has the zone's $TTL, 300.
        assert_eq!(
            headers[hyper::header::CACHE_CONTROL],
            "max-age=300",
            "{method}"
        );
        let message = hickory_proto::op::Message::from_vec(&body).unwrap();
        assert_eq!(
            crate::support::dns::section(&message.answers),
            ["a.svc.example.test. 300 A 192.0.2.1"],
            "{method}"
        );
    }

    for (method, uri, content_type, body, want) in [
        (
            "PUT",
            "/dns-query",
            Some(DNS),
            request.clone(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/dns-query",
            Some("text/plain"),
            request.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "POST",
            "/dns-query",
            None,
            request.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "GET",
            "/dns-query?dns=!!!",
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/dns-query",
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/dns-query?dns=AAAA",
            None,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/other", None, Vec::new(), StatusCode::NOT_FOUND),
        (
            "POST",
            "/dns-query",
            Some(DNS),
            vec![0; 70_000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let (status, headers, _) = doh_http1(&srvd, method, uri, content_type, body).await;
        assert_eq!(status, want, "{method} {uri} {content_type:?}");
        if want == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(headers[hyper::header::ALLOW], "GET, POST");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_flood_of_silent_and_idle_connections_leaves_room_for_a_dot_client() {
    const BOUND: usize = 4;
    let srvd = start(|config| {
        config.tcp.max_connections = BOUND;
        config.tcp.close_idle_after = Duration::ZERO;
        config.tcp.idle_timeout = Duration::from_secs(30);
    })
    .await;
    // Connections that never start a handshake, and handshaken ones that never ask.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(TcpStream::connect(srvd.dot).await.unwrap());
    }
    let mut idle = Vec::new();
    for _ in 0..12 {
        // Under the flood the server may close this one before its handshake ends.
        if let Ok(stream) = tls_connect(srvd.dot, &srvd.ca, b"dot").await {
            idle.push(stream);
        }
    }
    let request = query("a.svc.example.test.", hickory_proto::rr::RecordType::A)
        .to_vec()
        .unwrap();
    let answer = eventually(
        Duration::from_secs(10),
        "a DoT answer past the flood",
        || {
            let (addr, ca, request) = (srvd.dot, srvd.ca.clone(), request.clone());
            async move {
                let mut stream = tls_connect(addr, &ca, b"dot").await.ok()?;
                dot_exchange(&mut stream, &request).await.ok()
            }
        },
    )
    .await;
    let message = hickory_proto::op::Message::from_vec(&answer).unwrap();
    assert_eq!(
        crate::support::dns::section(&message.answers),
        ["a.svc.example.test. 300 A 192.0.2.1"]
    );
    // The bound held: all but at most BOUND of the flood's connections were closed by srvd.
    let mut still_open = 0;
    // A connection srvd closed reads EOF (or a reset) at once; an open one waits.
    for stream in &mut silent {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    assert!(
        still_open <= BOUND,
        "{still_open} flood connections still open past a bound of {BOUND}"
    );
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = certificates(other.path());
    let missing = dir.path().join("missing.pem");
    let (cert, key, garbage, other_key, missing) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        garbage.to_str().unwrap(),
        other_key.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    for (args, names) in [
        (vec!["--tls-cert", missing, "--tls-key", key], missing),
        (vec!["--tls-cert", garbage, "--tls-key", key], garbage),
        (vec!["--tls-cert", cert, "--tls-key", garbage], garbage),
        (vec!["--tls-cert", cert, "--tls-key", other_key], other_key),
    ] {
        let mut all = vec!["--tls-listen", "127.0.0.1:0"];
        all.extend(args);
        let (code, stderr) =
            crate::support::srvd::run_binary_expecting_failure(&fixture_zones(), &all);
        assert_ne!(code, 0);
        assert!(stderr.contains(names), "names {names}: {stderr}");
        // The error is printed with its chain: the file's own error must not appear twice.
        let error = stderr
            .lines()
            .find(|l| l.starts_with("srvd:"))
            .unwrap_or("");
        assert_eq!(
            error.matches(names).count(),
            1,
            "names {names} once: {stderr}"
        );
    }
    // `srvd check` reads a Corefile's certificates as `serve` does.
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!("tls://example.test:853 {{\n tls {missing} {key}\n}}\n"),
    )
    .unwrap();
    let (code, stderr) = crate::support::srvd::run_command_expecting_failure(
        dir.path(),
        &["check", "--conf", corefile.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains(missing), "names {missing}: {stderr}");
    let (code, stderr) = crate::support::srvd::run_binary_expecting_failure(
        &fixture_zones(),
        &["--https-listen", "127.0.0.1:0"],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--tls-cert FILE and --tls-key FILE"),
        "{stderr}"
    );
}

#[test]
fn a_corefile_tls_block_serves_dot_and_a_failed_handshake_is_logged_at_debug_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let zone = fixture_zones().join("example.test.zone");
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            "example.test:0 {{\n bind 127.0.0.1\n file {zone}\n}}\n\
             tls://example.test:0 {{\n bind 127.0.0.1\n tls {cert} {key}\n file {zone}\n}}\n",
            zone = zone.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(["check", "--conf", corefile.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        printed.contains("on 127.0.0.1:0, tls://127.0.0.1:0\n"),
        "{printed}"
    );
    let mut process = crate::support::srvd::spawn_serve(
        dir.path(),
        &["--conf", corefile.to_str().unwrap()],
        "srvd=debug",
    );
    let serving = process
        .log
        .iter()
        .find(|l| l.contains("srvd serving"))
        .unwrap()
        .clone();
    let dot: SocketAddr = serving
        .split(", tls ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no tls address in {serving:?}"));

    // Not TLS at all: the handshake fails.
    let mut garbage = std::net::TcpStream::connect(dot).unwrap();
    std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    process.log_until(Duration::from_secs(10), |log| {
        log.iter().any(|l| l.contains("tls handshake failed"))
    });

    let port = dot.port().to_string();
    let ca = format!("+tls-ca={}", ca.display());
    let host = format!("+tls-hostname={HOST}");
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "+tls",
        &ca,
        &host,
        "a.svc.example.test.",
        "A",
    ]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(
        out.contains("a.svc.example.test. 300 IN A 192.0.2.1"),
        "{out}"
    );

    let failed = process
        .log
        .iter()
        .find(|l| l.contains("tls handshake failed"))
        .unwrap();
    assert!(failed.contains("DEBUG"), "{failed}");
    let warnings: Vec<&String> = process
        .log
        .iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");

    // A reload that changes the certificate says it needs a restart, and DoT keeps answering.
    let moved = dir.path().join("moved.pem");
    std::fs::copy(&cert, &moved).unwrap();
    let text = std::fs::read_to_string(&corefile).unwrap();
    std::fs::write(
        &corefile,
        text.replace(cert.to_str().unwrap(), moved.to_str().unwrap()),
    )
    .unwrap();
    process.signal("HUP");
    process.log_until(Duration::from_secs(10), |log| {
        log.iter().any(|l| l.contains("restart srvd to apply"))
    });
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "+tls",
        &ca,
        &host,
        "a.svc.example.test.",
        "A",
    ]);
    assert!(
        out.contains("a.svc.example.test. 300 IN A 192.0.2.1"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_dot_and_doh_connections_without_waiting_out_the_idle_timeout() {
    let srvd = start(|config| config.tcp.idle_timeout = Duration::from_secs(60)).await;
    let request = query("a.svc.example.test.", hickory_proto::rr::RecordType::A)
        .to_vec()
        .unwrap();
    let mut dot = tls_connect(srvd.dot, &srvd.ca, b"dot").await.unwrap();
    dot_exchange(&mut dot, &request).await.unwrap();
    // An HTTP/1.1 keep-alive connection that has had its answer and stays open.
    let stream = tls_connect(srvd.doh, &srvd.ca, b"http/1.1").await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let http = tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::builder()
                .method("POST")
                .uri("/dns-query")
                .header(hyper::header::HOST, HOST)
                .header(hyper::header::CONTENT_TYPE, DNS)
                .body(Full::new(Bytes::from(request)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let Encrypting { server, _dir, .. } = srvd;
    // Bounded at 10 s, well inside the 60 s idle timeout.
    server.shutdown().await;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), dot.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "DoT closed: {closed:?}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), http).await;
    assert!(ended.is_ok(), "the HTTP connection ended");
}

/// The handshake and the first query share one idle timeout from the accept: a DoT client that
/// dawdles through its handshake and then trickles its query is closed at that timeout, not
/// at nearly twice it (a fresh timeout for the query after a slow handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_client_dawdling_through_handshake_and_query_is_closed_at_one_idle_timeout() {
    let srvd = start(|config| config.tcp.idle_timeout = Duration::from_secs(2)).await;
    let tcp = TcpStream::connect(srvd.dot).await.unwrap();
    let connected = Instant::now();
    // Most of the timeout passes before the ClientHello (the dawdling is the behaviour under
    // test, not a wait for the server)...
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&srvd.ca, b"dot"));
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    // ...then the first byte of a query's length, and nothing more.
    stream.write_all(&[0]).await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    let closed = connected.elapsed();
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed, not answered: {read:?}"
    );
    // 2 s from the accept, with room for a slow machine; a fresh timeout would be 3.6 s or more.
    assert!(
        closed < Duration::from_millis(3400),
        "closed {closed:?} after the accept with a 2 s idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doh_connection_without_requests_is_closed_after_the_idle_timeout() {
    let srvd = start(|config| config.tcp.idle_timeout = Duration::from_secs(1)).await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut stream = tls_connect(srvd.doh, &srvd.ca, alpn).await.unwrap();
        let mut buf = [0u8; 256];
        // Whatever the server says first (HTTP/2 settings), then its close, well before 10 s.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{} connection closed when idle",
            String::from_utf8_lossy(alpn)
        );
    }
}
