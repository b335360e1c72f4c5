//! srvd under test: in-process on a free loopback port, or the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use srvd::config::{Config, ZoneSource};
use srvd::daemon::{self, Running};

/// An in-process server; shut down when dropped.
pub struct TestServer {
    /// UDP and TCP address.
    pub addr: SocketAddr,
    running: Option<Running>,
}

impl TestServer {
    /// Starts srvd on 127.0.0.1:0 with the given config tweaks.
    pub async fn start_with(zones_dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zones: ZoneSource::Dir(zones_dir.to_path_buf()),
            ..Config::default()
        };
        tweak(&mut config);
        let running = daemon::start(&config).await.expect("srvd starts");
        Self {
            addr: running.addrs[0],
            running: Some(running),
        }
    }

    /// Starts srvd mirroring etcd at `url` for `zones` (no zone files unless `zones_dir`), and
    /// returns once the first sync finished.
    pub async fn start_etcd(
        url: &str,
        zones: &[&str],
        zones_dir: Option<&Path>,
        tweak: impl FnOnce(&mut srvd::config::EtcdConfig),
    ) -> Self {
        let mut etcd = srvd::config::EtcdConfig::new(vec![url.to_string()]);
        etcd.zones = zones
            .iter()
            .map(|z| srvd::config::parse_zone(z).unwrap())
            .collect();
        tweak(&mut etcd);
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zones: zones_dir.map_or(ZoneSource::None, |d| ZoneSource::Dir(d.to_path_buf())),
            etcd: Some(etcd),
            ..Config::default()
        };
        let running = daemon::start(&config).await.expect("srvd starts");
        // srvd serves before its first etcd read; these tests want the mirror loaded.
        super::eventually(Duration::from_secs(10), "first etcd sync finished", || {
            let synced = running.sync_status().unwrap().revision.is_some();
            async move { synced.then_some(()) }
        })
        .await;
        Self {
            addr: running.addrs[0],
            running: Some(running),
        }
    }

    /// The etcd mirror's progress.
    pub fn sync_status(&self) -> srvd::sync::SyncStatus {
        self.running.as_ref().unwrap().sync_status().unwrap()
    }

    /// How many leases srvd keeps a deadline for.
    pub fn known_leases(&self) -> u64 {
        self.running.as_ref().unwrap().known_leases().unwrap()
    }

    /// The registry-layout keys srvd mirrors now, by etcd key (empty before the first sync).
    pub fn registry(
        &self,
    ) -> std::collections::BTreeMap<String, srvd::backend::registry::RegistryEntry> {
        self.with_mirror(|mirror| {
            mirror
                .registry()
                .iter()
                .map(|e| (e.key.clone(), (**e).clone()))
                .collect()
        })
    }

    /// The SkyDNS-layout keys srvd mirrors now, as `key → host`.
    pub fn skydns_hosts(&self) -> std::collections::BTreeMap<String, String> {
        self.with_mirror(|mirror| {
            mirror
                .iter()
                .map(|e| (e.key.to_string(), e.host.to_string()))
                .collect()
        })
    }

    /// `read` applied to the published etcd mirror (the default before the first sync).
    fn with_mirror<T: Default>(&self, read: impl FnOnce(&srvd::index::mirror::Mirror) -> T) -> T {
        let snapshot = self.running.as_ref().unwrap().snapshot();
        snapshot
            .etcd()
            .and_then(|etcd| etcd.mirror.as_ref())
            .map(read)
            .unwrap_or_default()
    }

    /// Waits (bounded) until the mirror reflects `revision`.
    pub async fn wait_for_revision(&self, revision: i64) {
        assert!(
            self.running
                .as_ref()
                .unwrap()
                .wait_for_revision(revision, Duration::from_secs(10))
                .await,
            "mirror reached revision {revision} within 10 s"
        );
    }

    /// Writes `value` at `key` in etcd and waits (bounded) until the mirror holds it; returns the
    /// write's revision.
    pub async fn put(&self, client: &mut etcd_client::Client, key: &str, value: &str) -> i64 {
        let revision = client
            .put(key, value, None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        self.wait_for_revision(revision).await;
        revision
    }

    /// Starts srvd serving `zones_dir`.
    pub async fn start(zones_dir: &Path) -> Self {
        Self::start_with(zones_dir, |_| {}).await
    }

    /// Graceful shutdown, returning once every task finished.
    pub async fn shutdown(mut self) {
        let running = self.running.take().unwrap();
        running.shutdown();
        tokio::time::timeout(Duration::from_secs(10), running.wait())
            .await
            .expect("shutdown completes");
    }

    /// The bound HTTP addresses (health, ready, metrics: those configured, in that order).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().http_addrs.clone()
    }

    /// Every bound address, in `--listen` order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().addrs.clone()
    }

    /// The bound DNS over TLS and HTTPS addresses, in `Config::encrypted` order.
    pub fn encrypted_addrs(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().encrypted_addrs.clone()
    }

    /// Starts shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.running.as_ref().unwrap().shutdown();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}

/// The srvd binary, started with arguments; killed by PID on drop.
pub struct SrvdProcess {
    /// The child process.
    pub child: Child,
    /// The address from its `srvd serving` line.
    pub addr: SocketAddr,
    /// Every stderr line seen so far (up to the serving line, then as [`SrvdProcess::log_until`]
    /// reads on).
    pub log: Vec<String>,
    lines: Option<mpsc::Receiver<String>>,
}

