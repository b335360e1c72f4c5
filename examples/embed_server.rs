//! Embeds srvd in another program: start it on a free loopback port with the example zone,
//! ask it one SRV question over UDP, print the answer in RFC 2782 order, shut it down.
//!
//! Run: `cargo run --example embed_server`

use std::error::Error;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use srvd::config::{Config, ZoneSource};
use srvd::zonefile;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The compiled-in example zone, served on 127.0.0.1 with a port the OS picks.
    let dir = tempfile_dir()?;
    std::fs::write(dir.join("service.local.zone"), zonefile::EMBEDDED_ZONE)?;
    let config = Config {
        listen: vec!["127.0.0.1:0".parse()?],
        zones: ZoneSource::Dir(dir.clone()),
        ..Config::default()
    };
    let running = srvd::daemon::start(&config).await?;
    let addr = running.addrs[0];
    println!("srvd is serving on {addr}");

    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("_http._tcp.web.service.local.")?,
        RecordType::SRV,
    ));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&query.to_vec()?, addr).await?;
    let mut buf = vec![0; 1232];
    let len =
        tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf)).await??;
    let reply = Message::from_vec(&buf[..len])?;
    for record in &reply.answers {
        println!("answer:     {record}");
    }
    for record in &reply.additionals {
        println!("additional: {record}");
    }

    running.shutdown();
    running.wait().await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// A fresh directory under the system temp dir (examples keep dependencies to the crate's own).
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("srvd-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
