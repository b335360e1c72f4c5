//! srvd against a locked-down etcd: TLS with client certificates, user/password auth, and a
//! token that expires under a running mirror. Certificates are made in the test (rcgen).

use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::dns;
use crate::support::etcd::{EtcdOptions, EtcdServer, Pki};
use crate::support::eventually;
use crate::support::srvd::{TestServer, run_binary_expecting_failure, spawn_binary};

const KEY: &str = "/skydns/test/svc/_tcp/_web/web-01";
const VALUE: &str = r#"{"host":"127.0.0.2","port":8080,"priority":10,"weight":50}"#;

/// Waits (bounded) until srvd answers the SRV question for `_web._tcp.svc.test.` with `want`
/// (port, target).
async fn until_srv(addr: std::net::SocketAddr, name: &str, port: u16) {
    eventually(
        Duration::from_secs(10),
        "SRV answered from etcd",
        || async {
            let reply = dns::udp(addr, &dns::query(name, RecordType::SRV)).await;
            dns::srvs(&reply.answers)
                .iter()
                .any(|(_, _, p, _)| *p == port)
                .then_some(())
        },
    )
    .await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn srvd_mirrors_an_etcd_that_demands_client_certificates() {
    let pki = Pki::generate();
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: Some(pki.clone()),
        client_cert_auth: true,
        ..EtcdOptions::default()
    })
    .await;
    assert!(etcd.url.starts_with("https://127.0.0.1:"), "{}", etcd.url);
    etcd.client().await.put(KEY, VALUE, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut srvd = spawn_binary(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            "svc.test",
            "--etcd-ca",
            path(&pki.ca),
            "--etcd-cert",
            path(&pki.client_cert),
            "--etcd-key",
            path(&pki.client_key),
        ],
    );
    srvd.until_etcd_synced(Duration::from_secs(10));
    let reply = dns::udp(
        srvd.addr,
        &dns::query("_web._tcp.svc.test.", RecordType::SRV),
    )
    .await;
    assert_eq!(
        dns::srvs(&reply.answers),
        [(10, 100, 8080, "web-01._web._tcp.svc.test.".to_string())]
    );
    // A write after the start arrives over the TLS watch too.
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/test/svc/_tcp/_web/web-02",
            r#"{"host":"127.0.0.3","port":8081}"#,
            None,
        )
        .await
        .unwrap();
    until_srv(srvd.addr, "_web._tcp.svc.test.", 8081).await;
}

#[tokio::test]
async fn a_refused_certificate_is_one_clear_start_error() {
    let pki = Pki::generate();
    let other = Pki::generate();
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: Some(pki.clone()),
        client_cert_auth: true,
        ..EtcdOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let base = ["--etcd", &etcd.url, "--zone", "svc.test"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        run_binary_expecting_failure(dir.path(), &args)
    };
    // No client certificate.
    let (code, stderr) = run(&["--etcd-ca", path(&pki.ca)]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&etcd.url), "names the endpoint: {stderr}");
    assert!(
        stderr.contains("refused srvd's client certificate"),
        "says what failed: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    // A client certificate from another CA.
    let (code, stderr) = run(&[
        "--etcd-ca",
        path(&pki.ca),
        "--etcd-cert",
        path(&other.client_cert),
        "--etcd-key",
        path(&other.client_key),
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&etcd.url), "{stderr}");
    assert!(
        stderr.contains("refused srvd's client certificate"),
        "{stderr}"
    );
    // The wrong CA for etcd's own certificate: the whole chain, down to rustls's reason.
    let (code, stderr) = run(&[
        "--etcd-ca",
        path(&other.ca),
        "--etcd-cert",
        path(&pki.client_cert),
        "--etcd-key",
        path(&pki.client_key),
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&etcd.url), "{stderr}");
    assert!(
        stderr.contains("etcd's certificate is not trusted") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    // A certificate without its key is refused before anything is contacted.
    let (code, stderr) = run(&["--etcd-cert", path(&pki.client_cert)]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("--etcd-cert needs --etcd-key"), "{stderr}");
}

#[tokio::test]
async fn auth_etcd_mirrors_with_the_right_password_and_names_a_wrong_one() {
    let etcd = EtcdServer::start_with(EtcdOptions {
        root_password: Some("right-Pa55".into()),
        ..EtcdOptions::default()
    })
    .await;
    etcd.client().await.put(KEY, VALUE, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("right"), "right-Pa55\r\n").unwrap();
    std::fs::write(dir.path().join("wrong"), "wrong-Pa55-zq\n").unwrap();
    let mut srvd = spawn_binary(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            "svc.test",
            "--etcd-user",
            "root",
            "--etcd-password-file",
            "right",
        ],
    );
    srvd.until_etcd_synced(Duration::from_secs(10));
    until_srv(srvd.addr, "_web._tcp.svc.test.", 8080).await;
    assert!(!srvd.log.iter().any(|l| l.contains("right-Pa55")));

    let (code, stderr) = run_binary_expecting_failure(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            "svc.test",
            "--etcd-user",
            "root",
            "--etcd-password-file",
            "wrong",
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&etcd.url), "{stderr}");
    assert!(
        stderr.contains("wrong etcd user or password"),
        "says what failed: {stderr}"
    );
    assert!(
        !stderr.contains("wrong-Pa55-zq"),
        "the password leaked: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

/// etcd forgets a simple token after `--auth-token-ttl`; a watch created with it afterwards is
/// cancelled ("permission denied"), which etcd-client's refresh (unary calls only) does not
/// cure. Here the watch must be created anew after the token expired: etcd is restarted
/// (which also forgets every token), and the write made after it must still reach the answers.
#[tokio::test]
async fn the_mirror_keeps_syncing_past_an_auth_token_expiry() {
    let mut etcd = EtcdServer::start_with(EtcdOptions {
        root_password: Some("ttl-pw".into()),
        auth_token_ttl: Some(2),
        ..EtcdOptions::default()
    })
    .await;
    etcd.client().await.put(KEY, VALUE, None).await.unwrap();
    let server = TestServer::start_etcd(&etcd.url, &["svc.test."], None, |e| {
        e.security.user = Some(("root".into(), srvd::config::Secret::new("ttl-pw")));
    })
    .await;
    until_srv(server.addr, "_web._tcp.svc.test.", 8080).await;
    // Every token issued so far (srvd's included) has expired after this.
    etcd.until_tokens_expire().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/test/svc/_tcp/_web/web-02",
            r#"{"host":"127.0.0.3","port":8081}"#,
            None,
        )
        .await
        .unwrap();
    until_srv(server.addr, "_web._tcp.svc.test.", 8081).await;
    // The watch is cut and re-created with srvd's (expired) token.
    etcd.restart().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/test/svc/_tcp/_web/web-03",
            r#"{"host":"127.0.0.4","port":8082}"#,
            None,
        )
        .await
        .unwrap();
    until_srv(server.addr, "_web._tcp.svc.test.", 8082).await;
}

