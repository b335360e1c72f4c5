//! hickory-dns serving srvd's etcd-backed zone: hickory-server's `Server` and `Catalog`, with the
//! zone answered by `srvd::hickory::SrvdZone` over srvd's live etcd mirror. Answers are the ones
//! `srvd serve` gives (SRV in a fresh RFC 2782 order per response, glue in Additional), and etcd
//! writes show up as they do there.
//!
//! Run: `cargo run --features hickory --example hickory_zone -- --etcd http://127.0.0.1:2379
//! --zone service.local --listen 127.0.0.1:1054`, then `dig @127.0.0.1 -p 1054
//! _http._tcp.backend.service.local SRV`. Stops on Ctrl-C.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::zone_handler::Catalog;
use srvd::config::{Config, EtcdConfig, ZoneSource};
use tokio::net::{TcpListener, UdpSocket};
use tracing_subscriber::EnvFilter;

/// Idle TCP connections are closed after this long (hickory's per-connection timeout).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (hickory's own default).
const TCP_RESPONSE_BUFFER: usize = 32;

struct Args {
    etcd: String,
    zone: String,
    listen: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut etcd = None;
    let mut zone = None;
    let mut listen = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--etcd" => etcd = Some(value),
            "--zone" => zone = Some(value),
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value:?}: {e}"))?,
                );
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let usage = "usage: hickory_zone --etcd URL --zone ZONE --listen ADDR:PORT";
    Ok(Args {
        etcd: etcd.ok_or(usage)?,
        zone: zone.ok_or(usage)?,
        listen: listen.ok_or(usage)?,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // hickory-server logs two `info!` lines per response: keep it at warn.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn")),
        )
        .init();
    let args = parse_args()?;

    // The same settings `srvd serve --etcd URL --zone ZONE` builds (no zone files).
    let mut etcd = EtcdConfig::new(vec![args.etcd.clone()]);
    etcd.zones = vec![srvd::config::parse_zone(&args.zone)?];
    let config = Config {
        zones: ZoneSource::None,
        etcd: Some(etcd),
        ..Config::default()
    };
    let zones = srvd::hickory::Zones::start(&config).await?;

    let mut catalog = Catalog::new();
    zones.add_to(&mut catalog);
    let mut server = Server::new(catalog);
    server.register_socket(UdpSocket::bind(args.listen).await?);
    let tcp = TcpListener::bind(args.listen).await?;
    let listen = tcp.local_addr()?;
    server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    // Tests read this line: keep its shape.
    tracing::info!(%listen, zone = %args.zone, etcd = %args.etcd, "hickory-dns serving srvd's zone");

    tokio::signal::ctrl_c().await?;
    server.shutdown_gracefully().await?;
    zones.stop().await;
    Ok(())
}
