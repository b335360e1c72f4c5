//! `tls://` and `https://` server blocks and the `tls` directive, read as CoreDNS reads them.

use std::path::{Path, PathBuf};

use super::blocks::Files;
use super::{Corefile, parse};
use crate::config::EncryptedListen;
use crate::server::tls::Encrypted;

struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &Path) -> Result<String, String> {
        Err("No such file or directory (os error 2)".into())
    }

    fn matching(&self, _: &Path, _: &str) -> Vec<PathBuf> {
        Vec::new()
    }
}

fn read(text: &str) -> Result<Corefile, Vec<String>> {
    parse(text, Path::new("Corefile"), &NoFiles, &|_| None)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn tls_and_https_blocks_listen_with_their_certificate_and_zones() {
    let corefile = read(
        "service.local:1053 {\n file /zones/db.service.local\n}\n\
         tls://service.local {\n bind 127.0.0.1\n tls cert.pem key.pem ca.pem\n file /zones/db.service.local\n}\n\
         https://service.local:8443 {\n bind 127.0.0.1\n root /etc/srvd\n tls cert.pem /keys/key.pem {\n  client_auth nocert\n }\n file /zones/db.service.local\n}\n",
    )
    .unwrap();
    assert_eq!(corefile.listen, ["[::]:1053".parse().unwrap()]);
    let zone = vec!["service.local.".parse().unwrap()];
    assert_eq!(
        corefile.encrypted,
        [
            EncryptedListen {
                transport: Encrypted::Tls,
                addr: "127.0.0.1:853".parse().unwrap(),
                cert: "cert.pem".into(),
                key: "key.pem".into(),
                zones: Some(zone.clone()),
            },
            EncryptedListen {
                transport: Encrypted::Https,
                addr: "127.0.0.1:8443".parse().unwrap(),
                cert: "/etc/srvd/cert.pem".into(),
                key: "/keys/key.pem".into(),
                zones: Some(zone),
            },
        ]
    );
    let only_tls = read("tls://.:853 {\n tls c.pem k.pem\n}\n").unwrap();
    assert!(only_tls.listen.is_empty());
    assert_eq!(only_tls.encrypted.len(), 1, "a tls block alone is a server");
}

#[test]
fn a_certificate_out_of_place_or_missing_is_an_error_at_its_line() {
    for (text, want) in [
        (
            "service.local:1053 {\n tls cert.pem key.pem\n}\n",
            "Corefile:2: tls: a certificate belongs in a tls:// or https:// server block; this block serves plain DNS (dns://)",
        ),
        (
            "service.local:1053 {\n}\ntls://service.local:853 {\n bind 127.0.0.1\n}\n",
            "Corefile:3: \"tls://service.local:853\": a tls:// server block needs a certificate (expected tls CERT KEY [CA] in the block)",
        ),
        (
            "https://service.local {\n tls cert.pem\n}\n",
            "Corefile:2: tls: expected CERT KEY [CA]",
        ),
        (
            "tls://service.local {\n tls a b c d\n}\n",
            "Corefile:2: tls: expected CERT KEY [CA]",
        ),
        (
            "tls://service.local {\n tls a b {\n  client_auth require_and_verify\n }\n}\n",
            "Corefile:3: tls: srvd does not authenticate DNS clients by certificate (expected client_auth nocert)",
        ),
        (
            "tls://service.local service.local:53 {\n tls a b\n}\n",
            "Corefile:1: \"service.local:53\": every key of a server block must use the same transport as \"tls://service.local\"",
        ),
    ] {
        assert_eq!(read(text).unwrap_err(), [want], "{text}");
    }
}
