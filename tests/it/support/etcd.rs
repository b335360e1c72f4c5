//! A real `etcd` (Debian's etcd-server) on free loopback ports with a temporary data dir,
//! stopped by PID on drop; its log is printed when a test fails while it runs.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;

/// A running etcd member.
pub struct EtcdServer {
    child: Option<Child>,
    /// Its client URL (`http://127.0.0.1:PORT`).
    pub url: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
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
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("etcd.log");
        let client_port = free_port();
        let mut server = Self {
            child: None,
            url: format!("http://127.0.0.1:{client_port}"),
            client_port,
            peer_port: free_port(),
            dir,
            log,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut client) = Client::connect([&self.url], None).await
                && tokio::time::timeout(Duration::from_secs(1), client.get("/", None))
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
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

    /// A client for tests to write with.
    pub async fn client(&self) -> Client {
        Client::connect([&self.url], None).await.unwrap()
    }

    /// Stops etcd (SIGKILL by PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
        self.url = format!("http://127.0.0.1:{}", self.client_port);
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

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- etcd log ({}):\n{}", self.url, self.log_text());
        }
        self.stop();
    }
}
