//! The fuzz targets: one function per input format srvd reads from the outside, each taking raw
//! bytes and returning `Err` with the broken promise (a panic is caught by the caller).
//!
//! Shared by the mutation driver (`examples/fuzz.rs`) and the corpus replay in the normal test
//! suite (`tests/it/fuzz_corpus.rs`), so a committed crash input is checked by exactly the code
//! that found it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use srvd::config::corefile::{self, blocks::Files};
use srvd::daemon::build_index;
use srvd::index::IndexHandle;
use srvd::server::handler::{Handler, Scratch};
use srvd::server::wire::{MAX_TCP_MESSAGE, Transport, payload_limit};
use srvd::zonefile;

/// Every target's name, in the order `scripts/fuzz` runs them.
pub const TARGETS: [&str; 5] = ["packet", "skydns", "registry", "zonefile", "corefile"];

/// What one input did: `Ok(signature)` (a small summary of the outcome, which the driver uses
/// as feedback: an input with an unseen signature joins the corpus) or the violated promise.
pub type Outcome = Result<u64, String>;

/// Tokens worth inserting whole, per target: a byte flip rarely spells `"priority"`.
pub fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "packet" => &[
            b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", // OPT, 1232 bytes
            b"\x00\x00\x29\xff\xff\x00\x00\x80\x00\x00\x00", // OPT, 65535, DO
            b"\x00\x00\x29\x00\x00\x01\x00\x00\x00\x00\x00", // OPT, version 1
            b"\x00\x0a\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08", // cookie option
            b"\xc0\x0c",
            b"\x00\x21\x00\x01",
            b"\x00\x01\x00\x01",
            b"\x00\xff\x00\x01",
            b"\x00\x0c\x00\x01",
            b"\x00\x10\x00\xff",
            b"\x04_tcp",
            b"\x05_http",
            b"\x03web\x07service\x05local\x00",
            b"\x04etcd\x04test\x00",
            b"\x03any",
        ],
        "skydns" | "registry" => &[
            b"\"host\":",
            b"\"port\":",
            b"\"priority\":",
            b"\"weight\":",
            b"\"text\":",
            b"\"ttl\":",
            b"\"mail\":",
            b"\"group\":",
            b"\"targetstrip\":",
            b"\"Addr\":",
            b"\"Port\":",
            b"\"Metadata\":",
            b"\"Priority\":",
            b"\"Weight\":",
            b"\"Ttl\":",
            b"\"10.0.0.1\"",
            b"\"fd00::1\"",
            b"\"[fd00::1]:80\"",
            b"\"a.example.\"",
            b"-1",
            b"4294967296",
            b"1e400",
            b"null",
            b"{}",
            b"[]",
            b"/skydns/",
            b"/services/",
            b"/*/",
            b"\\u0000",
        ],
        "zonefile" => &[
            b"$ORIGIN ",
            b"$TTL ",
            b" IN ",
            b" SOA ",
            b" SRV ",
            b" TXT ",
            b" PTR ",
            b" CNAME ",
            b" AAAA ",
            b" A ",
            b" NS ",
            b"TYPE65534 \\# 2 abcd",
            b"( ",
            b" )",
            b"\"",
            b";",
            b"\\",
            b"@",
            b"*.",
            b"\n",
            b" 65535 ",
            b" 4294967296 ",
        ],
        "corefile" => &[
            b"etcd ",
            b"file ",
            b"registry ",
            b"health ",
            b"ready ",
            b"prometheus ",
            b"log ",
            b"errors ",
            b"reload ",
            b"bind ",
            b"tls ",
            b"import ",
            b"path ",
            b"endpoint ",
            b"fallthrough",
            b"{\n",
            b"}\n",
            b"dns://",
            b"tls://",
            b"https://",
            b":53",
            b":65536",
            b"{$ENV}",
            b"(snippet)",
            b"\"",
            b"#",
        ],
        _ => &[],
    }
}

/// The handlers the packet target asks: the shipped zone and a small etcd mirror (SkyDNS keys
/// under `etcd.test.`, the service registry under `reg.test.`), each as the UDP and TCP loops
/// would call them.
pub struct Packet {
    handler: Handler,
    udp: Scratch,
    tcp: Scratch,
    out: Vec<u8>,
    peer: SocketAddr,
}

impl Packet {
    /// Builds the index as the server would publish it.
    ///
    /// # Panics
    /// If the fixed test data does not load (a bug here, not an input).
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        use srvd::config::{EtcdConfig, parse_zone};
        use srvd::index::EtcdData;
        use srvd::index::leases::{LeaseBounds, LeaseTable};
        use srvd::index::mirror::Mirror;
        use srvd::index::registry::RegistryMirror;

