//! Reaching a locked-down etcd: the client options for TLS and a user (shared by the mirror and
//! `srvd register`), the whole error chain for logs, and which failures retrying cannot cure.
//!
//! TLS is etcd-client's `tls` feature: tonic on rustls, which picks the ring provider when the
//! process installed none (srvd installs none, and aws-lc is not in the build). Files are read
//! and parsed here, before any connection, so a bad file is named instead of surfacing later as
//! a handshake failure.

use std::path::Path;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::EtcdSecurity;

/// A TLS or credentials file srvd cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {reason}")]
pub struct FileError {
    what: &'static str,
    path: String,
    reason: String,
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, FileError> {
    let fail = |reason: String| FileError {
        what,
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let usable = if what == "etcd client key" {
        PrivateKeyDer::from_pem_slice(&bytes).is_ok()
    } else {
        CertificateDer::pem_slice_iter(&bytes).any(|c| c.is_ok())
    };
    if !usable {
        return Err(fail(format!(
            "no PEM {} found",
            if what == "etcd client key" {
                "private key"
            } else {
                "certificate"
            }
        )));
    }
    Ok(bytes)
}

/// Adds TLS and the user (with automatic token refresh) of `security` to `options`.
///
/// # Errors
/// A TLS file that cannot be read or holds no PEM certificate or key.
pub fn secure(
    mut options: ConnectOptions,
    security: &EtcdSecurity,
) -> Result<ConnectOptions, FileError> {
    if let Some(tls) = &security.tls {
        let mut config = TlsOptions::new();
        match &tls.ca {
            Some(ca) => {
                config = config.ca_certificate(Certificate::from_pem(read_pem("etcd CA", ca)?));
            }
            // CoreDNS's `tls` without a CA file trusts the system's CAs. Checked here: tonic
            // reports having none as a bare "transport error".
            None => {
                if rustls_native_certs::load_native_certs().certs.is_empty() {
                    return Err(FileError {
                        what: "etcd CA",
                        path: "(the system's CAs: SSL_CERT_FILE, SSL_CERT_DIR, /etc/ssl/certs)".into(),
                        reason: "no CA certificate found; give the CA that signed etcd's certificate (--etcd-ca, or the tls directive's CACERT)".into(),
                    });
                }
                config = config.with_native_roots();
            }
        }
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(
                read_pem("etcd client certificate", cert)?,
                read_pem("etcd client key", key)?,
            ));
        }
        options = options.with_tls(config);
    }
    if let Some((user, password)) = &security.user {
        // Unary calls that meet an expired token authenticate again and retry; watches are
        // streams and are handled by the sync loop (see `sync::run`).
        options = options
            .with_user(user.clone(), password.expose())
            .with_auto_token_refresh(true);
    }
    Ok(options)
}

/// `error` and every error below it, joined with `: `, so that a log line says "invalid peer
/// certificate: UnknownIssuer" and not only "transport error". Repeated texts (tonic often
/// wraps an error whose text it already shows) are given once.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// gRPC status codes (etcd's "authentication failed" is INVALID_ARGUMENT).
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
/// etcd's code for an expired or unknown token ("etcdserver: invalid auth token").
pub const UNAUTHENTICATED: i32 = 16;

/// What failed when etcd refused srvd for good, for the start-up error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// etcd's certificate is not signed by the CA srvd trusts (or names another host).
    ServerCertificate,
    /// etcd did not accept srvd's client certificate (none given, or from another CA).
    ClientCertificate,
    /// Another TLS failure (protocol, ALPN).
    Tls,
    /// Wrong user or password.
    Credentials,
    /// The user may not do what srvd needs.
    Permission,
}

impl Refusal {
    /// Says what failed, for an operator.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ServerCertificate => {
                "TLS: etcd's certificate is not trusted (check --etcd-ca / the tls CA file)"
            }
            Self::ClientCertificate => {
                "TLS: etcd refused srvd's client certificate (check --etcd-cert/--etcd-key: etcd's --trusted-ca-file must have signed it)"
            }
            Self::Tls => "TLS handshake failed",
            Self::Credentials => "authentication failed: wrong etcd user or password",
            Self::Permission => "permission denied for the etcd user",
        }
    }
}

/// Whether `error` is one that retrying cannot cure: a TLS or authentication refusal. An
/// unreachable etcd (refused connection, timeout, restart) is `None`: that is an outage.
pub fn refusal(error: &etcd_client::Error) -> Option<Refusal> {
    if let etcd_client::Error::GRpcStatus(status) = error {
        let message = status.message();
        match i32::from(status.code()) {
            INVALID_ARGUMENT if message.contains("authentication failed") => {
                return Some(Refusal::Credentials);
            }
            PERMISSION_DENIED => return Some(Refusal::Permission),
            _ => {}
        }
    }
    refusal_of_text(&chain(error))
}

