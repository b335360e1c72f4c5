//! `--conf Corefile` with the real binary: `srvd check` validates without binding or contacting
//! etcd, `srvd serve --conf` serves what a CoreDNS Corefile says, and errors name file and line.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::dns::dig;
use crate::support::etcd::EtcdServer;
use crate::support::srvd::spawn_serve;

/// A zone file for `example.test.` named as CoreDNS users name them (`db.<zone>`).
const ZONE: &str = "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.80\n";

/// A directory with `db.example.test` (www 192.0.2.80) and `db.other.test` (www 198.51.100.80).
fn two_zones() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    std::fs::write(
        dir.path().join("db.other.test"),
        ZONE.replace("192.0.2.80", "198.51.100.80"),
    )
    .unwrap();
    dir
}

/// `www.example.test. A` asked of one address over and over (at most 100,000 times) while
/// reloads happen, counting the questions and those without their one address.
struct QueryLoop {
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl QueryLoop {
    /// Starts asking `addr`: over UDP, or over UDP and TCP in turn with `tcp_too`.
    fn start(addr: std::net::SocketAddr, tcp_too: bool) -> Self {
        use crate::support::dns::{query, tcp, udp};
        use hickory_proto::rr::RecordType;

        let stop = Arc::new(AtomicBool::new(false));
        let (asked, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn({
            let (stop, asked, failed) = (stop.clone(), asked.clone(), failed.clone());
            async move {
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let message = query("www.example.test.", RecordType::A);
                    let reply = if tcp_too && asked.load(Ordering::Relaxed) % 2 == 1 {
                        tcp(addr, &message).await
                    } else {
                        udp(addr, &message).await
                    };
                    asked.fetch_add(1, Ordering::Relaxed);
                    if reply.answers.len() != 1 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self {
            stop,
            asked,
            failed,
            task,
        }
    }

    /// Questions asked so far.
    fn asked(&self) -> usize {
        self.asked.load(Ordering::Relaxed)
    }

    /// Stops the loop; (asked, failed).
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.asked.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn srvd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Replaces `path` as editors and configuration managers do (a new file renamed over it), so a
/// reload polling the file never reads half of an edit.
fn write_atomically(path: &std::path::Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let next = path.with_extension("next");
    std::fs::write(&next, text)?;
    std::fs::rename(&next, path)
}

/// A loopback port that is free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_accepts_a_coredns_corefile_without_binding_or_contacting_etcd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    // The DNS port is held by the test and the etcd endpoint is a listener that must see no
    // connection: check neither binds nor connects.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let etcd = TcpListener::bind("127.0.0.1:0").unwrap();
    etcd.set_nonblocking(true).unwrap();
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            "(common) {{\n  errors\n  cache 30\n}}\nexample.test:{port} service.local:{port} {{\n  bind 127.0.0.1\n  import common\n  root {root}\n  file db.example.test example.test\n  etcd service.local {{\n    endpoint {etcd}\n  }}\n}}\n",
            root = dir.path().display(),
            etcd = etcd.local_addr().unwrap()
        ),
    )
    .unwrap();
    let output = srvd(&["check", "--conf", corefile.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.starts_with(&format!(
            "{}: valid; serves example.test. (file {}), service.local. (etcd) on 127.0.0.1:{port}\n",
            corefile.display(),
            dir.path().join("db.example.test").display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("cache: not needed"), "{stdout}");
    assert_eq!(
        etcd.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "etcd was contacted"
    );
}

#[test]
fn check_lists_every_error_with_file_and_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db.bad"),
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\nwww IN A 999.0.0.1\n",
    )
    .unwrap();
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        "service.local:1053 {\n  etcd {\n    endpoints localhost:2379\n  }\n  forward . 1.1.1.1\n}\n",
    )
    .unwrap();
    let output = srvd(&["check", "--conf", corefile.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = corefile.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!("srvd: {path}:3: etcd: unknown property 'endpoints'"),
            format!(
                "srvd: {path}:5: srvd does not have CoreDNS's forward plugin: srvd never recurses; keep a resolver in front for other names"
            ),
        ]
    );
    // A zone file that does not load fails the check too, naming its own line.
    std::fs::write(
        &corefile,
        format!(
            "bad.test:1053 {{\n  file {}/db.bad\n}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let output = srvd(&["check", "--conf", corefile.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("srvd: {}/db.bad:3:", dir.path().display())),
        "{stderr}"
    );
}

#[test]
fn conf_excludes_the_flags_it_replaces() {
    let output = srvd(&[
        "serve",
        "--conf",
        "Corefile",
        "--etcd",
        "http://127.0.0.1:2379",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the argument '--conf <FILE>' cannot be used with '--etcd <URL[,URL...]>'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_conf_answers_from_the_corefiles_zone_file_and_etcd() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/local/service/web/x1",
            r#"{"host":"10.0.0.7","port":8080}"#,
            None,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    let port = free_port();
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            "example.test:{port} {{\n  bind 127.0.0.1\n  file db.example.test\n}}\nservice.local:{port} {{\n  bind 127.0.0.1\n  etcd {{\n    endpoint {}\n  }}\n  cache\n}}\n",
            etcd.url
        ),
    )
    .unwrap();
    let mut process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    assert_eq!(process.addr.port(), port);
    process.until_etcd_synced(std::time::Duration::from_secs(10));
    assert!(
        process.log.iter().any(|l| l.contains("cache: not needed")),
        "{:#?}",
        process.log
    );
    let port = port.to_string();
    let www = dig(&["@127.0.0.1", "-p", &port, "www.example.test", "A", "+short"]);
    assert_eq!(www, "192.0.2.80");
    let x1 = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "x1.web.service.local",
        "A",
        "+short",
    ]);
    assert_eq!(x1, "10.0.0.7");
}

/// Blocks on two ports with different zones: each port answers its own zones and refuses the
/// other's, as CoreDNS routes by port, then by zone; a block on the first port for a zone below
/// the second's keeps that port's answers to its own zone.
#[tokio::test]
async fn each_port_answers_only_the_zones_of_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    let other = ZONE.replace("192.0.2.80", "198.51.100.80");
    std::fs::write(dir.path().join("db.other.test"), &other).unwrap();
    let sub = ZONE.replace("192.0.2.80", "203.0.113.80");
    std::fs::write(dir.path().join("db.sub.example.test"), &sub).unwrap();
    let (first, second) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("Corefile"),
        format!(
            "example.test:{first} {{\n  bind 127.0.0.1\n  file db.example.test\n}}\nother.test:{second} sub.example.test:{second} {{\n  bind 127.0.0.1\n  file db.other.test other.test\n  file db.sub.example.test sub.example.test\n}}\n"
        ),
    )
    .unwrap();
    let _process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    let ask = |port: u16, name: &str| {
        let out = dig(&["@127.0.0.1", "-p", &port.to_string(), name, "A"]);
        let status = status_of(&out);
        let answer = out
            .lines()
            .find(|l| !l.starts_with(';') && l.contains(" IN A "))
            .map(|l| l.rsplit(' ').next().unwrap().to_string());
        (status, answer)
    };
    let ok = |ip: &str| ("NOERROR".to_string(), Some(ip.to_string()));
    let refused = ("REFUSED".to_string(), None);
    assert_eq!(ask(first, "www.example.test"), ok("192.0.2.80"));
    assert_eq!(ask(first, "www.other.test"), refused);
    // sub.example.test is a zone of the second port only: the first answers it from
    // example.test (where it does not exist), never from the second port's zone.
    assert_eq!(
        ask(first, "www.sub.example.test"),
        ("NXDOMAIN".to_string(), None)
    );
    assert_eq!(ask(second, "www.other.test"), ok("198.51.100.80"));
    assert_eq!(ask(second, "www.sub.example.test"), ok("203.0.113.80"));
    assert_eq!(ask(second, "www.example.test"), refused);
}