        let shipped = zonefile::embedded().expect("embedded zone");
        let mut etcd = EtcdConfig::new(Vec::new());
        let skydns_zone = parse_zone("etcd.test.").expect("zone");
        let registry_zone = parse_zone("reg.test.").expect("zone");
        etcd.zones = vec![skydns_zone, registry_zone.clone()];
        etcd.registry_prefixes = vec!["/services".into()];
        etcd.registry_zone = Some(registry_zone.clone());
        let (base, paths) = build_index(vec![shipped], Some(&etcd)).expect("index");
        let skydns = [
            (
                "/skydns/test/etcd/web/_tcp/_http/a",
                r#"{"host":"10.0.0.1","port":8080,"priority":10,"weight":60}"#,
            ),
            (
                "/skydns/test/etcd/web/_tcp/_http/b",
                r#"{"host":"fd00::2","port":8080,"priority":10,"weight":30,"text":"txtvers=1"}"#,
            ),
            (
                "/skydns/test/etcd/web/_tcp/_http/c",
                r#"{"host":"c.web.etcd.test","port":8080,"priority":20}"#,
            ),
            ("/skydns/test/etcd/web/c", r#"{"host":"10.0.0.3"}"#),
            ("/skydns/test/etcd/alias", r#"{"host":"web.etcd.test"}"#),
            ("/skydns/test/etcd/loop", r#"{"host":"loop.etcd.test"}"#),
            (
                "/skydns/test/etcd/mail",
                r#"{"host":"10.0.0.9","mail":true,"priority":5}"#,
            ),
            (
                "/skydns/test/etcd/*/wild",
                r#"{"host":"10.0.0.7","ttl":30}"#,
            ),
        ];
        let entries: Vec<_> = skydns
            .iter()
            .map(|(key, value)| {
                let entry =
                    srvd::backend::skydns::decode(key, value.as_bytes(), 0).expect("skydns value");
                (Arc::new(entry), 1)
            })
            .collect();
        let mut mirror = Mirror::from_listing(&paths, 1, entries, None);
        let registry = [
            (
                "/services/web/i0",
                r#"{"Addr":"10.1.0.1","Port":80,"Metadata":{"path":"/"}}"#,
            ),
            (
                "/services/web/i1",
                r#"{"Addr":"[fd00::3]:81","Priority":5,"Weight":7}"#,
            ),
            ("/services/db/i0", r#"{"Addr":"db.example.","Port":5432}"#),
        ];
        let entries: Vec<_> = registry
            .iter()
            .map(|(key, value)| {
                Arc::new(
                    srvd::backend::registry::decode("/services", key, value.as_bytes(), 0)
                        .expect("registry value"),
                )
            })
            .collect();
        *mirror.registry_mut() = RegistryMirror::from_entries(registry_zone, entries);
        let index = base.with_etcd(EtcdData {
            mirror: Some(mirror),
            root: "/skydns".into(),
            leases: Arc::new(LeaseTable::new(LeaseBounds::default(), |_| {})),
        });
        let handler = Handler::new(Arc::new(IndexHandle::new(index)));
        let udp = handler.scratch(Transport::Udp, false);
        let tcp = handler.scratch(Transport::Tcp, false);
        Self {
            handler,
            udp,
            tcp,
            out: Vec::with_capacity(usize::from(MAX_TCP_MESSAGE)),
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        }
    }

    /// `request` over UDP then TCP: each response fits the transport's limit for this request,
    /// parses, and, when it refuses or rejects the query, is no larger than the request.
    pub fn run(&mut self, request: &[u8]) -> Outcome {
        // The limit a client may expect: hickory's reading of the request's OPT record.
        let edns = Message::from_vec(request)
            .ok()
            .and_then(|m| m.edns.as_ref().map(|e| e.max_payload()));
        let mut signature = 0u64;
        for transport in [Transport::Udp, Transport::Tcp] {
            let scratch = match transport {
                Transport::Udp => &mut self.udp,
                Transport::Tcp => &mut self.tcp,
            };
            self.out.clear();
            let sent = self
                .handler
                .respond(request, transport, self.peer, scratch, &mut self.out);
            if !sent {
                signature = signature.wrapping_mul(31).wrapping_add(1);
                continue;
            }
            let out = &self.out;
            let limit = usize::from(payload_limit(transport, edns));
            if out.len() > limit {
                return Err(format!(
                    "{transport:?} response of {} bytes exceeds the request's limit of {limit}",
                    out.len()
                ));
            }
            let response = Message::from_vec(out)
                .map_err(|e| format!("{transport:?} response does not parse: {e}"))?;
            if request.len() >= 2
                && response.metadata.id != u16::from_be_bytes([request[0], request[1]])
            {
                return Err(format!("{transport:?} response has another ID"));
            }
            let rcode = response.metadata.response_code;
            let rejected = matches!(
                rcode,
                ResponseCode::FormErr
                    | ResponseCode::Refused
                    | ResponseCode::NotImp
                    | ResponseCode::BADVERS
            );
            if rejected && out.len() > request.len() {
                return Err(format!(
                    "{transport:?} {rcode} response of {} bytes to a request of {} bytes",
                    out.len(),
                    request.len()
                ));
            }
            signature = signature
                .wrapping_mul(31)
                .wrapping_add(u64::from(u16::from(rcode)) << 8)
                .wrapping_add(u64::from(response.metadata.truncation) << 4)
                .wrapping_add(response.answers.len().min(15) as u64);
        }
        Ok(signature)
    }
}

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits an input into a key (its first line) and a value (the rest).
fn key_value(input: &[u8]) -> (String, &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&input[..i]).into_owned(),
            &input[i + 1..],
        ),
        None => (String::new(), input),
    }
}

