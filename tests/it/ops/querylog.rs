//! The query log, read from the binary's stderr after a real query.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::dns::{query, udp_with_size};
use crate::support::fixture_zones;
use crate::support::srvd::spawn_binary;

#[test]
fn a_query_is_logged_in_corednss_format() {
    let zones = fixture_zones();
    let mut srvd = spawn_binary(
        &zones,
        &["--zones-dir", zones.to_str().unwrap(), "--log-queries"],
    );
    let message = query("A.Svc.Example.Test.", RecordType::A);
    let size = message.to_vec().unwrap().len();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (reply, rsize) = runtime.block_on(udp_with_size(srvd.addr, &message));
    assert_eq!(reply.answers.len(), 1);
    srvd.log_until(Duration::from_secs(5), |log| {
        log.iter().any(|l| l.contains("srvd::query"))
    });
    let line = srvd.log.iter().find(|l| l.contains("srvd::query")).unwrap();
    let entry = line.split("srvd::query: ").nth(1).unwrap();
    // {remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}
    let (peer, rest) = entry.split_once(" - ").unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{entry}");
    let expected = format!(
        "{} \"A IN a.svc.example.test. udp {size} false 512\" NOERROR qr,aa,rd {rsize} ",
        message.metadata.id
    );
    assert!(rest.starts_with(&expected), "{rest:?} vs {expected:?}");
    let duration = rest.strip_prefix(&expected).unwrap();
    let seconds: f64 = duration.strip_suffix('s').unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{duration}");
    assert!(line.contains("INFO"), "{line}");
}
