//! The server side of DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484): certificates, the
//! rustls configuration, and RFC 7830 padding of responses.
//!
//! rustls is built with the ring provider given explicitly, never the process default: another
//! part of srvd (the etcd client) may install or use a provider of its own, and two providers
//! fighting over the process default panic at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be loaded; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TlsFileError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// Which encrypted transport a listener speaks: it decides the ALPN protocols offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encrypted {
    /// DNS over TLS, RFC 7858 (ALPN `dot`).
    Tls,
    /// DNS over HTTPS, RFC 8484 (ALPN `h2`, then `http/1.1`).
    Https,
}

impl Encrypted {
    /// The Corefile scheme and log name.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }
}

/// A rustls server configuration for `transport` from PEM files: `cert` (the chain, leaf first)
/// and `key` (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// The file that cannot be read, holds no certificate or key, or whose key does not match.
pub fn server_config(
    transport: Encrypted,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsFileError> {
    let fail = |path: &Path, message: String| TlsFileError {
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| fail(cert, format!("cannot read: {e}")))?;
    let key_pem = std::fs::read(key).map_err(|e| fail(key, format!("cannot read: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(fail(
            cert,
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(
            key,
            format!("holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(cert, format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            fail(
                key,
                format!("does not fit the certificate in {}: {e}", cert.display()),
            )
        })?;
    config.alpn_protocols = match transport {
        Encrypted::Tls => vec![b"dot".to_vec()],
        Encrypted::Https => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// RFC 8467 §4.1: responses are padded to a multiple of this many bytes.
pub const RESPONSE_BLOCK: usize = 468;

/// EDNS option code of Padding (RFC 7830).
const PADDING: u16 = 12;

/// Pads `response` (the answer to `query`) to a multiple of [`RESPONSE_BLOCK`] when the query
/// carried a Padding option, as RFC 7830 §4 and RFC 8467 ask of encrypted transports only.
/// srvd's responses end with their OPT record, which has no options: the padding option is
/// appended to it. Anything else (no OPT at the end, a response that would exceed 65,535
/// bytes) is left unpadded.
pub fn pad(query: &[u8], response: &mut Vec<u8>) {
    if !wants_padding(query) {
        return;
    }
    let len = response.len();
    // An empty OPT record at the end: root owner, type 41, class, TTL, RDLENGTH 0.
    if len < 12 + 11 || (response[10] == 0 && response[11] == 0) {
        return;
    }
    let opt = &response[len - 11..];
    if opt[0] != 0 || opt[1..3] != [0, 41] || opt[9..11] != [0, 0] {
        return;
    }
    let padded = (len + 4).div_ceil(RESPONSE_BLOCK) * RESPONSE_BLOCK;
    if padded > usize::from(u16::MAX) {
        return;
    }
    let fill = padded - len - 4;
    let (Ok(rdlen), Ok(fill16)) = (u16::try_from(fill + 4), u16::try_from(fill)) else {
        return;
    };
    response[len - 2..].copy_from_slice(&rdlen.to_be_bytes());
    response.extend_from_slice(&PADDING.to_be_bytes());
    response.extend_from_slice(&fill16.to_be_bytes());
    response.resize(padded, 0);
}

/// Whether `query`'s OPT record carries a Padding option. A message that does not parse is
/// not padded for (the handler answers it FORMERR, or not at all).
pub fn wants_padding(query: &[u8]) -> bool {
    fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
    }
    /// The offset after the name at `at`.
    fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
        // At most 128 labels in a 255-byte name: bounded for any input.
        for _ in 0..=128 {
            let len = *bytes.get(at)?;
            match len {
                0 => return Some(at + 1),
                l if l & 0xc0 == 0xc0 => return Some(at + 2),
                l if l & 0xc0 == 0 => at += 1 + usize::from(l),
                _ => return None,
            }
        }
        None
    }
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (
        u16_at(query, 4),
        u16_at(query, 6),
        u16_at(query, 8),
        u16_at(query, 10),
    ) else {
        return false;
    };
    if ar == 0 {
        return false;
    }
    let mut at = 12;
    for _ in 0..qd {
        let Some(next) = skip_name(query, at) else {
            return false;
        };
        at = next + 4;
    }
    let records = usize::from(an) + usize::from(ns) + usize::from(ar);
    for i in 0..records {
        let Some(next) = skip_name(query, at) else {
            return false;
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(query, next), u16_at(query, next + 8)) else {
            return false;
        };
        let rdata = next + 10;
        let end = rdata + usize::from(rdlen);
        if end > query.len() {
            return false;
        }
        if rtype == 41 && i >= usize::from(an) + usize::from(ns) {
            let mut option = rdata;
            while option + 4 <= end {
                let (Some(code), Some(olen)) = (u16_at(query, option), u16_at(query, option + 2))
                else {
                    return false;
                };
                if code == PADDING {
                    return true;
                }
                option += 4 + usize::from(olen);
            }
            return false;
        }
        at = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.example. A` with an OPT record holding `options`.
    fn query(options: &[u8]) -> Vec<u8> {
        let mut q = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(&[1, b'a', 7]);
        q.extend_from_slice(b"example");
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
        q.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
        q.extend_from_slice(options);
        q
    }

    #[test]
    fn only_a_query_with_a_padding_option_asks_for_padding() {
        assert!(wants_padding(&query(&[0, 12, 0, 0])));
        assert!(wants_padding(&query(&[
            0, 10, 0, 2, 1, 2, 0, 12, 0, 3, 0, 0, 0
        ])));
        assert!(!wants_padding(&query(&[])));
        assert!(!wants_padding(&query(&[
            0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8
        ])));
        assert!(!wants_padding(&query(&[0, 12])), "a cut option");
        assert!(!wants_padding(&[0; 5]), "no header");
        let mut cut = query(&[0, 12, 0, 0]);
        cut.truncate(cut.len() - 6);
        assert!(!wants_padding(&cut), "a cut record");
    }

    #[test]
    fn a_response_is_padded_to_the_block_length_inside_its_opt_record() {
        let asked = query(&[0, 12, 0, 0]);
        // The query itself stands in for a response ending with an empty OPT record.
        let mut response = query(&[]);
        let before = response.len();
        pad(&asked, &mut response);
        assert_eq!(response.len(), RESPONSE_BLOCK);
        let opt = before - 11;
        let rdlen = usize::from(u16::from_be_bytes([response[opt + 9], response[opt + 10]]));
        assert_eq!(
            opt + 11 + rdlen,
            RESPONSE_BLOCK,
            "the OPT RDATA covers the padding"
        );
        assert_eq!(response[before..before + 2], [0, 12]);

        let mut unasked = query(&[]);
        pad(&query(&[]), &mut unasked);
        assert_eq!(unasked.len(), before, "no padding unless asked");
    }
}