/// The same recovery twice, through the binary: the write after each restart arrives, and a
/// renewal is logged at most once at `info`, not once per renewal; the password never shows.
/// (The read srvd makes before each watch, to check the history is still there, usually renews
/// the token on its own, etcd-client retrying it, so the watch is seldom refused at all.)
#[tokio::test]
async fn token_renewals_are_logged_once() {
    let mut etcd = EtcdServer::start_with(EtcdOptions {
        root_password: Some("twice-pw".into()),
        auth_token_ttl: Some(2),
        ..EtcdOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "twice-pw\n").unwrap();
    let mut srvd = spawn_binary(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--zone",
            "svc.test",
            "--etcd-user",
            "root",
            "--etcd-password-file",
            "pw",
        ],
    );
    srvd.until_etcd_synced(Duration::from_secs(10));
    for port in [8091, 8092] {
        etcd.until_tokens_expire().await;
        etcd.restart().await;
        let value = format!(r#"{{"host":"127.0.0.5","port":{port}}}"#);
        let key = format!("/skydns/test/svc/_tcp/_web/p{port}");
        etcd.client().await.put(key, value, None).await.unwrap();
        until_srv(srvd.addr, "_web._tcp.svc.test.", port).await;
    }
    let renewals = srvd
        .collect_log()
        .iter()
        .filter(|l| l.contains("authenticated again"))
        .count();
    assert!(renewals <= 1, "{:#?}", srvd.log);
    assert!(!srvd.log.iter().any(|l| l.contains("twice-pw")));
}

/// A Corefile's `tls CERT KEY CACERT` and `credentials` reach an etcd that demands both.
#[tokio::test]
async fn a_corefile_with_tls_and_credentials_mirrors_a_locked_down_etcd() {
    let pki = Pki::generate();
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: Some(pki.clone()),
        client_cert_auth: true,
        root_password: Some("core-pw".into()),
        ..EtcdOptions::default()
    })
    .await;
    etcd.client().await.put(KEY, VALUE, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corefile = format!(
        "svc.test:1053 {{\n  etcd {{\n    endpoint {}\n    tls {} {} {}\n    credentials root core-pw\n  }}\n}}\n",
        etcd.url,
        path(&pki.client_cert),
        path(&pki.client_key),
        path(&pki.ca)
    );
    let server = TestServer::start_corefile(&corefile, dir.path()).await;
    until_srv(server.addr, "_web._tcp.svc.test.", 8080).await;
}

/// An `https://` endpoint without `--etcd-ca` trusts the system's CAs (etcd-client's
/// `tls-roots`, read by rustls-native-certs, which honours `SSL_CERT_FILE`): with the test CA as
/// the system's, srvd mirrors; without it, etcd's certificate is an unknown issuer.
#[tokio::test]
async fn https_without_a_ca_file_uses_the_system_roots() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let pki = Pki::generate();
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: Some(pki.clone()),
        client_cert_auth: true,
        ..EtcdOptions::default()
    })
    .await;
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--etcd",
        &etcd.url,
        "--zone",
        "svc.test",
        "--etcd-cert",
        path(&pki.client_cert),
        "--etcd-key",
        path(&pki.client_key),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(args)
        .env("SSL_CERT_FILE", &pki.ca)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    let synced = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("etcd initial sync complete") => break true,
            Ok(line) => log.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(synced, "{log:#?}");

    // Without the test CA among the system's, the same start is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(args)
        .env("SSL_CERT_FILE", "/nonexistent-srvd-ca.pem")
        .env("SSL_CERT_DIR", "/nonexistent-srvd-ca-dir")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the system's CAs") && stderr.contains("--etcd-ca"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

/// A user that may not read the prefix is refused at start, named as such (not as an outage).
#[tokio::test]
async fn a_user_without_read_permission_is_a_clear_start_error() {
    let etcd = EtcdServer::start_with(EtcdOptions {
        root_password: Some("root-pw".into()),
        ..EtcdOptions::default()
    })
    .await;
    etcd.etcdctl(&["user", "add", "nobody:nobody-pw"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "nobody-pw\n").unwrap();
    let (code, stderr) = run_binary_expecting_failure(
        dir.path(),
        &[
            "--etcd",
            &etcd.url,
            "--etcd-user",
            "nobody",
            "--etcd-password-file",
            "pw",
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&etcd.url) && stderr.contains("permission denied for the etcd user"),
        "{stderr}"
    );
    assert!(!stderr.contains("nobody-pw"), "{stderr}");
}
