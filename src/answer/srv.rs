//! SRV answers: the RRset goes out in RFC 2782 order, drawn afresh for every response, using the
//! ordering shared with the client library.

use hickory_proto::rr::RData;
use rand::Rng;

use super::Rr;
use crate::dnssd::srv_order::order_by_priority_weight;

/// Orders SRV records in place; non-SRV records (never mixed in practice) sort as priority 0.
pub(super) fn order<R: Rng + ?Sized>(records: &mut [Rr<'_>], rng: &mut R) {
    order_by_priority_weight(records, rng, |rr| match &rr.record.data {
        RData::SRV(srv) => (srv.priority, srv.weight),
        _ => (0, 0),
    });
}
