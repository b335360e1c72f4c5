//! Response sizes: EDNS-negotiated UDP limits, TC only when the answer itself is cut, TCP in full.

use hickory_proto::rr::RecordType;

use crate::support::dns::{self, of_type, query, udp_with_size, with_edns};
use crate::support::{fixture_zones, srvd::TestServer};

const MANY: &str = "_many._tcp.big.test.";
const GLUE: &str = "_glue._tcp.big.test.";

#[tokio::test]
async fn sixty_srv_records_over_udp_without_edns_are_truncated_to_whole_records() {
    let server = TestServer::start(&fixture_zones()).await;
    let (reply, size) = udp_with_size(server.addr, &query(MANY, RecordType::SRV)).await;
    assert!(reply.metadata.truncation, "TC set");
    assert!(size <= 512, "{size} bytes");
    let srvs = dns::srvs(&reply.answers);
    assert!(
        !srvs.is_empty() && srvs.len() < 60,
        "{} records",
        srvs.len()
    );
    assert_eq!(srvs.len(), reply.answers.len(), "only whole SRV records");
    assert!(
        srvs.windows(2).all(|w| w[0].0 <= w[1].0),
        "RFC 2782 priority order"
    );
    assert!(
        reply.additionals.is_empty(),
        "no glue once the answer is cut"
    );
}

#[tokio::test]
async fn sixty_srv_records_with_edns_1232_are_truncated_at_1232() {
    let server = TestServer::start(&fixture_zones()).await;
    let (reply, size) =
        udp_with_size(server.addr, &with_edns(query(MANY, RecordType::SRV), 1232)).await;
    assert!(reply.metadata.truncation);
    assert!(size <= 1232 && size > 512, "{size} bytes");
    assert!(reply.edns.is_some(), "OPT kept even when truncated");
    let srvs = dns::srvs(&reply.answers);
    assert!(srvs.len() < 60 && srvs.len() > 20, "{} records", srvs.len());
    assert!(srvs.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[tokio::test]
async fn an_advertised_size_above_1232_is_clamped() {
    let server = TestServer::start(&fixture_zones()).await;
    let (reply, size) =
        udp_with_size(server.addr, &with_edns(query(MANY, RecordType::SRV), 65000)).await;
    assert!(reply.metadata.truncation);
    assert!(size <= 1232, "{size} bytes");
}

#[tokio::test]
async fn an_advertised_size_below_512_is_raised_to_512() {
    let server = TestServer::start(&fixture_zones()).await;
    let (reply, size) =
        udp_with_size(server.addr, &with_edns(query(MANY, RecordType::SRV), 100)).await;
    assert!(reply.metadata.truncation);
    assert!(size > 400 && size <= 512, "{size} bytes");
}

#[tokio::test]
async fn tcp_returns_all_sixty_records_with_glue() {
    let server = TestServer::start(&fixture_zones()).await;
    let reply = dns::tcp(server.addr, &query(MANY, RecordType::SRV)).await;
    assert!(!reply.metadata.truncation);
    let srvs = dns::srvs(&reply.answers);
    assert_eq!(srvs.len(), 60);
    assert!(srvs.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(of_type(&reply.additionals, RecordType::A).len(), 60);
}

#[tokio::test]
async fn glue_that_does_not_fit_is_dropped_without_tc() {
    let server = TestServer::start(&fixture_zones()).await;
    let (reply, size) = udp_with_size(server.addr, &query(GLUE, RecordType::SRV)).await;
    assert!(
        !reply.metadata.truncation,
        "dropping additional records never sets TC"
    );
    assert_eq!(dns::srvs(&reply.answers).len(), 4, "the whole answer");
    assert!(size <= 512);
    let glue = of_type(&reply.additionals, RecordType::AAAA);
    assert!(glue.len() < 32, "some glue dropped ({} kept)", glue.len());
    assert_eq!(
        glue.len() % 8,
        0,
        "glue dropped a whole RRset at a time ({} kept)",
        glue.len()
    );
    // Over TCP all 32 addresses come along.
    let full = dns::tcp(server.addr, &query(GLUE, RecordType::SRV)).await;
    assert_eq!(of_type(&full.additionals, RecordType::AAAA).len(), 32);
}
