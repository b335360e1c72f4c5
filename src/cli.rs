//! The command line: `srvd serve`. Parsing only; `daemon` does the work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_LISTEN, ZoneSource};
use crate::server::TcpLimits;

/// srvd: an authoritative DNS-SD server.
#[derive(Debug, Parser)]
#[command(name = "srvd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS over UDP and TCP from zone files.
    Serve(ServeArgs),
}

/// `srvd serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve UDP and TCP on; repeat for several (IPv6: `[::1]:1053`).
    #[arg(long = "listen", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,
    /// Directory of `<zone>.zone` files [default: `zones`, or the embedded example zone when
    /// `zones` does not exist].
    #[arg(long, value_name = "DIR")]
    pub zones_dir: Option<PathBuf>,
    /// Close a TCP connection after this many seconds without a query.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tcp_idle_timeout: u64,
    /// Most TCP connections served at once; further ones are closed.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub tcp_max_connections: usize,
}

impl ServeArgs {
    /// The validated configuration.
    ///
    /// # Errors
    /// A limit of zero.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        anyhow::ensure!(
            self.tcp_max_connections > 0,
            "--tcp-max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.tcp_idle_timeout > 0,
            "--tcp-idle-timeout must be at least 1 second"
        );
        Ok(Config {
            listen: self.listen.clone(),
            zones: match &self.zones_dir {
                Some(dir) => ZoneSource::Dir(dir.clone()),
                None => ZoneSource::DefaultDirOrEmbedded,
            },
            tcp: TcpLimits {
                idle_timeout: Duration::from_secs(self.tcp_idle_timeout),
                max_connections: self.tcp_max_connections,
            },
            ..Config::default()
        })
    }
}

/// Runs the parsed command line to completion.
///
/// # Errors
/// Start-up failures (a zone file, a busy address), with context.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.to_config()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = crate::daemon::start(&config).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    running.shutdown();
    if tokio::time::timeout(config.shutdown_grace, running.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "in-flight TCP answers did not finish in time");
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
        _ = term.recv() => Ok(()),
    }
}