/// Runs `srvd serve --listen 127.0.0.1:0 ARGS...` in `cwd` and waits (bounded) for its serving line.
pub fn spawn_binary(cwd: &Path, args: &[&str]) -> SrvdProcess {
    spawn_binary_logging(cwd, args, "info")
}

/// [`spawn_binary`] with `RUST_LOG` set to `filter`.
pub fn spawn_binary_logging(cwd: &Path, args: &[&str], filter: &str) -> SrvdProcess {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    spawn_serve(cwd, &all, filter)
}

/// Runs `srvd serve ARGS...` in `cwd` (no `--listen` added: e.g. with `--conf`), `RUST_LOG` set
/// to `filter`, and waits (bounded) for its serving line.
pub fn spawn_serve(cwd: &Path, args: &[&str], filter: &str) -> SrvdProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_srvd"));
    command.arg("serve").args(args);
    spawn_command(command, cwd, filter)
}

/// [`spawn_binary`] started with a soft limit of `soft` open files (the hard one unchanged), as
/// a shell's `ulimit -S -n` leaves it; the shell execs srvd, so the PID is srvd's.
pub fn spawn_binary_with_open_files(cwd: &Path, args: &[&str], soft: u64) -> SrvdProcess {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!("ulimit -S -n {soft} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_srvd"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    spawn_command(command, cwd, "info")
}

fn spawn_command(mut command: Command, cwd: &Path, filter: &str) -> SrvdProcess {
    let child = command
        .current_dir(cwd)
        .env("RUST_LOG", filter)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("srvd binary starts");
    // From here on the process is owned by a value whose Drop kills it, even if we panic.
    let mut process = SrvdProcess {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        log: Vec::new(),
        lines: None,
    };
    let stderr = process.child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("no serving line from srvd; log so far: {:#?}", process.log)
        });
        process.log.push(line.clone());
        if line.contains("srvd serving") {
            process.addr = line
                .split("udp+tcp ")
                .nth(1)
                .and_then(|rest| rest.split([',', ' ']).next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("cannot read the address in {line:?}"));
            process.lines = Some(rx);
            return process;
        }
    }
}

impl SrvdProcess {
    /// Waits (at most `limit`) until srvd logs that its first full etcd read is done.
    pub fn until_etcd_synced(&mut self, limit: Duration) {
        self.log_until(limit, |log| {
            log.iter().any(|l| l.contains("etcd initial sync complete"))
        });
    }

    /// Takes every log line written so far into [`SrvdProcess::log`] (no wait): for a failure
    /// message.
    pub fn collect_log(&mut self) -> &[String] {
        if let Some(lines) = &self.lines {
            self.log.extend(lines.try_iter());
        }
        &self.log
    }

    /// Reads stderr on until `done(&log)` holds, for at most `limit`; panics with the log
    /// otherwise.
    pub fn log_until(&mut self, limit: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = std::time::Instant::now() + limit;
        let lines = self.lines.as_ref().expect("started by spawn_binary");
        while !done(&self.log) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!("not within {limit:?}; log: {:#?}", self.log),
            }
        }
    }

    /// Sends SIGTERM, SIGINT, SIGHUP or SIGUSR1 by PID (no `kill` binary needed: minimal machines lack procps).
    pub fn signal(&self, name: &str) {
        use rustix::process::{Pid, Signal, kill_process};
        let signal = match name {
            "TERM" => Signal::TERM,
            "INT" => Signal::INT,
            "HUP" => Signal::HUP,
            "USR1" => Signal::USR1,
            other => panic!("unsupported signal {other}"),
        };
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child PID is positive");
        kill_process(pid, signal).expect("signal delivered");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "srvd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SrvdProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `srvd serve ARGS...` expecting it to fail at start; returns (exit code, stderr).
pub fn run_binary_expecting_failure(cwd: &Path, args: &[&str]) -> (i32, String) {
    let mut serve = vec!["serve", "--listen", "127.0.0.1:0"];
    serve.extend_from_slice(args);
    run_command_expecting_failure(cwd, &serve)
}

/// Runs `srvd ARGS...` (any subcommand) to completion; returns (exit code, stderr).
pub fn run_command_expecting_failure(cwd: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl TestServer {
    /// Starts srvd in-process on the configuration the Corefile `text` gives (its file paths
    /// relative to `dir`), every listen address replaced by 127.0.0.1:0, and waits (bounded) for
    /// the first etcd read when it has an etcd backend.
    pub async fn start_corefile(text: &str, dir: &Path) -> Self {
        let env = |_: &str| None;
        let corefile = srvd::config::corefile::parse(
            text,
            &dir.join("Corefile"),
            &srvd::config::corefile::blocks::Disk,
            &env,
        )
        .unwrap_or_else(|errors| panic!("the Corefile is valid: {errors:?}"));
        let mut config = corefile.into_config();
        config.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let running = daemon::start(&config).await.expect("srvd starts");
        if config.etcd.is_some() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while running.sync_status().unwrap().revision.is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "first etcd read within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Self {
            addr: running.addrs[0],
            running: Some(running),
        }
    }
}