/// `reload`: a changed Corefile (polled every second here) or SIGHUP switches srvd to it while a
/// bounded query loop runs, without a failed query and on the same socket; an invalid edit keeps
/// the running configuration and is reported once.
#[tokio::test]
async fn reload_switches_to_a_changed_corefile_without_failing_a_query() {
    use crate::support::dns::a_of;

    let dir = two_zones();
    let port = free_port();
    let corefile = dir.path().join("Corefile");
    let block = |extra: &str| {
        format!(
            "example.test:{port} other.test:{port} {{\n  bind 127.0.0.1\n  reload 1s 0s\n  file db.example.test example.test\n{extra}}}\n"
        )
    };
    write_atomically(&corefile, block("")).unwrap();
    let mut process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    let addr = process.addr;
    assert_eq!(
        a_of(addr, "www.other.test.").await,
        Some(Vec::new()),
        "not served yet (REFUSED)"
    );

    // A bounded loop of queries for the zone that stays, through every switch below.
    let load = QueryLoop::start(addr, false);

    // A valid change, picked up by polling: a second zone appears.
    write_atomically(&corefile, block("  file db.other.test other.test\n")).unwrap();
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "other.test served",
        || async {
            a_of(addr, "www.other.test.")
                .await
                .filter(|ips| ips.len() == 1)
                .map(|_| ())
        },
    )
    .await;

    // An invalid edit: reported once, the running configuration keeps serving.
    write_atomically(
        &corefile,
        block("  file db.other.test other.test\n  frobnicate\n"),
    )
    .unwrap();
    process.log_until(std::time::Duration::from_secs(10), |log| {
        log.iter()
            .any(|l| l.contains("reload: the Corefile is not valid"))
    });
    let pid = rustix::process::Pid::from_raw(process.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    assert!(
        a_of(addr, "www.other.test.").await.is_some(),
        "still served"
    );

    // A zone file changed on disk and SIGHUP: read again.
    std::fs::write(
        dir.path().join("db.other.test"),
        ZONE.replace("192.0.2.80", "198.51.100.81"),
    )
    .unwrap();
    write_atomically(&corefile, block("  file db.other.test other.test\n")).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the new zone file",
        || async {
            let ips = a_of(addr, "www.other.test.").await?;
            (ips == ["198.51.100.81".parse::<std::net::Ipv4Addr>().unwrap()]).then_some(())
        },
    )
    .await;
    process.log_until(std::time::Duration::from_secs(10), |log| {
        log.iter().filter(|l| l.contains("reloaded")).count() >= 2
    });
    let (asked, failed) = load.finish().await;
    let invalid = process
        .log
        .iter()
        .filter(|l| l.contains("reload: the Corefile is not valid"))
        .count();
    assert_eq!(invalid, 1, "reported once: {:#?}", process.log);
    eprintln!("{asked} queries during the reloads, {failed} failed");
    assert!(asked > 0);
    assert_eq!(failed, 0, "no query failed across the reloads");
}

