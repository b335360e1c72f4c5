//! `srvd register`, the real binary against a real etcd and a real local HTTP health endpoint.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseTimeToLiveOptions};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::dns;
use crate::support::etcd::EtcdServer;
use crate::support::eventually;
use crate::support::srvd::TestServer;

/// The health endpoint's behaviour.
const OK: u8 = 0;
const ERROR: u8 = 1;
const CLOSED: u8 = 2;

/// A health endpoint on 127.0.0.1 answering 200, 500, or closing without a reply.
struct Health {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Health {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(OK));
        let shared = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mode = shared.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    let reply: &[u8] = match mode {
                        OK => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                        ERROR => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                        _ => b"",
                    };
                    let _ = stream.write_all(reply).await;
                });
            }
        });
        Self { addr, mode, task }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `srvd register ARGS...`, killed by PID on drop; its stderr collected.
struct Register {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Register {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_srvd"))
            .arg("register")
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("srvd binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    fn sigterm(&self) {
        use rustix::process::{Pid, Signal, kill_process};
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "srvd register did not exit: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Register {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- srvd register log:\n{}", self.log().join("\n"));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The key's value and lease, or `None` when it is absent.
async fn read(client: &mut Client, key: &str) -> Option<(String, i64)> {
    let got = client.get(key, None).await.ok()?;
    got.kvs()
        .first()
        .map(|kv| (kv.value_str().unwrap().to_string(), kv.lease()))
}

/// Polls until the key holds `value` (with a lease), returning the lease.
async fn until_value(client: &mut Client, key: &str, value: &str, limit: Duration) -> i64 {
    eventually(limit, &format!("{key} = {value}"), || {
        let mut client = client.clone();
        async move {
            match read(&mut client, key).await {
                Some((v, lease)) if v == value && lease != 0 => Some(lease),
                _ => None,
            }
        }
    })
    .await
}

async fn until_absent(client: &mut Client, key: &str, limit: Duration) {
    eventually(limit, &format!("{key} deleted"), || {
        let mut client = client.clone();
        async move {
            match client.get(key, None).await {
                Ok(got) if got.kvs().is_empty() => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

const PASSING: &str = r#"{"Addr":"10.0.1.10","Port":8080,"Priority":10,"Weight":50,"Proto":"tcp","Tags":["canary"],"Metadata":{"version":"2","path":"/api"}}"#;
const WARNING: &str = r#"{"Addr":"10.0.1.10","Port":8080,"Priority":10,"Weight":50,"Proto":"tcp","Tags":["canary"],"Metadata":{"version":"2","path":"/api","health":"warning"}}"#;
const KEY: &str = "/services/web/web-01";

fn web_args<'a>(etcd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--etcd",
        etcd,
        "--service",
        "web",
        "--instance",
        "web-01",
        "--addr",
        "10.0.1.10",
        "--port",
        "8080",
        "--weight",
        "50",
        "--meta",
        "version=2",
        "--meta",
        "path=/api",
        "--tag",
        "canary",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn follows_its_health_check_and_deregisters_on_sigterm() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let health = Health::start().await;
    let check = health.url();
    let mut register = Register::spawn(&web_args(
        &etcd.url,
        &[
            "--ttl",
            "5s",
            "--check",
            &check,
            "--interval",
            "200ms",
            "--timeout",
            "1s",
            "--deregister-after",
            "3",
        ],
    ));
    let limit = Duration::from_secs(10);

    // Passing: exactly the given metadata, under a live lease of the asked TTL.
    let lease = until_value(&mut client, KEY, PASSING, limit).await;
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 5);
    assert!(ttl.ttl() > 0, "lease alive: {ttl:?}");

    // 500: still registered, marked, same lease; logged once however many checks see it.
    health.set(ERROR);
    assert_eq!(until_value(&mut client, KEY, WARNING, limit).await, lease);
    let warned = "health check warning";
    eventually(limit, "warning logged", || async {
        (register.count(warned) == 1).then_some(())
    })
    .await;

    // Closed without a reply: critical; the key goes after 3 checks in a row.
    health.set(CLOSED);
    until_absent(&mut client, KEY, limit).await;
    let log = register.log();
    assert_eq!(register.count("health check critical"), 1, "{log:#?}");
    let deregistering = "deregistering after consecutive critical checks";
    assert_eq!(register.count(deregistering), 1, "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains(deregistering) && l.contains("criticals=3")),
        "after exactly --deregister-after 3: {log:#?}"
    );
    let revoked = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(
        revoked.ttl(),
        -1,
        "the lease is revoked, not left to expire"
    );

    // Healthy again: back, with exactly the --meta pairs.
    health.set(OK);
    let lease = until_value(&mut client, KEY, PASSING, limit).await;
    assert_eq!(register.count(warned), 1, "{:#?}", register.log());

    // SIGTERM: the key leaves at once (not at the 5 s lease expiry) and the exit status is 0.
    let start = Instant::now();
    register.sigterm();
    until_absent(&mut client, KEY, Duration::from_secs(1)).await;
    eprintln!("key gone {:?} after SIGTERM", start.elapsed());
    assert!(register.wait_exit(limit).success(), "{:#?}", register.log());
    let revoked = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(revoked.ttl(), -1);
}

#[tokio::test]
async fn sigkill_leaves_the_key_to_its_lease() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let mut register = Register::spawn(&web_args(&etcd.url, &["--ttl", "2s"]));
    let lease = until_value(&mut client, KEY, PASSING, Duration::from_secs(10)).await;
    let start = Instant::now();
    register.child.kill().unwrap();
    register.child.wait().unwrap();
    // Nobody deleted it: it is still there, and goes only when its lease expires.
    assert_eq!(
        read(&mut client, KEY).await,
        Some((PASSING.to_string(), lease))
    );
    until_absent(&mut client, KEY, Duration::from_secs(10)).await;
    eprintln!("key gone {:?} after SIGKILL (--ttl 2s)", start.elapsed());
}

#[tokio::test]
async fn survives_etcd_restarts() {
    let mut etcd = EtcdServer::start().await;
    let mut register = Register::spawn(&web_args(&etcd.url, &["--ttl", "2s"]));
    let limit = Duration::from_secs(15);
    let mut client = etcd.client().await;
    until_value(&mut client, KEY, PASSING, limit).await;

    // etcd restarted with its data: the lease is kept alive again.
    etcd.restart().await;
    let mut client = etcd.client().await;
    let lease = until_value(&mut client, KEY, PASSING, limit).await;
    eventually(limit, "lease refreshed after the restart", || {
        let mut client = client.clone();
        async move {
            let ttl = client.lease_time_to_live(lease, None).await.ok()?;
            (ttl.ttl() > 0).then_some(())
        }
    })
    .await;

    // etcd restarted empty: key and lease are gone; register grants a new lease and writes back.
    etcd.restart_wiped().await;
    let mut client = etcd.client().await;
    let start = Instant::now();
    let lease = until_value(&mut client, KEY, PASSING, limit).await;
    eprintln!("key back {:?} after a wiped etcd restart", start.elapsed());
    let ttl = client
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.keys(), [KEY.as_bytes().to_vec()]);
    assert!(register.count("registered") >= 2, "{:#?}", register.log());

    // etcd down: the sidecar keeps running and retrying, and a SIGTERM still ends it cleanly
    // (its deregistration attempt is bounded).
    etcd.stop();
    eventually(limit, "outage logged", || async {
        (register.count("etcd request failed; retrying") >= 1).then_some(())
    })
    .await;
    assert_eq!(register.child.try_wait().unwrap(), None, "still running");
    let start = Instant::now();
    register.sigterm();
    assert!(register.wait_exit(limit).success(), "{:#?}", register.log());
    eprintln!("exited {:?} after SIGTERM with etcd down", start.elapsed());
    assert_eq!(register.count("could not deregister on shutdown"), 1);
}

#[tokio::test]
async fn skydns_layout_is_answered_by_srvd_serve() {
    let etcd = EtcdServer::start().await;
    let server = TestServer::start_etcd(&etcd.url, &["svc.test."], None, |_| {}).await;
    let _register = Register::spawn(&[
        "--etcd",
        &etcd.url,
        "--layout",
        "skydns",
        "--zone",
        "svc.test",
        "--service",
        "web",
        "--instance",
        "web-01",
        "--addr",
        "127.0.0.2",
        "--port",
        "8080",
        "--weight",
        "50",
        "--meta",
        "version=2",
    ]);
    let mut client = etcd.client().await;
    until_value(
        &mut client,
        "/skydns/test/svc/_tcp/_web/web-01",
        r#"{"host":"127.0.0.2","port":8080,"priority":10,"weight":50,"text":"version=2"}"#,
        Duration::from_secs(10),
    )
    .await;
    let reply = eventually(Duration::from_secs(10), "SRV answered", || async {
        let reply = dns::udp(
            server.addr,
            &dns::query("_web._tcp.svc.test.", RecordType::SRV),
        )
        .await;
        (!reply.answers.is_empty()).then_some(reply)
    })
    .await;
    // CoreDNS's weight rule: a lone record in its priority is served with weight 100.
    assert_eq!(
        dns::srvs(&reply.answers),
        [(10, 100, 8080, "web-01._web._tcp.svc.test.".to_string())]
    );
    let glue: Vec<String> = dns::of_type(&reply.additionals, RecordType::A)
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(glue, ["127.0.0.2"]);
}

/// What srvd answers for the registered instance: the strings of the TXT record at its name,
/// or `None` for NXDOMAIN; `Err` while the TXT answer and the PTR list of its type disagree
/// (asked one after the other, so a change may land between them: ask again).
async fn txt_in_dns(server: &TestServer) -> Result<Option<Vec<String>>, String> {
    let instance = "web-01._web._tcp.svc.test.";
    let txt = dns::udp(server.addr, &dns::query(instance, RecordType::TXT)).await;
    let ptr = dns::udp(
        server.addr,
        &dns::query("_web._tcp.svc.test.", RecordType::PTR),
    )
    .await;
    let listed = ptr.answers.iter().any(|r| r.data.to_string() == instance);
    let gone = txt.response_code == hickory_proto::op::ResponseCode::NXDomain;
    if gone == listed {
        return Err(format!("TXT {:?} but browsed: {listed}", txt.response_code));
    }
    if gone {
        return Ok(None);
    }
    let strings = txt.answers.iter().flat_map(|r| match &r.data {
        hickory_proto::rr::RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        other => vec![format!("not TXT: {other}")],
    });
    Ok(Some(strings.collect()))
}

/// The whole loop in DNS: `srvd register` (registry layout) against a real etcd, `srvd serve
/// --registry /services` answering it, and a health endpoint switched between 200, 500 and
/// closed. Passing: browsed with exactly the `--meta` TXT; 500: still browsed, TXT gains
/// `health=warning`; closed: NXDOMAIN after 3 checks; healthy: back; SIGTERM: gone within 1 s.
#[tokio::test]
async fn the_instance_follows_its_health_in_dns_answers() {
    let etcd = EtcdServer::start().await;
    let server = TestServer::start_etcd(&etcd.url, &["svc.test."], None, |e| {
        e.registry_prefixes = vec!["/services".into()];
    })
    .await;
    let health = Health::start().await;
    let check = health.url();
    let mut register = Register::spawn(&web_args(
        &etcd.url,
        &["--ttl", "5s", "--check", &check, "--interval", "200ms"],
    ));
    let limit = Duration::from_secs(10);
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let passing = strings(&["version=2", "path=/api"]);
    let warning = strings(&["version=2", "path=/api", "health=warning"]);
    let until = |want: Option<Vec<String>>, what: &'static str| {
        let server = &server;
        async move {
            eventually(limit, what, || {
                let want = want.clone();
                async move { (txt_in_dns(server).await == Ok(want)).then_some(()) }
            })
            .await
        }
    };
    until(Some(passing.clone()), "passing: browsed with its --meta").await;
    health.set(ERROR);
    until(Some(warning), "500: still browsed, health=warning").await;
    health.set(CLOSED);
    until(None, "closed: gone from DNS").await;
    health.set(OK);
    until(Some(passing), "healthy again: back").await;
    let start = Instant::now();
    register.sigterm();
    eventually(
        Duration::from_secs(1),
        "gone within 1 s of SIGTERM",
        || async { (txt_in_dns(&server).await == Ok(None)).then_some(()) },
    )
    .await;
    eprintln!("gone from DNS {:?} after SIGTERM", start.elapsed());
    assert!(register.wait_exit(limit).success());
}

/// SIGKILL: nobody deletes the key, so the instance stays in DNS until its lease expires (a
/// 2 s lease here), and its TTL never exceeds the lease's remaining time meanwhile.
#[tokio::test]
async fn after_sigkill_the_instance_leaves_dns_when_its_lease_expires() {
    let etcd = EtcdServer::start().await;
    let server = TestServer::start_etcd(&etcd.url, &["svc.test."], None, |e| {
        e.registry_prefixes = vec!["/services".into()];
    })
    .await;
    let mut register = Register::spawn(&web_args(&etcd.url, &["--ttl", "2s"]));
    let limit = Duration::from_secs(10);
    eventually(limit, "registered", || async {
        matches!(txt_in_dns(&server).await, Ok(Some(_))).then_some(())
    })
    .await;
    register.child.kill().unwrap();
    register.child.wait().unwrap();
    let killed = Instant::now();
    let srv = dns::udp(
        server.addr,
        &dns::query("web-01._web._tcp.svc.test.", RecordType::SRV),
    )
    .await;
    assert_eq!(srv.answers.len(), 1, "still there right after SIGKILL");
    assert!(srv.answers[0].ttl <= 2, "TTL within the lease: {srv:?}");
    eventually(limit, "gone when the lease expired", || async {
        (txt_in_dns(&server).await == Ok(None)).then_some(())
    })
    .await;
    let gone = killed.elapsed();
    eprintln!("gone from DNS {gone:?} after SIGKILL (--ttl 2s)");
    assert!(
        gone >= Duration::from_millis(500),
        "left with its lease, not at once: {gone:?}"
    );
}

/// Runs `srvd register ARGS` expecting it to fail; returns (exit code, stderr).
fn failing(args: &[&str]) -> (i32, String) {
    let mut register = vec!["register"];
    register.extend_from_slice(args);
    crate::support::srvd::run_command_expecting_failure(Path::new("."), &register)
}

#[tokio::test]
async fn bad_input_is_one_line_and_a_failure_status() {
    let etcd = EtcdServer::start().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let cases: [(&[&str], &str, &str); 8] = [
        (
            &["--addr", "10.0.1.300"],
            &etcd.url,
            r#"srvd: --addr "10.0.1.300": expected an IP address"#,
        ),
        (
            &["--port", "0"],
            &etcd.url,
            r#"srvd: --port "0": expected a number 1-65535"#,
        ),
        (
            &["--port", "65536"],
            &etcd.url,
            r#"srvd: --port "65536": expected a number 1-65535"#,
        ),
        (
            &["--check", "http://h:x/"],
            &etcd.url,
            r#"srvd: --check "http://h:x/": port "x" is not 1..=65535"#,
        ),
        (
            &["--check", "localhost:8080"],
            &etcd.url,
            r#"srvd: --check "localhost:8080": not a URL"#,
        ),
        (
            &["--layout", "skydns"],
            &etcd.url,
            "srvd: --layout skydns needs --zone",
        ),
        (
            &["--ttl", "0s"],
            &etcd.url,
            r#"srvd: --ttl "0s": must be more than zero"#,
        ),
        (
            &[],
            &dead,
            &format!("srvd: etcd at {dead} is unreachable: "),
        ),
    ];
    let mut client = etcd.client().await;
    for (extra, url, want) in cases {
        // The defaults, each replaced by the case's value for the same flag.
        let mut args: Vec<&str> = Vec::new();
        let defaults = [
            ("--etcd", url),
            ("--service", "web"),
            ("--instance", "web-01"),
            ("--addr", "10.0.1.10"),
            ("--port", "8080"),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let (code, stderr) = failing(&args);
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{extra:?}: one line: {stderr}");
        assert!(lines[0].starts_with(want), "{extra:?}: {stderr}");
    }
    assert_eq!(read(&mut client, KEY).await, None, "nothing was written");
}

/// `srvd register` against an etcd that demands TLS client certificates and a password, with
/// tokens that expire after 2 s: the instance is registered, and when its lease is revoked
/// after the token expired, it is registered again (a new grant and put: calls that meet the
/// expired token and must authenticate again). A wrong password is one clear start error that
/// does not show the password.
#[tokio::test]
async fn registers_in_an_etcd_with_tls_client_certificates_and_auth() {
    use crate::support::etcd::{EtcdOptions, Pki};
    let pki = Pki::generate();
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: Some(pki.clone()),
        client_cert_auth: true,
        root_password: Some("reg-Pa55".into()),
        auth_token_ttl: Some(2),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "reg-Pa55\n").unwrap();
    std::fs::write(&wrong, "not-reg-Pa55-qx\n").unwrap();
    let text = |p: &Path| p.to_str().unwrap().to_string();
    let (ca, cert, key) = (text(&pki.ca), text(&pki.client_cert), text(&pki.client_key));
    let (right, wrong) = (text(&right), text(&wrong));
    let locked = |password: &str| -> Vec<String> {
        [
            "--etcd-ca",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = locked(&right);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _register = Register::spawn(&web_args(&etcd.url, &args));
    let mut client = etcd.client().await;
    let first = until_value(&mut client, KEY, PASSING, Duration::from_secs(10)).await;
    etcd.until_tokens_expire().await;
    client.lease_revoke(first).await.unwrap();
    let second = eventually(Duration::from_secs(15), "registered again", || {
        let mut client = client.clone();
        async move {
            match read(&mut client, KEY).await {
                Some((v, lease)) if v == PASSING && lease != 0 && lease != first => Some(lease),
                _ => None,
            }
        }
    })
    .await;
    assert_ne!(first, second);

    let args = locked(&wrong);
    let mut all: Vec<&str> = vec!["register"];
    all.extend(web_args(
        &etcd.url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (code, stderr) = failing(&all[1..]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&etcd.url), "{stderr}");
    assert!(stderr.contains("wrong etcd user or password"), "{stderr}");
    assert!(
        !stderr.contains("not-reg-Pa55-qx"),
        "the password leaked: {stderr}"
    );
}
