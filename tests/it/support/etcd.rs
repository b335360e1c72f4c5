//! A real `etcd` (Debian's etcd-server) on free loopback ports with a temporary data dir,
//! stopped by PID on drop; its log is printed when a test fails while it runs. Optionally with
//! TLS (certificates made at run time with rcgen: [`Pki`]), client-certificate checks, and auth
//! enabled for user `root` (through `etcdctl`, as an operator does it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// A running etcd member.
pub struct EtcdServer {
    child: Option<Child>,
    /// Its client URL (`http://127.0.0.1:PORT`, or `https://` with TLS).
    pub url: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    options: EtcdOptions,
    /// Auth is enabled (so the readiness check and [`EtcdServer::client`] log in as root).
    auth_on: bool,
    /// More etcd flags ([`EtcdServer::start_with_flags`]).
    flags: Vec<String>,
}

/// How a test wants etcd locked down.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Serve https with this PKI's server certificate.
    pub tls: Option<Pki>,
    /// Demand client certificates signed by the PKI's CA (`--client-cert-auth`).
    pub client_cert_auth: bool,
    /// Enable auth with user `root` and this password.
    pub root_password: Option<String>,
    /// Tokens expire this many seconds after they are issued (`--auth-token jwt,...,ttl=`).
    pub auth_token_ttl: Option<u32>,
}