/// A stable number for an error message's kind (its text up to the first digit or quote), so
/// that new kinds of rejection count as new behaviour.
fn kind(message: &str) -> u64 {
    let head = message
        .split(|c: char| c.is_ascii_digit() || matches!(c, '"' | '`' | '\'' | '{' | '('))
        .next()
        .unwrap_or("");
    fnv(head.as_bytes())
}

/// The name of an error's variant (its details hold the input's own text).
fn variant(reason: &impl std::fmt::Debug) -> u64 {
    let text = format!("{reason:?}");
    kind(text.split([' ', '{']).next().unwrap_or(""))
}

/// FNV-1a: the crash file names and signatures (stable across runs and platforms).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SkyDNS: the key (first line) through the key parser and, with the value, the value decoder.
pub fn skydns(input: &[u8]) -> Outcome {
    let (key, value) = key_value(input);
    let name = srvd::backend::skydns::key::name_of_key(&key);
    let decoded = srvd::backend::skydns::decode(&key, value, 0);
    if let (Err(e), Ok(_)) = (&name, &decoded) {
        return Err(format!("key rejected ({e}) but its value decoded"));
    }
    Ok(match decoded {
        Ok(entry) => kind(&format!("{:?}", entry.kind)) ^ u64::from(entry.port >= 0),
        Err(reason) => variant(&reason),
    })
}

/// Registry: the key (first line) and value under `/services`.
pub fn registry(input: &[u8]) -> Outcome {
    let (key, value) = key_value(input);
    Ok(
        match srvd::backend::registry::decode("/services", &key, value, 0) {
            Ok(entry) => 1 + u64::from(entry.port),
            Err(reason) => variant(&reason),
        },
    )
}

/// A zone file's text, loaded as `fuzz.test.` and, when it loads, built into an index.
pub fn zonefile(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    // An absolute `$INCLUDE` would read this machine's files (`/dev/zero` never ends): the
    // loader's file handling is not what is fuzzed here.
    if text.to_ascii_lowercase().contains("$include") {
        return Ok(0);
    }
    match zonefile::parse(&text, "fuzz.test.", "fuzz.test.zone", None) {
        Ok(zone) => match build_index(vec![zone], None) {
            Ok(_) => Ok(1),
            Err(e) => Ok(kind(&e.message)),
        },
        Err(e) => Ok(kind(&e.message)),
    }
}

/// No imports: an `import` names files of this machine, which are not what is fuzzed.
struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &Path) -> Result<String, String> {
        Err("No such file or directory (os error 2)".into())
    }

    fn matching(&self, _: &Path, _: &str) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// A Corefile's text, parsed and, when valid, turned into srvd's configuration.
pub fn corefile(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let env = |name: &str| (name == "ENV").then(|| "example.org".to_string());
    match corefile::parse(&text, Path::new("Corefile"), &NoFiles, &env) {
        Ok(parsed) => {
            let _ = parsed.into_config();
            Ok(1)
        }
        Err(errors) => Ok(errors.first().map_or(0, |e| kind(&e.message))),
    }
}
