//! RFC 2782 order on the wire: priorities ascending, first place shared by weight, over many
//! responses from the shipped example zone.

use hickory_proto::rr::RecordType;

use crate::support::dns::{self, query, udp};
use crate::support::{shipped_zones, srvd::TestServer};

#[tokio::test]
async fn first_place_follows_weight_share_over_10000_responses() {
    let server = TestServer::start(&shipped_zones()).await;
    let rounds = 10_000;
    let mut inst0_first = 0u32;
    let message = query("_http._tcp.web.service.local.", RecordType::SRV);
    for _ in 0..rounds {
        let reply = udp(server.addr, &message).await;
        let srvs = dns::srvs(&reply.answers);
        assert_eq!(srvs.len(), 3);
        assert_eq!(srvs[0].0, 10, "priority 10 first");
        assert_eq!(srvs[1].0, 10);
        assert_eq!(
            srvs[2],
            (20, 10, 8080, "inst2._http._tcp.web.service.local.".into())
        );
        if srvs[0].3.starts_with("inst0.") {
            inst0_first += 1;
        }
    }
    // inst0 weighs 60 of the priority's 90: first in 66.7% of responses. The standard deviation
    // over 10,000 draws is 0.47 points, so ±3 points is more than six of them: never flaky.
    let share = f64::from(inst0_first) * 100.0 / f64::from(rounds);
    assert!(
        (share - 66.67).abs() < 3.0,
        "inst0 first in {share:.2}% of responses"
    );
}

#[tokio::test]
async fn every_response_draws_a_fresh_order() {
    let server = TestServer::start(&crate::support::fixture_zones()).await;
    let message = query("_many._tcp.big.test.", RecordType::SRV);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..20 {
        let reply = dns::tcp(server.addr, &message).await;
        let srvs = dns::srvs(&reply.answers);
        assert_eq!(srvs.len(), 60);
        assert!(
            srvs.windows(2).all(|w| w[0].0 <= w[1].0),
            "priorities ascend"
        );
        orders.insert(srvs);
    }
    // 20 records per priority: two equal orders in 20 draws are astronomically unlikely.
    assert_eq!(orders.len(), 20, "each response is ordered afresh");
}