/// A reload that leaves the etcd backend as it was keeps its mirror (no second read of etcd),
/// while the zone file beside it is read again.
#[tokio::test]
async fn reload_keeps_an_unchanged_etcd_backend_without_reading_etcd_again() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/local/service/web/x1",
            r#"{"host":"10.0.0.7"}"#,
            None,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    let port = free_port();
    let corefile = |extra: &str| {
        format!(
            "service.local:{port} example.test:{port} {{\n  bind 127.0.0.1\n  etcd service.local {{\n    endpoint {}\n  }}\n{extra}}}\n",
            etcd.url
        )
    };
    std::fs::write(dir.path().join("Corefile"), corefile("")).unwrap();
    let mut process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    process.until_etcd_synced(std::time::Duration::from_secs(10));
    std::fs::write(
        dir.path().join("Corefile"),
        corefile("  file db.example.test example.test\n"),
    )
    .unwrap();
    let pid = rustix::process::Pid::from_raw(process.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::USR1).unwrap();
    process.log_until(std::time::Duration::from_secs(10), |log| {
        log.iter().any(|l| l.contains("reloaded"))
    });
    let port = port.to_string();
    let www = dig(&["@127.0.0.1", "-p", &port, "www.example.test", "A", "+short"]);
    assert_eq!(www, "192.0.2.80", "the new zone file is served");
    let x1 = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "x1.web.service.local",
        "A",
        "+short",
    ]);
    assert_eq!(x1, "10.0.0.7", "etcd answers carry on");
    let reads = process
        .log
        .iter()
        .filter(|l| l.contains("etcd initial sync complete") || l.contains("re-read in full"))
        .count();
    assert_eq!(reads, 1, "etcd read once: {:#?}", process.log);
}

