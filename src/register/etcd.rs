//! The sidecar's etcd calls: grant, put with a lease, one keep-alive at a time, delete + revoke.
//! Every call is bounded, so a hung etcd stalls one attempt, never the sidecar.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions};

/// Bound on one etcd call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// gRPC status NOT_FOUND: etcd's "requested lease not found".
const NOT_FOUND: i32 = 5;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No answer within [`CALL_TIMEOUT`].
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// etcd or the transport refused.
    #[error("{}", crate::sync::access::chain(.0))]
    // Not `#[from]`: that would make it the `source` too, and a printer that walks sources
    // (anyhow's `{:#}`) would show the chain twice.
    Etcd(etcd_client::Error),
    /// A TLS file srvd cannot use.
    #[error(transparent)]
    File(#[from] crate::sync::access::FileError),
}

impl From<etcd_client::Error> for EtcdError {
    fn from(error: etcd_client::Error) -> Self {
        Self::Etcd(error)
    }
}

impl EtcdError {
    /// Whether etcd said the lease does not exist (expired or revoked): re-grant, don't retry.
    pub fn is_lease_gone(&self) -> bool {
        match self {
            Self::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                i32::from(status.code()) == NOT_FOUND
            }
            // What opening a keep-alive stream for an expired lease reports.
            Self::Etcd(etcd_client::Error::LeaseKeepAliveError(message)) => {
                message.contains("not found")
            }
            _ => false,
        }
    }
}

async fn bounded<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(EtcdError::Timeout(CALL_TIMEOUT)),
    }
}

/// A connection to etcd (gRPC reconnects by itself after an outage).
pub struct Etcd {
    client: Client,
}

/// An open keep-alive stream for one lease.
pub struct Keeper {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

impl Etcd {
    /// Connects lazily and then proves etcd answers with one real request.
    ///
    /// # Errors
    /// A bad endpoint, or etcd not answering within [`CALL_TIMEOUT`].
    pub async fn connect(
        endpoints: &[String],
        security: &crate::config::EtcdSecurity,
    ) -> Result<Self, EtcdError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            // Notice a dead etcd within seconds, not at the TCP timeout.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        // With a user, `Client::connect` authenticates: a wrong password fails here, at start.
        // Later calls refresh an expired token themselves (auto refresh): they are unary, and
        // etcd does not check tokens on the lease keep-alive stream.
        let options = crate::sync::access::secure(options, security)?;
        let mut client = bounded(Client::connect(endpoints, Some(options))).await?;
        bounded(client.status()).await?;
        Ok(Self { client })
    }

    /// Grants a lease of `ttl_secs`; returns its ID and the TTL etcd granted (etcd may raise a
    /// very short one to its minimum).
    ///
    /// # Errors
    /// etcd unreachable.
    pub async fn grant(&mut self, ttl_secs: i64) -> Result<(i64, i64), EtcdError> {
        let granted = bounded(self.client.lease_grant(ttl_secs, None)).await?;
        Ok((granted.id(), granted.ttl()))
    }

    /// Writes `key` = `value` attached to `lease`.
    ///
    /// # Errors
    /// etcd unreachable, or the lease gone ([`EtcdError::is_lease_gone`]).
    pub async fn put(&mut self, key: &str, value: &str, lease: i64) -> Result<(), EtcdError> {
        let options = PutOptions::new().with_lease(lease);
        bounded(self.client.put(key, value, Some(options))).await?;
        Ok(())
    }

    /// Opens the keep-alive stream for `lease`; opening refreshes the lease once.
    ///
    /// # Errors
    /// etcd unreachable, or the lease gone ([`EtcdError::is_lease_gone`]).
    pub async fn keeper(&mut self, lease: i64) -> Result<Keeper, EtcdError> {
        let (keeper, stream) = bounded(self.client.lease_keep_alive(lease)).await?;
        Ok(Keeper { keeper, stream })
    }

    /// Revokes `lease` (which deletes the key with it, in one request) and then deletes `key`
    /// too, both attempted whatever the other's outcome: a revoke can fail during leader trouble
    /// and leave the key behind (etcd-io/etcd#9935).
    ///
    /// # Errors
    /// The first failure.
    pub async fn delete_and_revoke(&mut self, key: &str, lease: i64) -> Result<(), EtcdError> {
        let revoked = match bounded(self.client.lease_revoke(lease)).await {
            Err(e) if e.is_lease_gone() => Ok(()),
            other => other.map(|_| ()),
        };
        let deleted = bounded(self.client.delete(key, None)).await.map(|_| ());
        revoked.and(deleted)
    }
}

impl Keeper {
    /// Sends one refresh and reads its answer: the lease's remaining TTL in seconds, or `None`
    /// when the lease is gone (TTL ≤ 0 or the stream ended).
    ///
    /// # Errors
    /// etcd unreachable (the stream is then useless: open a new one).
    pub async fn refresh(&mut self) -> Result<Option<i64>, EtcdError> {
        bounded(self.keeper.keep_alive()).await?;
        let answer = bounded(self.stream.message()).await?;
        Ok(answer.map(|a| a.ttl()).filter(|ttl| *ttl > 0))
    }
}