/// [`refusal`] for an error already turned into text (the diagnostic handshake's).
pub fn refusal_of_text(text: &str) -> Option<Refusal> {
    let text = text.to_ascii_lowercase();
    if text.contains("invalid peer certificate") || text.contains("unknownissuer") {
        Some(Refusal::ServerCertificate)
    } else if text.contains("certificaterequired")
        || text.contains("badcertificate")
        || text.contains("unknownca")
        || text.contains("bad certificate")
        || text.contains("certificate required")
    {
        Some(Refusal::ClientCertificate)
    } else if text.contains("handshake") || text.contains("received fatal alert") {
        Some(Refusal::Tls)
    } else {
        None
    }
}

/// How long the diagnostic handshake may take, end to end.
const DIAGNOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why etcd at `endpoint` drops srvd's TLS connections, found by one handshake of srvd's own
/// with the same files: etcd speaking TLS 1.3 refuses a client certificate only after the
/// client's side of the handshake is done, and tonic then reports nothing but "connection
/// closed", while etcd's alert (`CertificateRequired`, `BadCertificate`) is in the next read.
/// `None` when the handshake and the first read succeed (TLS is not the trouble) or when etcd
/// cannot be reached at all.
pub async fn diagnose_tls(endpoint: &str, security: &EtcdSecurity) -> Option<String> {
    let tls = security.tls.clone()?;
    let endpoint = endpoint.to_string();
    let job = tokio::task::spawn_blocking(move || handshake(&endpoint, &tls).err());
    tokio::time::timeout(DIAGNOSE_TIMEOUT, job)
        .await
        .ok()?
        .ok()?
}

/// The handshake of [`diagnose_tls`], on blocking sockets with timeouts. `Err` holds what TLS
/// reported; `Ok` also when etcd is unreachable (that is no TLS failure).
fn handshake(endpoint: &str, tls: &crate::config::EtcdTls) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let authority = endpoint
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(&authority) else {
        return Ok(());
    };
    let Some(addr) = addrs.next() else {
        return Ok(());
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match &tls.identity {
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| e.to_string())?
                .flatten()
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let Ok(tcp) = std::net::TcpStream::connect_timeout(&addr, DIAGNOSE_TIMEOUT / 2) else {
        return Ok(());
    };
    let _ = tcp.set_read_timeout(Some(DIAGNOSE_TIMEOUT / 2));
    let _ = tcp.set_write_timeout(Some(DIAGNOSE_TIMEOUT / 2));
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // The HTTP/2 preface and an empty SETTINGS frame: etcd answers with its SETTINGS, or with
    // the alert that says why it refuses us.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut first = [0u8; 9];
    match stream
        .write_all(&hello)
        .and_then(|()| stream.flush())
        .and_then(|()| stream.read(&mut first))
    {
        Ok(0) => Err("etcd closed the TLS connection without a reason".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{chain, secure};
    use crate::config::{EtcdSecurity, EtcdTls};

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let security = EtcdSecurity {
            tls: Some(EtcdTls {
                ca: Some(ca.clone()),
                identity: None,
            }),
            user: None,
        };
        let err = secure(etcd_client::ConnectOptions::new(), &security)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("etcd CA {}: no PEM certificate found", ca.display())
        );
        let missing = EtcdSecurity {
            tls: Some(EtcdTls {
                ca: Some(dir.path().join("absent.pem")),
                identity: None,
            }),
            user: None,
        };
        let err = secure(etcd_client::ConnectOptions::new(), &missing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("absent.pem") && err.contains("No such file"),
            "{err}"
        );
    }

    #[test]
    fn refusals_are_told_from_outages() {
        use super::{Refusal, refusal_of_text};
        for (text, want) in [
            (
                "transport error: invalid peer certificate: UnknownIssuer",
                Some(Refusal::ServerCertificate),
            ),
            (
                "received fatal alert: BadCertificate",
                Some(Refusal::ClientCertificate),
            ),
            (
                "received fatal alert: CertificateRequired",
                Some(Refusal::ClientCertificate),
            ),
            ("received fatal alert: ProtocolVersion", Some(Refusal::Tls)),
            (
                "transport error: tcp connect error: Connection refused (os error 111)",
                None,
            ),
            ("connection closed", None),
        ] {
            assert_eq!(refusal_of_text(text), want, "{text}");
        }
    }

    /// The etcd error's text holds its chain already: printed with its sources (anyhow's
    /// `{:#}`, as `main` prints a start error), it must not come twice.
    #[test]
    fn a_start_error_shows_the_etcd_chain_once() {
        let etcd = etcd_client::Error::InvalidArgs("bad endpoint".into());
        let start = crate::daemon::StartError::from(crate::sync::etcd::SyncError::from(etcd));
        let shown = format!("{:#}", anyhow::Error::from(start));
        assert_eq!(shown.matches("bad endpoint").count(), 1, "{shown}");
    }

    /// An error wrapping another, as tonic wraps hyper's: its text may repeat its cause's.
    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<Wrap>>);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_chain_shows_every_cause_once() {
        let error = Wrap(
            "transport error",
            Some(Box::new(Wrap(
                "error trying to connect: invalid peer certificate: UnknownIssuer",
                Some(Box::new(Wrap(
                    "invalid peer certificate: UnknownIssuer",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            chain(&error),
            "transport error: error trying to connect: invalid peer certificate: UnknownIssuer"
        );
    }
}
