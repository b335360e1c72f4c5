//! Connects to a service by its DNS-SD name with plain `std::net`, in one line:
//! `TcpStream::connect(SrvName::with_resolver(name, &resolver))`.
//!
//! With srvd serving the example zone (`scripts/serve`), run in another terminal:
//!
//! ```sh
//! cargo run --example connect_std
//! ```
//!
//! The example zone lists two instances of `_demo._tcp.service.local` on 127.0.0.1: port 18081
//! at priority 0, where nothing listens, and port 18080 at priority 1. This program plays the
//! service on 18080, so the connection fails over from the first instance to the second, as an
//! RFC 2782 client should. Arguments (all optional): `[DNS SERVER] [NAME] [LISTEN ADDRESS]`,
//! defaults `127.0.0.1:1053 _demo._tcp.service.local 127.0.0.1:18080`.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use srvd::client::{SrvName, SrvResolver};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let server: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:1053").parse()?;
    let name = args
        .next()
        .unwrap_or_else(|| "_demo._tcp.service.local".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());

    // The service itself.
    let service = TcpListener::bind(&listen)?;
    let resolver = SrvResolver::with_server(server)?;

    for target in resolver.lookup_srv_blocking("", "", &name)?.targets {
        println!(
            "candidate: priority {} weight {} port {} {}",
            target.priority, target.weight, target.port, target.target
        );
    }
    // The one line: resolve, order, try each address until one connects.
    let mut stream = TcpStream::connect(SrvName::with_resolver(&name, &resolver))?;
    println!("connected to {}", stream.peer_addr()?);

    let (mut accepted, _) = service.accept()?;
    stream.write_all(b"hello over SRV\n")?;
    let mut buf = [0u8; 15];
    accepted.read_exact(&mut buf)?;
    println!(
        "the service received: {}",
        String::from_utf8_lossy(&buf).trim_end()
    );
    Ok(())
}
