//! unbound and dnsmasq in front of srvd, configured with the README's recipes as written (only
//! the ports differ): what users behind a resolver get must be what srvd answers.
//!
//! Each resolver runs in the foreground as the current user, on a free 127.0.0.1 port, from a
//! private config in a tempdir (no system config, nothing in /run), and is killed by PID on drop.
//! Both cache, and unbound rotates RRsets, so answers are compared as record sets.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::support::dns::{self, query, udp};
use crate::support::{eventually, shipped_zones, srvd::TestServer};

/// The README, as committed.
fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The body of the first fenced block of the README's "Resolvers and `.local`" section that
/// contains `marker`.
fn readme_recipe(marker: &str) -> String {
    let readme = readme();
    let section = readme
        .split("## Resolvers and `.local`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a \"Resolvers and `.local`\" section");
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.split_once('\n').map_or("", |(_, body)| body))
        .find(|body| body.contains(marker))
        .unwrap_or_else(|| panic!("the resolver section has a block with {marker:?}"))
        .to_string()
}

/// A port free for both UDP and TCP on 127.0.0.1 when asked (the resolver binds both); a race
/// with another process is possible, so [`Resolver::start`] retries on a failed start.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A resolver process in front of srvd.
struct Resolver {
    name: &'static str,
    child: Mutex<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

enum Probe {
    Ready,
    Exited(std::process::ExitStatus),
}

impl Resolver {
    /// Writes the config `configure(dir, port)` returns to `dir/<config_name>`, runs `program
    /// ARGS` (with `{conf}` in ARGS replaced by its path), and waits (bounded) until it answers
    /// a query. Retries with another port when the process exits at
    /// start (its port was taken in the meantime).
    async fn start(
        name: &'static str,
        program: &str,
        args: &[&str],
        config_name: &str,
        configure: impl Fn(&Path, u16) -> String,
    ) -> Self {
        for attempt in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let conf = dir.path().join(config_name);
            std::fs::write(&conf, configure(dir.path(), port)).unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{conf}", conf.to_str().unwrap()))
                .collect();
            let child = Command::new(program)
                .args(&args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} starts (scripts/install-deps installs it): {e}")
                });
            // From here on the process is owned by a value whose Drop kills it.
            let resolver = Self {
                name,
                child: Mutex::new(child),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
            };
            match resolver.wait_ready().await {
                Probe::Ready => return resolver,
                Probe::Exited(status) if attempt < 3 => {
                    eprintln!(
                        "{name} exited at start ({status}), retrying: {}",
                        resolver.log()
                    );
                }
                Probe::Exited(status) => {
                    panic!("{name} exited at start ({status}): {}", resolver.log())
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Polls with a short-timeout query until the resolver answers or exits.
    async fn wait_ready(&self) -> Probe {
        let probe = query("service.local.", RecordType::SOA).to_vec().unwrap();
        let what = format!("{} answers on {}", self.name, self.addr);
        eventually(Duration::from_secs(10), &what, || {
            let probe = probe.clone();
            async move {
                if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                    return Some(Probe::Exited(status));
                }
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                socket.send_to(&probe, self.addr).await.ok()?;
                let mut buf = vec![0u8; 4096];
                let n = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                // Any reply, SERVFAIL included: the resolver is up, and what it answers is
                // the tests' business (with its log in their messages).
                Message::from_vec(&buf[..n]).ok().map(|_| Probe::Ready)
            }
        })
        .await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// unbound with the README's stub-zone lines after test-only `server:` settings that keep it
/// private: loopback, our port, no privilege drop, no chroot, files in the tempdir, no syslog, no
/// remote control (and so no DNSSEC trust anchor either: the README's `domain-insecure` is what
/// a validating system unbound needs).
async fn unbound(srvd: SocketAddr) -> Resolver {
    let recipe = readme_recipe("stub-zone:");
    assert!(
        recipe.contains("stub-addr: 127.0.0.1@1053"),
        "the recipe points at srvd's default address:\n{recipe}"
    );
    let recipe = recipe.replace("@1053", &format!("@{}", srvd.port()));
    Resolver::start(
        "unbound",
        "unbound",
        &["-d", "-c", "{conf}"],
        "unbound.conf",
        |dir, port| {
            let dir = dir.display();
            format!(
                "server:\n\
             \x20   interface: 127.0.0.1\n\
             \x20   port: {port}\n\
             \x20   do-ip6: no\n\
             \x20   num-threads: 1\n\
             \x20   username: \"\"\n\
             \x20   chroot: \"\"\n\
             \x20   directory: \"{dir}\"\n\
             \x20   pidfile: \"{dir}/unbound.pid\"\n\
             \x20   use-syslog: no\n\
             \x20   logfile: \"\"\n\
             remote-control:\n\
             \x20   control-enable: no\n\
             {recipe}"
            )
        },
    )
    .await
}

/// dnsmasq with the README's `server=` line after test-only settings: no /etc/resolv.conf or
/// /etc/hosts, loopback only, our port, pid file in the tempdir, log to stderr, and it stays the
/// current user (started as root it would switch to `nobody`; as another user it cannot switch).
async fn dnsmasq(srvd: SocketAddr) -> Resolver {
    let recipe = readme_recipe("server=/");
    assert!(
        recipe.contains("server=/service.local/127.0.0.1#1053"),
        "the recipe points at srvd's default address:\n{recipe}"
    );
    let recipe = recipe.replace("#1053", &format!("#{}", srvd.port()));
    Resolver::start(
        "dnsmasq",
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file={conf}",
            "--log-facility=-",
        ],
        "dnsmasq.conf",
        |dir, port| {
            let user = if rustix::process::geteuid().is_root() {
                "user=root\n"
            } else {
                ""
            };
            format!(
                "no-resolv\nno-hosts\nlisten-address=127.0.0.1\nbind-interfaces\nport={port}\n\
                 pid-file={}/dnsmasq.pid\n{user}{recipe}",
                dir.display()
            )
        },
    )
    .await
}

/// A record without its TTL (resolvers count cached TTLs down): owner, type and data (TXT as
/// its separate strings, which `Display` would run together).
fn record(r: &Record) -> String {
    let data = match &r.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!(
        "{} {} {data}",
        r.name.to_ascii().to_lowercase(),
        r.record_type(),
    )
}

/// The answer section as a sorted set of [`record`]s.
fn answer_set(reply: &Message) -> Vec<String> {
    let mut set: Vec<String> = reply.answers.iter().map(record).collect();
    set.sort();
    set.dedup();
    set
}

/// What the README's examples and a DNS-SD client ask: SRV, TXT, A, AAAA, both PTR browsing
/// steps, a CNAME followed inside the zone, NODATA and NXDOMAIN.
const QUESTIONS: &[(&str, RecordType)] = &[
    ("_http._tcp.web.service.local.", RecordType::SRV),
    ("_postgresql._tcp.db.service.local.", RecordType::SRV),
    ("_http._tcp.web.service.local.", RecordType::TXT),
    ("inst0._http._tcp.web.service.local.", RecordType::TXT),
    ("inst0._http._tcp.web.service.local.", RecordType::A),
    ("inst0._http._tcp.web.service.local.", RecordType::AAAA),
    ("_services._dns-sd._udp.service.local.", RecordType::PTR),
    ("_http._tcp.web.service.local.", RecordType::PTR),
    ("www.service.local.", RecordType::A),
    ("inst2._http._tcp.web.service.local.", RecordType::AAAA),
    ("nope.service.local.", RecordType::A),
];

/// Asks every question of srvd directly and through `resolver` (twice: the second answer
/// comes from the resolver's cache) and checks rcode and answer set agree.
async fn same_answers_as_srvd(srvd: SocketAddr, resolver: &Resolver) {
    for &(name, qtype) in QUESTIONS {
        let direct = udp(srvd, &query(name, qtype)).await;
        for round in ["first", "cached"] {
            let through = udp(resolver.addr, &query(name, qtype)).await;
            assert_eq!(
                (through.metadata.response_code, answer_set(&through)),
                (direct.metadata.response_code, answer_set(&direct)),
                "{name} {qtype} through {} ({round} answer); its log:\n{}",
                resolver.name,
                resolver.log()
            );
        }
    }
}

/// Specific answers through the resolver, so that a srvd serving nothing cannot pass.
async fn expected_answers(resolver: &Resolver) {
    let srv = udp(
        resolver.addr,
        &query("_http._tcp.web.service.local.", RecordType::SRV),
    )
    .await;
    let mut srvs = dns::srvs(&srv.answers);
    srvs.sort();
    let target = |i: u8| format!("inst{i}._http._tcp.web.service.local.");
    assert_eq!(
        srvs,
        vec![
            (10, 30, 8080, target(1)),
            (10, 60, 8080, target(0)),
            (20, 10, 8080, target(2)),
        ],
        "SRV through {}; its log:\n{}",
        resolver.name,
        resolver.log()
    );
    let a = dns::a_of(resolver.addr, "inst0._http._tcp.web.service.local.").await;
    assert_eq!(a, Some(vec!["10.0.0.1".parse().unwrap()]), "A");
    assert_eq!(
        dns::a_of(resolver.addr, "nope.service.local.").await,
        None,
        "NXDOMAIN"
    );
    let txt = udp(
        resolver.addr,
        &query("_http._tcp.web.service.local.", RecordType::TXT),
    )
    .await;
    assert_eq!(
        answer_set(&txt),
        vec![r#"_http._tcp.web.service.local. TXT "txtvers=1" "path=/api" "proto=http/1.1""#]
    );
    let ptr = udp(
        resolver.addr,
        &query("_services._dns-sd._udp.service.local.", RecordType::PTR),
    )
    .await;
    assert_eq!(
        answer_set(&ptr),
        vec![
            "_services._dns-sd._udp.service.local. PTR _http._tcp.web.service.local.",
            "_services._dns-sd._udp.service.local. PTR _postgresql._tcp.db.service.local.",
        ]
    );
}

#[tokio::test]
async fn unbound_with_the_readme_stub_zone_answers_as_srvd() {
    let srvd = TestServer::start_with(&shipped_zones(), |_| {}).await;
    let unbound = unbound(srvd.addr).await;
    expected_answers(&unbound).await;
    same_answers_as_srvd(srvd.addr, &unbound).await;
}

#[tokio::test]
async fn dnsmasq_with_the_readme_server_line_answers_as_srvd() {
    let srvd = TestServer::start_with(&shipped_zones(), |_| {}).await;
    let dnsmasq = dnsmasq(srvd.addr).await;
    expected_answers(&dnsmasq).await;
    same_answers_as_srvd(srvd.addr, &dnsmasq).await;
}
