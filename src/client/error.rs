//! `LookupError`: what can go wrong turning a service name into a connection, one matchable case
//! each, every message naming the service.

use std::io;

/// Why a service could not be resolved or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist (NXDOMAIN).
    #[error("no such service {service}: the name does not exist (NXDOMAIN)")]
    NoSuchName {
        /// The name looked up.
        service: String,
    },
    /// The name exists but has no SRV records (NODATA).
    #[error("no SRV records for {service} (the name exists, NODATA)")]
    NoRecords {
        /// The name looked up.
        service: String,
    },
    /// A lone SRV record with target `.`: RFC 2782 says the service is decidedly not available.
    #[error("service {service} is decidedly not available (its only SRV target is \".\")")]
    ServiceUnavailable {
        /// The name looked up.
        service: String,
    },
    /// No answer from the resolver (timeout, refused connection, network error).
    #[error("resolver unreachable or timed out looking up {service}: {reason}")]
    Unreachable {
        /// The name looked up.
        service: String,
        /// What the resolver reported.
        reason: String,
    },
    /// The server answered with an error (SERVFAIL, REFUSED, ...).
    #[error("looking up {service} failed: the server answered {rcode}")]
    ServerFailure {
        /// The name looked up.
        service: String,
        /// The response code.
        rcode: String,
    },
    /// Every target refused or timed out.
    #[error("every target of {service} is unreachable; last error: {source}")]
    AllTargetsUnreachable {
        /// The name looked up.
        service: String,
        /// The last connection error.
        source: io::Error,
    },
    /// The name is not a valid domain name.
    #[error("{service:?} is not a valid service name: {reason}")]
    InvalidName {
        /// The name given.
        service: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The resolver could not be set up (e.g. an unreadable /etc/resolv.conf).
    #[error("cannot set up the resolver: {0}")]
    Config(String),
}

impl LookupError {
    /// The service name the error is about, if any.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::NoSuchName { service }
            | Self::NoRecords { service }
            | Self::ServiceUnavailable { service }
            | Self::Unreachable { service, .. }
            | Self::ServerFailure { service, .. }
            | Self::AllTargetsUnreachable { service, .. }
            | Self::InvalidName { service, .. } => Some(service),
            Self::Config(_) => None,
        }
    }

    /// The `io::ErrorKind` that fits.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::NoSuchName { .. } | Self::NoRecords { .. } => io::ErrorKind::NotFound,
            Self::ServiceUnavailable { .. } => io::ErrorKind::ConnectionRefused,
            Self::Unreachable { .. } => io::ErrorKind::TimedOut,
            Self::AllTargetsUnreachable { source, .. } => source.kind(),
            Self::InvalidName { .. } => io::ErrorKind::InvalidInput,
            Self::ServerFailure { .. } | Self::Config(_) => io::ErrorKind::Other,
        }
    }
}

impl From<LookupError> for io::Error {
    fn from(error: LookupError) -> Self {
        io::Error::new(error.kind(), error)
    }
}
