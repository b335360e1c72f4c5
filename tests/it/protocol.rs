//! Wire-level behaviour: EDNS, RCODEs for bad or unsupported queries, hostile packets.

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::dns::{query, udp, udp_raw, with_edns};
use crate::support::{fixture_zones, srvd::TestServer};

#[tokio::test]
async fn response_carries_opt_exactly_when_the_query_did() {
    let server = TestServer::start(&fixture_zones()).await;
    let plain = udp(server.addr, &query("a.svc.example.test.", RecordType::A)).await;
    assert!(plain.edns.is_none());
    let edns = udp(
        server.addr,
        &with_edns(query("a.svc.example.test.", RecordType::A), 4096),
    )
    .await;
    let opt = edns.edns.expect("OPT in the response");
    assert_eq!(opt.max_payload(), 1232, "srvd advertises its own limit");
    assert_eq!(opt.version(), 0);
    // negative answers and refusals keep the OPT too
    let refused = udp(
        server.addr,
        &with_edns(query("example.org.", RecordType::A), 1232),
    )
    .await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.edns.is_some());
}

#[tokio::test]
async fn edns_version_above_zero_gets_badvers() {
    let server = TestServer::start(&fixture_zones()).await;
    let mut message = query("a.svc.example.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_version(1);
    message.edns = Some(edns);
    let raw = udp_raw(server.addr, &message.to_vec().unwrap())
        .await
        .unwrap();
    let reply = Message::from_vec(&raw).unwrap();
    // Extended RCODE 16 (BADVERS; hickory decodes the shared code 16 as BADSIG).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(raw[3] & 0x0f, 0, "header RCODE bits 0, the rest in the OPT");
    assert!(reply.answers.is_empty());
    assert_eq!(
        reply.edns.unwrap().version(),
        0,
        "the OPT says which version we speak"
    );
}

#[tokio::test]
async fn opcodes_other_than_query_get_notimp() {
    let server = TestServer::start(&fixture_zones()).await;
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut message = query("example.test.", RecordType::SOA);
        message.metadata.op_code = op;
        let reply = udp(server.addr, &message).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(reply.metadata.op_code, op);
    }
}

/// A query header: id 0xBEEF, RD, the given counts.
fn header(qd: u16, an: u16, flags: u16) -> Vec<u8> {
    let mut h = vec![0xBE, 0xEF];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&qd.to_be_bytes());
    h.extend_from_slice(&an.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

fn question(name_wire: &[u8]) -> Vec<u8> {
    let mut q = name_wire.to_vec();
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

const A_SVC: &[u8] = b"\x01a\x03svc\x07example\x04test\x00";

#[tokio::test]
async fn hostile_packets_get_formerr_or_silence_and_the_server_keeps_answering() {
    let server = TestServer::start(&fixture_zones()).await;
    let long_label = {
        let mut n = vec![64u8];
        n.extend_from_slice(&[b'x'; 64]);
        n.push(0);
        n
    };
    let cases: Vec<(&str, Vec<u8>, Option<ResponseCode>)> = vec![
        ("empty datagram", vec![], None),
        ("short header", vec![0xBE, 0xEF, 0x01], None),
        (
            "QDCOUNT 0",
            header(0, 0, 0x0100),
            Some(ResponseCode::FormErr),
        ),
        (
            "QDCOUNT 2",
            [header(2, 0, 0x0100), question(A_SVC), question(A_SVC)].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "label over 63 bytes",
            [header(1, 0, 0x0100), question(&long_label)].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "compression loop",
            [header(1, 0, 0x0100), question(&[0xC0, 0x0C])].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            // Decoded, the name grows (the header's bytes 2.. read as the label `\000`):
            // echoed in a REFUSED it made the answer larger than the query (found by fuzzing).
            "compression pointer into the header",
            [header(1, 0, 0x0100), question(&[0xC0, 0x02])].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "truncated question",
            [header(1, 0, 0x0100), b"\x01a\x03sv".to_vec()].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "ANCOUNT promises a record that is not there",
            [header(1, 1, 0x0100), question(A_SVC)].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "a response sent as a query",
            [header(1, 0, 0x8500), question(A_SVC)].concat(),
            None,
        ),
    ];
    for (label, bytes, expected) in cases {
        let reply = udp_raw(server.addr, &bytes).await;
        match expected {
            None => assert!(reply.is_none(), "{label}: expected silence, got {reply:?}"),
            Some(rcode) => {
                let raw = reply.unwrap_or_else(|| panic!("{label}: expected {rcode}, got silence"));
                let reply = Message::from_vec(&raw).unwrap();
                assert_eq!(reply.metadata.id, 0xBEEF, "{label}");
                assert_eq!(reply.metadata.response_code, rcode, "{label}");
                assert!(reply.answers.is_empty(), "{label}");
                assert!(
                    raw.len() <= bytes.len().max(12) + 4,
                    "{label}: reply larger than needed"
                );
            }
        }
        let ok = udp(server.addr, &query("a.svc.example.test.", RecordType::A)).await;
        assert_eq!(ok.answers.len(), 1, "still answering after {label}");
    }
}

#[tokio::test]
async fn non_in_classes_are_refused() {
    let server = TestServer::start(&fixture_zones()).await;
    let mut message = query("a.svc.example.test.", RecordType::A);
    message.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let reply = udp(server.addr, &message).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}
