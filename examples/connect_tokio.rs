//! Connects to a service by its DNS-SD name with tokio, in one `.await`:
//! `srvd::client::connect(name, &resolver).await`.
//!
//! With srvd serving the example zone (`scripts/serve`), run in another terminal:
//!
//! ```sh
//! cargo run --example connect_tokio
//! ```
//!
//! As in `connect_std`, `_demo._tcp.service.local` lists 127.0.0.1:18081 (priority 0, nothing
//! listens) and 127.0.0.1:18080 (priority 1), where this program listens itself: the connection
//! fails over to the second instance. Arguments (all optional): `[DNS SERVER] [NAME] [LISTEN
//! ADDRESS]`, defaults `127.0.0.1:1053 _demo._tcp.service.local 127.0.0.1:18080`.

use std::error::Error;
use std::net::SocketAddr;

use srvd::client::SrvResolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let server: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:1053").parse()?;
    let name = args
        .next()
        .unwrap_or_else(|| "_demo._tcp.service.local".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());

    let service = TcpListener::bind(&listen).await?;
    let resolver = SrvResolver::with_server(server)?;

    let mut stream = srvd::client::connect(&name, &resolver).await?;
    println!("connected to {}", stream.peer_addr()?);

    let (mut accepted, _) = service.accept().await?;
    stream.write_all(b"hello over SRV\n").await?;
    let mut buf = [0u8; 15];
    accepted.read_exact(&mut buf).await?;
    println!(
        "the service received: {}",
        String::from_utf8_lossy(&buf).trim_end()
    );
    Ok(())
}
