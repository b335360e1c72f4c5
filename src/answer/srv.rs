//! SRV answers: the RRset goes out in RFC 2782 order, drawn afresh for every response, using the
//! ordering shared with the client library.

use hickory_proto::rr::RData;
use rand::Rng;

use super::Rr;
use crate::dnssd::srv_order::select_first_by_priority_weight;

/// Puts the first `k` records of an RFC 2782 order of all `records` in front, in order (the rest
/// stays behind in no order, to be cut); non-SRV records (never mixed in practice) sort as
/// priority 0.
pub(super) fn order_first<R: Rng + ?Sized>(records: &mut [Rr<'_>], k: usize, rng: &mut R) {
    select_first_by_priority_weight(records, k, rng, |rr| match &rr.record.data {
        RData::SRV(srv) => (srv.priority, srv.weight),
        _ => (0, 0),
    });
}