/// A CA, etcd's server certificate (for 127.0.0.1 and localhost) and a client certificate,
/// as PEM files in a temporary directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory holding generated files: removed with the last clone.
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (signed by `ca`).
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes a fresh CA and certificates (ECDSA P-256, rcgen on ring).
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // A name of its own, so a certificate of another test's CA is an unknown issuer.
        static CAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("srvd test CA {} {n}", std::process::id()),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |cn: &str| {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("etcd");
        let (client_cert, client_key) = leaf("srvd");
        Self {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server-key.pem", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client-key.pem", client_key),
            _dir: Some(std::sync::Arc::new(dir)),
        }
    }

    /// Files made elsewhere (the README's openssl commands) in `dir`: `ca.pem`, `etcd.pem`,
    /// `etcd-key.pem`, `srvd.pem`, `srvd-key.pem`.
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            _dir: None,
            ca: dir.join("ca.pem"),
            server_cert: dir.join("etcd.pem"),
            server_key: dir.join("etcd-key.pem"),
            client_cert: dir.join("srvd.pem"),
            client_key: dir.join("srvd-key.pem"),
        }
    }

    fn pem(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    /// Starts etcd and waits (bounded) until it answers.
    pub async fn start() -> Self {
        Self::start_with(EtcdOptions::default()).await
    }

    /// Starts etcd locked down as `options` says; with a root password, auth is enabled (user
    /// `root` added and `auth enable` run with etcdctl) before this returns.
    pub async fn start_with(options: EtcdOptions) -> Self {
        Self::start_with_flags(options, &[]).await
    }

    /// [`EtcdServer::start_with`] passing etcd more `flags`, e.g. `--max-txn-ops 100000`: the
    /// large-data tests raise etcd's limits.
    pub async fn start_with_flags(options: EtcdOptions, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("etcd.log");
        let client_port = free_port();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut server = Self {
            child: None,
            url: format!("{scheme}://127.0.0.1:{client_port}"),
            client_port,
            peer_port: free_port(),
            dir,
            log,
            options,
            auth_on: false,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        // A port found free may be taken by a parallel test before etcd binds it: a fresh
        // etcd may move to other ports (a restart may not, so only here).
        for _ in 0..4 {
            if server.try_launch().await {
                break;
            }
            server.client_port = free_port();
            server.peer_port = free_port();
            server.url = format!("{scheme}://127.0.0.1:{}", server.client_port);
            let _ = std::fs::remove_file(&server.log);
            let _ = std::fs::remove_dir_all(server.dir.path().join("data"));
        }
        if server.child.is_none() {
            server.launch().await;
        }
        if let Some(password) = server.options.root_password.clone() {
            server.etcdctl(&["user", "add", &format!("root:{password}")]);
            server.etcdctl(&["auth", "enable"]);
            server.auth_on = true;
            // Proves the password works before a test relies on it.
            server.client().await;
        }
        server
    }

    /// Runs etcdctl against this etcd (with its TLS files and, once auth is on, as root),
    /// asserting that it succeeds; returns its output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url);
        if let Some(pki) = &self.options.tls {
            command.arg("--cacert").arg(&pki.ca);
            command.arg("--cert").arg(&pki.client_cert);
            command.arg("--key").arg(&pki.client_key);
        }
        if self.auth_on
            && let Some(password) = &self.options.root_password
        {
            command.arg("--user").arg(format!("root:{password}"));
        }
        let out = command.args(args).output().expect("etcdctl is installed");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until a token issued now has expired (`auth_token_ttl`), so that every
    /// token issued before this call has too: polls with a client that never refreshes its
    /// token until etcd refuses it ("invalid auth token", UNAUTHENTICATED).
    pub async fn until_tokens_expire(&self) {
        let password = self.options.root_password.clone().expect("auth is on");
        let options = self
            .connect_options()
            .with_user("root", password)
            .with_auto_token_refresh(false);
        let probe = Client::connect([&self.url], Some(options)).await.unwrap();
        super::eventually(Duration::from_secs(15), "the auth token expired", || {
            let mut probe = probe.clone();
            async move {
                match probe.get("/", None).await {
                    Err(etcd_client::Error::GRpcStatus(s)) if i32::from(s.code()) == 16 => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    /// The options a client that etcd accepts connects with (CA, client certificate, root).
    pub fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        if let Some(pki) = &self.options.tls {
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(Pki::pem(&pki.ca)))
                    .identity(Identity::from_pem(
                        Pki::pem(&pki.client_cert),
                        Pki::pem(&pki.client_key),
                    )),
            );
        }
        if self.auth_on
            && let Some(password) = &self.options.root_password
        {
            options = options
                .with_user("root", password.clone())
                .with_auto_token_refresh(true);
        }
        options
    }

    /// [`EtcdServer::launch`], except that an etcd that exits because its port was taken is
    /// reported (`false`, no child left) instead of failing the test.
    async fn try_launch(&mut self) -> bool {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.answers().await {
                return true;
            }
            if let Some(child) = &mut self.child
                && child.try_wait().ok().flatten().is_some()
                && self.log_text().contains("address already in use")
            {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        if let Ok(mut client) = Client::connect([&self.url], Some(self.connect_options())).await {
            tokio::time::timeout(Duration::from_secs(1), client.get("/", None))
                .await
                .is_ok_and(|r| r.is_ok())
        } else {
            false
        }
    }

    async fn launch(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.answers().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut locked = Vec::new();
        if let Some(pki) = &self.options.tls {
            locked.push("--cert-file".to_string());
            locked.push(pki.server_cert.display().to_string());
            locked.push("--key-file".to_string());
            locked.push(pki.server_key.display().to_string());
            locked.push("--trusted-ca-file".to_string());
            locked.push(pki.ca.display().to_string());
            if self.options.client_cert_auth {
                locked.push("--client-cert-auth".to_string());
            }
        }
        if let Some(ttl) = self.options.auth_token_ttl {
            // JWT, not simple tokens: a simple token's TTL starts again at each use, so a test
            // could not poll for its expiry without postponing it; a JWT's expiry is fixed.
            let key = rcgen::KeyPair::generate().unwrap();
            let (private, public) = (
                self.dir.path().join("jwt.key"),
                self.dir.path().join("jwt.pub"),
            );
            if !private.exists() {
                std::fs::write(&private, key.serialize_pem()).unwrap();
                std::fs::write(&public, key.public_key_pem()).unwrap();
            }
            locked.push("--auth-token".to_string());
            locked.push(format!(
                "jwt,pub-key={},priv-key={},sign-method=ES256,ttl={ttl}s",
                public.display(),
                private.display()
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "srvd-test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("srvd-test={peer}")])
            .args(&locked)
            .args(&self.flags)
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (scripts/install-deps installs etcd-server)");
        self.child = Some(child);
    }

    /// A client for tests to write with.
    pub async fn client(&self) -> Client {
        Client::connect([&self.url], Some(self.connect_options()))
            .await
            .unwrap()
    }

    /// Stops etcd (SIGKILL by PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes etcd (SIGSTOP by PID): the kernel still completes TCP connects to it, but it
    /// answers nothing until [`EtcdServer::thaw`] (a SIGKILL on drop ends it either way).
    pub fn freeze(&self) {
        freeze_process(self.child.as_ref().expect("etcd is running"));
    }

    /// Lets a frozen etcd run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("etcd is running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a PID is positive");
        rustix::process::kill_process(pid, signal).expect("signal delivered");
    }

    /// Starts etcd again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Starts etcd again on the same port with an empty data dir: every key and lease is gone,
    /// as after losing a single-member cluster's disk.
    pub async fn restart_wiped(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path().join("data")).unwrap();
        self.launch().await;
    }

    /// Starts the same data on a different client port (so a watcher on the old port falls
    /// behind), returning the new URL.
    pub async fn move_to_new_port(&mut self) -> String {
        self.stop();
        self.client_port = free_port();
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.url = format!("{scheme}://127.0.0.1:{}", self.client_port);
        self.launch().await;
        self.url.clone()
    }

    /// Starts the same data back on `url`'s port.
    pub async fn move_back(&mut self, url: &str) {
        self.stop();
        self.url = url.to_string();
        self.client_port = url.rsplit(':').next().unwrap().parse().unwrap();
        self.launch().await;
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Compacts etcd (physically: the history is gone when this returns) at its current revision,
/// which it returns: a watch or read from any earlier revision is refused afterwards.
pub async fn compact_to_now(client: &mut Client) -> i64 {
    let revision = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    revision
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- etcd log ({}):\n{}", self.url, self.log_text());
        }
        self.stop();
    }
}

/// One member of an [`EtcdCluster`].
struct Member {
    name: String,
    /// Its client URL.
    url: String,
    peer: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Stopped with SIGSTOP and not yet continued (so drop continues it before killing).
    frozen: bool,
}

/// A 3-member etcd cluster on free loopback ports, each member with its own data dir; members
/// are killed, frozen (SIGSTOP) and restarted by PID, one at a time, as a test breaks things.
pub struct EtcdCluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts three members and waits (bounded) until each answers and the cluster has a leader.
    pub async fn start() -> Self {
        // Ports found free may be taken before etcd binds them: a fresh cluster moves to others.
        for _ in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let members: Vec<Member> = (0..3)
                .map(|i| Member {
                    name: format!("m{i}"),
                    url: format!("http://127.0.0.1:{}", free_port()),
                    peer: format!("http://127.0.0.1:{}", free_port()),
                    data: dir.path().join(format!("m{i}")),
                    log: dir.path().join(format!("m{i}.log")),
                    child: None,
                    frozen: false,
                })
                .collect();
            let mut cluster = Self { members, _dir: dir };
            for i in 0..3 {
                cluster.spawn(i);
            }
            if cluster.until_ready().await {
                return cluster;
            }
        }
        panic!("a 3-member etcd cluster did not start on free ports in 4 attempts");
    }

    /// The `--initial-cluster` value naming all three members.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &m.url])
            .args(["--advertise-client-urls", &m.url])
            .args(["--listen-peer-urls", &m.peer])
            .args(["--initial-advertise-peer-urls", &m.peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "srvd-test-cluster"])
            // Short election timings: a lost leader is replaced within about a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (scripts/install-deps installs etcd-server)");
        m.child = Some(child);
        m.frozen = false;
    }

    /// Waits (bounded, 30 s) until every running member answers a linearizable read; `false`
    /// when a member exited because its port was taken (the caller starts afresh).
    async fn until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all = true;
            for i in 0..self.members.len() {
                if self.members[i].child.is_some() && !self.answers(i).await {
                    all = false;
                }
            }
            if all {
                return true;
            }
            for m in &mut self.members {
                if let Some(child) = &mut m.child
                    && child.try_wait().ok().flatten().is_some()
                    && std::fs::read_to_string(&m.log)
                        .unwrap_or_default()
                        .contains("address already in use")
                {
                    self.stop_all();
                    return false;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster did not start: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether member `i` answers a (linearizable, so quorum-backed) read within a second.
    async fn answers(&self, i: usize) -> bool {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        let Ok(mut client) = Client::connect([&self.members[i].url], Some(options)).await else {
            return false;
        };
        tokio::time::timeout(Duration::from_secs(1), client.get("/", None))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Every member's client URL, in member order.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }

    /// A client talking to member `i` only (writes through it reach the leader).
    pub async fn client(&self, i: usize) -> Client {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        Client::connect([&self.members[i].url], Some(options))
            .await
            .unwrap()
    }

    /// The index of the current leader, asked of a running member through the maintenance
    /// API (bounded: 10 s, through an election).
    pub async fn leader(&self) -> usize {
        let live: Vec<usize> = (0..3)
            .filter(|i| self.members[*i].child.is_some() && !self.members[*i].frozen)
            .collect();
        super::eventually(Duration::from_secs(10), "the cluster has a leader", || {
            let live = live.clone();
            async move {
                for i in live {
                    let mut client = self.client(i).await;
                    let Ok(Ok(status)) =
                        tokio::time::timeout(Duration::from_secs(1), client.status()).await
                    else {
                        continue;
                    };
                    let own = status.header()?.member_id();
                    if status.leader() == 0 {
                        continue;
                    }
                    if status.leader() == own {
                        return Some(i);
                    }
                    // Ask the leader itself, so the answer is the member's index.
                    let members = client.member_list().await.ok()?;
                    let leader = members
                        .members()
                        .iter()
                        .find(|m| m.id() == status.leader())?;
                    return self.members.iter().position(|m| m.name == leader.name());
                }
                None
            }
        })
        .await
    }

    /// How many watchers member `i` serves (its `/metrics`): tells which member holds a client's
    /// watch when the test's own clients watch nothing (0 for a killed or frozen member).
    pub async fn watchers(&self, i: usize) -> u64 {
        if self.members[i].child.is_none() || self.members[i].frozen {
            return 0;
        }
        let addr = self.members[i]
            .url
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let (_, body) = super::http::get(addr, "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Member `i`'s counter or gauge `name` (an unlabelled sample, or the sum of its labelled
    /// ones) from its `/metrics`; 0 for a killed or frozen member.
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        if self.members[i].child.is_none() || self.members[i].frozen {
            return 0.0;
        }
        metric_at(&self.members[i].url, name).await
    }

    /// [`EtcdCluster::metric`] summed over the members.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for i in 0..self.members.len() {
            sum += self.metric(i, name).await;
        }
        sum
    }

    /// Kills member `i` (SIGKILL by PID) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            if m.frozen {
                Self::signal(&child, rustix::process::Signal::CONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        m.frozen = false;
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open and the kernel still completes TCP
    /// connects to it, but it answers nothing.
    pub fn freeze(&mut self, i: usize) {
        let m = &mut self.members[i];
        freeze_process(m.child.as_ref().unwrap());
        m.frozen = true;
    }

    /// Thaws member `i` (SIGCONT).
    pub fn thaw(&mut self, i: usize) {
        let m = &mut self.members[i];
        Self::signal(m.child.as_ref().unwrap(), rustix::process::Signal::CONT);
        m.frozen = false;
    }

    fn signal(child: &Child, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a PID is positive");
        rustix::process::kill_process(pid, signal).expect("signal delivered");
    }

    /// Starts member `i` again on its ports and data (it rejoins the cluster) and waits
    /// (bounded) until it answers.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers(i).await {
            assert!(
                Instant::now() < deadline,
                "etcd member {i} did not restart: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ({}):\n{}",
                    m.name,
                    m.url,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop_all();
    }
}

/// The sum of the samples of `name` (unlabelled or labelled) in the Prometheus text that
/// `url` (`http://127.0.0.1:PORT`) serves at `/metrics`.
async fn metric_at(url: &str, name: &str) -> f64 {
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let (_, body) = super::http::get(addr, "/metrics").await;
    super::http::sum_samples(&body, name)
}

/// `etcd grpc-proxy start` in front of a cluster's members, on a free loopback port with its
/// own data dir: the way many srvd replicas share one cluster, since the proxy serves identical
/// watches from one watch of its own on a member. Stopped by PID on drop.
pub struct EtcdProxy {
    child: Option<Child>,
    /// Its client URL (`http://127.0.0.1:PORT`), for srvd's `--etcd`.
    pub url: String,
    metrics: String,
    endpoints: Vec<String>,
    dir: tempfile::TempDir,
}

impl EtcdProxy {
    /// Starts a proxy for `endpoints` (client URLs) and waits (bounded) until a read through it
    /// succeeds.
    pub async fn start(endpoints: &[String]) -> Self {
        for _ in 0..4 {
            let mut proxy = Self {
                child: None,
                url: format!("http://127.0.0.1:{}", free_port()),
                metrics: format!("http://127.0.0.1:{}", free_port()),
                endpoints: endpoints.to_vec(),
                dir: tempfile::tempdir().unwrap(),
            };
            if proxy.launch().await {
                return proxy;
            }
        }
        panic!("etcd grpc-proxy did not start on free ports in 4 attempts");
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    /// Spawns the proxy on its ports and waits (bounded, 30 s) until it answers; `false` when it
    /// exited because a port was taken.
    async fn launch(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new("etcd")
            .args(["grpc-proxy", "start"])
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .arg(format!(
                "--listen-addr={}",
                self.url.trim_start_matches("http://")
            ))
            .arg(format!("--metrics-addr={}", self.metrics))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (scripts/install-deps installs etcd-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
            if let Ok(mut client) = Client::connect([&self.url], Some(options)).await
                && let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), client.get("/", None)).await
            {
                return true;
            }
            if let Some(child) = &mut self.child
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                let text = std::fs::read_to_string(self.log()).unwrap_or_default();
                assert!(
                    text.contains("address already in use"),
                    "etcd grpc-proxy exited: {text}"
                );
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "etcd grpc-proxy did not start: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The proxy's counter or gauge `name` (summed over labels) from its `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(&self.metrics, name).await
    }

    /// Kills the proxy (SIGKILL by PID): every replica behind it is cut off from etcd.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the proxy again on the same ports (its replicas reconnect to the same URL).
    pub async fn restart(&mut self) {
        self.stop();
        assert!(self.launch().await, "the proxy's port was taken meanwhile");
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- etcd grpc-proxy log ({}):\n{}",
                self.url,
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
        }
        self.stop();
    }
}

/// SIGSTOPs `child` and waits (bounded) until every one of its threads has stopped: `kill`
/// returns once the signal is queued, and a busy etcd could otherwise still deliver a write
/// that the caller makes "after" the freeze.
fn freeze_process(child: &Child) {
    let raw = child.id();
    let pid = rustix::process::Pid::from_raw(raw as i32).expect("a PID is positive");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("signal delivered");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{raw}/task")).expect("the process exists");
        let all_stopped = tasks.flatten().all(|task| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        });
        if all_stopped {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd {raw} did not stop on SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
