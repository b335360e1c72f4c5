//! Connections by service name: [`SrvName`] for `std::net::TcpStream::connect`, [`connect`] for
//! tokio. Both try every address of every target in RFC 2782 order and return the first
//! connection that succeeds.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::{LookupError, SrvResolver};

/// A DNS-SD service name (`_http._tcp.backend.service.local`) usable wherever std takes
/// `ToSocketAddrs`: `TcpStream::connect(SrvName::new(…))` tries the instances in RFC 2782 order
/// (std tries each address in turn and returns the last error).
#[derive(Debug, Clone)]
pub struct SrvName {
    name: String,
    resolver: Option<SrvResolver>,
}

impl SrvName {
    /// `name` on the default resolver (`SRVD_RESOLVER`, else `/etc/resolv.conf`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            resolver: None,
        }
    }

    /// `name` on `resolver`.
    pub fn with_resolver(name: impl Into<String>, resolver: &SrvResolver) -> Self {
        Self {
            name: name.into(),
            resolver: Some(resolver.clone()),
        }
    }

    fn resolver(&self) -> Result<SrvResolver, LookupError> {
        match &self.resolver {
            Some(resolver) => Ok(resolver.clone()),
            None => SrvResolver::from_env(),
        }
    }

    /// The socket addresses to try, in order.
    ///
    /// # Errors
    /// The lookup's [`LookupError`].
    pub fn lookup(&self) -> Result<Vec<SocketAddr>, LookupError> {
        let lookup = self.resolver()?.lookup_srv_blocking("", "", &self.name)?;
        Ok(lookup.socket_addrs())
    }
}

impl ToSocketAddrs for SrvName {
    type Iter = std::vec::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        Ok(self.lookup()?.into_iter())
    }
}

/// Connects to the first reachable instance of `name` (e.g. `_http._tcp.backend.service.local`)
/// on `resolver`, in RFC 2782 order.
///
/// # Errors
/// The lookup's error, or [`LookupError::AllTargetsUnreachable`] with the last connect error.
pub async fn connect(
    name: &str,
    resolver: &SrvResolver,
) -> Result<tokio::net::TcpStream, LookupError> {
    let lookup = resolver.lookup_srv("", "", name).await?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no target has an address");
    for addr in lookup.socket_addrs() {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(LookupError::AllTargetsUnreachable {
        service: name.to_string(),
        source: last,
    })
}