/// A reload that moves addresses: a new server block's port is bound and answers, an address
/// that stays keeps its socket (a query loop on it never fails) while what it serves changes, a
/// dropped address closes, `/health` moves away and `/metrics` appears, and the query counters of
/// the address that left are still reported afterwards (counters never go back).
#[tokio::test]
async fn reload_binds_new_addresses_closes_dropped_ones_and_keeps_the_ones_that_stay() {
    use std::time::Duration;

    use crate::ops::endpoints::{counter, fetch_metrics};
    use crate::support::dns::a_of;
    use crate::support::http::get;

    let dir = two_zones();
    let (stays, added, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let corefile = dir.path().join("Corefile");
    // 1. One block; /health only.
    std::fs::write(
        &corefile,
        format!(
            "example.test:{stays} {{\n  bind 127.0.0.1\n  file db.example.test example.test\n  health 127.0.0.1:{health}\n}}\n"
        ),
    )
    .unwrap();
    let mut process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    let first: std::net::SocketAddr = format!("127.0.0.1:{stays}").parse().unwrap();
    let second: std::net::SocketAddr = format!("127.0.0.1:{added}").parse().unwrap();
    let health_addr: std::net::SocketAddr = format!("127.0.0.1:{health}").parse().unwrap();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    assert_eq!(get(health_addr, "/health").await, (200, "OK".to_string()));
    let reloads =
        |n: usize| move |log: &[String]| log.iter().filter(|l| l.contains("reloaded")).count() >= n;

    // A bounded query loop on the address that stays, through both reloads: UDP and TCP in
    // turn, so both kinds of loop take the new handlers.
    let load = QueryLoop::start(first, true);

    // 2. A second block on a new port, /metrics instead of /health. Then the first block's
    // `log` goes on and off: each switch gives its address new loops on the same sockets.
    let stage2 = |log: &str| {
        format!(
            "example.test:{stays} {{\n  bind 127.0.0.1\n  file db.example.test example.test\n  prometheus 127.0.0.1:{metrics}\n{log}}}\n\
             other.test:{added} {{\n  bind 127.0.0.1\n  file db.other.test other.test\n}}\n"
        )
    };
    const SWITCHES: usize = 20;
    for switch in 0..=SWITCHES {
        let seen = load.asked();
        std::fs::write(
            &corefile,
            stage2(if switch % 2 == 1 { "  log\n" } else { "" }),
        )
        .unwrap();
        process.signal("HUP");
        process.log_until(Duration::from_secs(10), reloads(switch + 1));
        // Queries run between switches, so every switch happens under load.
        crate::support::eventually(Duration::from_secs(10), "queries between switches", || {
            let asked = load.asked();
            async move { (asked >= seen + 5).then_some(()) }
        })
        .await;
    }
    let other: Vec<std::net::Ipv4Addr> = vec!["198.51.100.80".parse().unwrap()];
    assert_eq!(a_of(second, "www.other.test.").await, Some(other.clone()));
    assert_eq!(
        a_of(first, "www.other.test.").await,
        Some(Vec::new()),
        "the first port still serves example.test only (REFUSED)"
    );
    crate::support::eventually(
        Duration::from_secs(5),
        "/health's listener is closed",
        || async {
            tokio::net::TcpStream::connect(health_addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let before = fetch_metrics(metrics_addr).await;
    let first_label = format!("dns://{first}");
    let counted = counter(
        &before,
        "coredns_dns_requests_total",
        &[
            ("server", &first_label),
            ("zone", "example.test."),
            ("proto", "udp"),
            ("type", "A"),
        ],
    );
    assert!(counted > 0.0, "queries since metrics came on are counted");

    // 3. One block on the second port serving both zones; the first port is dropped.
    std::fs::write(
        &corefile,
        format!(
            "example.test:{added} other.test:{added} {{\n  bind 127.0.0.1\n  file db.example.test example.test\n  file db.other.test other.test\n  prometheus 127.0.0.1:{metrics}\n}}\n"
        ),
    )
    .unwrap();
    let (asked, failed) = load.finish().await;
    process.signal("USR1");
    process.log_until(Duration::from_secs(10), reloads(SWITCHES + 2));
    // Its accept loop ends on its own task right after the switch: poll, bounded.
    crate::support::eventually(
        Duration::from_secs(5),
        "the dropped address no longer accepts",
        || async {
            tokio::net::TcpStream::connect(first)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert_eq!(a_of(second, "www.other.test.").await, Some(other));
    assert_eq!(
        a_of(second, "www.example.test.").await,
        Some(vec!["192.0.2.80".parse().unwrap()]),
        "the port that stayed serves its new zones"
    );
    let after = fetch_metrics(metrics_addr).await;
    let kept = counter(
        &after,
        "coredns_dns_requests_total",
        &[
            ("server", &first_label),
            ("zone", "example.test."),
            ("proto", "udp"),
            ("type", "A"),
        ],
    );
    assert!(
        kept >= counted,
        "the dropped address's counter did not go back: {counted} then {kept}"
    );
    eprintln!("{asked} queries on the address that stayed, {failed} failed");
    assert!(asked > 0);
    assert_eq!(failed, 0, "no query failed across the reloads");
}

/// The answer lines of `dig`, and its status.
fn dig_status(port: u16, server: &str, name: &str, qtype: &str) -> String {
    status_of(&dig(&[
        &format!("@{server}"),
        "-p",
        &port.to_string(),
        name,
        qtype,
    ]))
}

/// The RCODE in `dig`'s header line (`status: NOERROR`), or `none` when it printed none.
fn status_of(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string()
}

/// The query log lines in `log`, without tracing's prefix.
fn query_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l.split("srvd::query: ").nth(1))
        .map(str::to_string)
        .collect()
}

/// `log NAMES FORMAT { class ... }` over real sockets: each block logs its own zones by its own
/// rules; a denial-only rule skips a success and logs NXDOMAIN and NODATA, in the operator's
/// format with CoreDNS's `{/log/class}` and `{/log/type}`; another block logs in `{combined}`.
#[test]
fn log_rules_pick_queries_by_name_and_class_and_write_the_format_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    std::fs::write(dir.path().join("db.other.test"), ZONE).unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("Corefile"),
        format!(
            "example.test:{port} {{\n  bind 127.0.0.1\n  file db.example.test\n  log . \"{{proto}} {{name}} {{type}} {{rcode}} {{/log/class}} {{/log/type}} {{>opcode}}\" {{\n    class denial\n  }}\n}}\nother.test:{port} {{\n  bind 127.0.0.1\n  file db.other.test\n  log www.other.test {{combined}}\n}}\n"
        ),
    )
    .unwrap();
    let mut process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
    for (name, qtype, status) in [
        ("www.example.test", "A", "NOERROR"),
        ("nope.example.test", "A", "NXDOMAIN"),
        ("www.example.test", "TXT", "NOERROR"),
        ("ns1.other.test", "A", "NOERROR"),
        ("www.other.test", "A", "NOERROR"),
    ] {
        assert_eq!(
            dig_status(port, "127.0.0.1", name, qtype),
            status,
            "{name} {qtype}"
        );
    }
    process.log_until(std::time::Duration::from_secs(10), |log| {
        query_lines(log).len() >= 3
    });
    let lines = query_lines(&process.log);
    assert_eq!(
        lines[..2],
        [
            "udp nope.example.test. A NXDOMAIN denial NXDOMAIN 0",
            "udp www.example.test. TXT NOERROR denial NODATA 0",
        ]
    );
    // {combined}: the common format, then the opcode; only the rule's name is logged.
    let (peer, rest) = lines[2].split_once(" - ").unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{}", lines[2]);
    assert!(
        rest.contains(" \"A IN www.other.test. udp ") && rest.ends_with("s \"0\""),
        "{}",
        lines[2]
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

/// `bind IFACE { except ... }` over real sockets: `lo` less its IPv6 address listens on
/// 127.0.0.1 alone; `lo` alone listens on every address of `lo` (127.0.0.1, and ::1 where the
/// machine has it). `errors { consolidate ... }` is accepted beside it.
#[test]
fn bind_listens_on_an_interfaces_addresses_except_those_excluded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    let lo_v6 = if_addrs::get_if_addrs()
        .unwrap()
        .iter()
        .any(|i| i.name == "lo" && i.ip() == std::net::Ipv6Addr::LOCALHOST);
    let serving = |bind: &str| {
        let port = free_port();
        std::fs::write(
            dir.path().join("Corefile"),
            format!(
                "example.test:{port} {{\n  {bind}\n  file db.example.test\n  errors {{\n    consolidate 5m \".* i/o timeout$\" warning\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let process = spawn_serve(dir.path(), &["--conf", "Corefile"], "info");
        let line = process
            .log
            .iter()
            .find(|l| l.contains("srvd serving"))
            .unwrap()
            .clone();
        (port, process, line)
    };
    let (port, process, line) = serving("bind lo {\n    except ::1\n  }");
    assert!(
        line.contains(&format!("listen=udp+tcp 127.0.0.1:{port} ")),
        "{line}"
    );
    assert!(!line.contains("[::1]"), "{line}");
    assert_eq!(
        dig_status(port, "127.0.0.1", "www.example.test", "A"),
        "NOERROR"
    );
    drop(process);
    let (port, _process, line) = serving("bind lo");
    assert!(
        line.contains(&format!("udp+tcp 127.0.0.1:{port}")),
        "{line}"
    );
    assert_eq!(
        line.contains(&format!("udp+tcp [::1]:{port}")),
        lo_v6,
        "{line}"
    );
    assert_eq!(
        dig_status(port, "127.0.0.1", "www.example.test", "A"),
        "NOERROR"
    );
    if lo_v6 {
        assert_eq!(dig_status(port, "::1", "www.example.test", "A"), "NOERROR");
    }
}

/// `srvd check` names each mistake in the new forms with its file and line.
#[test]
fn check_names_the_line_of_bad_log_errors_and_bind_forms() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.example.test"), ZONE).unwrap();
    let path = dir.path().join("Corefile");
    std::fs::write(
        &path,
        "example.test:1053 {\n  bind nosuch0 {\n    except lo\n  }\n  file db.example.test\n  log . \"{type} {qname}\"\n  errors {\n    consolidate 5m \"[unclosed\"\n  }\n}\n",
    )
    .unwrap();
    let out = srvd(&["check", "--conf", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    for want in [
        format!("{file}:2: bind: not a valid IP address or interface name: \"nosuch0\""),
        format!("{file}:6: log: unknown placeholder {{qname}} in format \"{{type}} {{qname}}\""),
        format!("{file}:8: errors: consolidate: \"[unclosed\" is not a regular expression"),
    ] {
        assert!(stderr.contains(&want), "{want}\nin\n{stderr}");
    }
}
