//! The only importer of etcd-client: paged listing at one revision, watches that report
//! compaction, lease look-ups. Everything else in srvd sees [`RawKv`] and [`WatchBatch`].

use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseTimeToLiveOptions, WatchOptions,
    WatchStream,
};
use futures_util::FutureExt;

/// Keys per page of the initial read: far below the client's 4 MiB decode limit (~25,000 SkyDNS
/// keys), so the listing works at any size without raising it.
const PAGE_SIZE: i64 = 5_000;
/// Bound on one unary call (a page, a lease look-up). Watches are streams and have no bound.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an etcd operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The history needed to resume was compacted: relist.
    #[error(
        "revision {wanted} was compacted (compaction at {compacted}); reading everything afresh"
    )]
    Compacted {
        /// The revision we asked for.
        wanted: i64,
        /// The compaction revision etcd reported.
        compacted: i64,
    },
    /// etcd answered with an error or could not be reached.
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
    /// A call did not finish within its bound.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The watch stream ended or answered unexpectedly.
    #[error("watch: {0}")]
    Watch(String),
}

/// One key as etcd holds it.
#[derive(Debug, Clone)]
pub struct RawKv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Lease ID, 0 for none.
    pub lease: i64,
    /// Revision of its last change.
    pub mod_revision: i64,
}

/// One change from the watch.
#[derive(Debug, Clone)]
pub enum RawEvent {
    /// A key was written.
    Put(RawKv),
    /// A key was deleted (also when its lease ended).
    Delete(Vec<u8>),
}

/// The events of one watch response, all at `revision`.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The revision the response reflects (its header).
    pub revision: i64,
    /// Changes in order.
    pub events: Vec<RawEvent>,
}

/// A full read of the prefix at one revision.
#[derive(Debug)]
pub struct Listing {
    /// The revision every key was read at.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<RawKv>,
}

/// A connection to an etcd cluster (lazy: nothing is contacted until the first call; every
/// endpoint given is used, and calls fail over between them).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    prefix: Vec<u8>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish()
    }
}

/// The range end that makes `[prefix, end)` every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

async fn bounded<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, SyncError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| SyncError::Timeout(CALL_TIMEOUT))?
        .map_err(SyncError::from)
}

fn raw(kv: &etcd_client::KeyValue) -> RawKv {
    RawKv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        lease: kv.lease(),
        mod_revision: kv.mod_revision(),
    }
}

impl Etcd {
    /// A client for `endpoints`, watching keys under `prefix` (e.g. `/skydns/`).
    ///
    /// # Errors
    /// An endpoint that is not a valid URL.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, SyncError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // Detect a dead peer on an idle watch within seconds, not at the TCP timeout.
            .with_keep_alive(Duration::from_secs(3), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Self {
            client,
            prefix: prefix.as_bytes().to_vec(),
        })
    }

    /// Reads every key under the prefix at one revision, in pages pinned to that revision.
    ///
    /// # Errors
    /// etcd unreachable, or the revision compacted between pages (the caller retries).
    pub async fn list(&mut self) -> Result<Listing, SyncError> {
        let end = prefix_end(&self.prefix);
        let mut kvs = Vec::new();
        let mut from = self.prefix.clone();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let page = bounded(self.client.get(from.clone(), Some(options))).await?;
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            kvs.extend(page.kvs().iter().map(raw));
            match (page.more(), page.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(Listing { revision, kvs })
    }

    /// Watches the prefix from `revision`, once etcd confirms the watch.
    ///
    /// # Errors
    /// [`SyncError::Compacted`] when `revision` is no longer in etcd's history.
    pub async fn watch(&mut self, revision: i64) -> Result<Watch, SyncError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision)
            .with_progress_notify();
        let mut stream = self
            .client
            .watch(self.prefix.clone(), Some(options))
            .await?;
        // The first response confirms creation; a compacted start revision then cancels it.
        let mut pending = Vec::new();
        loop {
            let response = tokio::time::timeout(CALL_TIMEOUT, stream.message())
                .await
                .map_err(|_| SyncError::Timeout(CALL_TIMEOUT))??
                .ok_or_else(|| SyncError::Watch("stream closed before creation".into()))?;
            if response.canceled() {
                return Err(cancel_error(&response, revision));
            }
            if response.created() && response.events().is_empty() {
                // Creation alone; a cancellation for compaction may follow immediately.
                if let Some(next) = stream.message().now_or_never() {
                    match next? {
                        Some(r) if r.canceled() => return Err(cancel_error(&r, revision)),
                        Some(r) => pending.push(batch(&r)),
                        None => return Err(SyncError::Watch("stream closed".into())),
                    }
                }
                return Ok(Watch { stream, pending });
            }
            pending.push(batch(&response));
        }
    }

    /// The remaining time of `lease`, or `None` when it no longer exists.
    ///
    /// # Errors
    /// etcd unreachable.
    pub async fn lease_remaining(&mut self, lease: i64) -> Result<Option<Duration>, SyncError> {
        let response = bounded(
            self.client
                .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new())),
        )
        .await?;
        Ok(u64::try_from(response.ttl())
            .ok()
            .filter(|ttl| *ttl > 0)
            .map(Duration::from_secs))
    }
}

fn cancel_error(response: &etcd_client::WatchResponse, wanted: i64) -> SyncError {
    if response.compact_revision() > 0 {
        SyncError::Compacted {
            wanted,
            compacted: response.compact_revision(),
        }
    } else {
        SyncError::Watch(format!("canceled: {}", response.cancel_reason()))
    }
}

fn batch(response: &etcd_client::WatchResponse) -> WatchBatch {
    let events = response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            Some(match event.event_type() {
                EventType::Put => RawEvent::Put(raw(kv)),
                EventType::Delete => RawEvent::Delete(kv.key().to_vec()),
            })
        })
        .collect();
    WatchBatch {
        revision: response.header().map_or(0, |h| h.revision()),
        events,
    }
}

/// A confirmed watch.
pub struct Watch {
    stream: WatchStream,
    pending: Vec<WatchBatch>,
}

impl Watch {
    /// Waits for the next batches: everything already received, without waiting for more, so a
    /// burst is applied and published once.
    ///
    /// # Errors
    /// The stream broke (reconnect and resume) or etcd cancelled it for compaction.
    pub async fn next_batches(&mut self) -> Result<Vec<WatchBatch>, SyncError> {
        let mut batches = std::mem::take(&mut self.pending);
        if batches.is_empty() {
            let first = self
                .stream
                .message()
                .await?
                .ok_or_else(|| SyncError::Watch("stream closed".into()))?;
            self.push(first, &mut batches)?;
        }
        while let Some(next) = self.stream.message().now_or_never() {
            let next = next?.ok_or_else(|| SyncError::Watch("stream closed".into()))?;
            self.push(next, &mut batches)?;
        }
        Ok(batches)
    }

    fn push(
        &mut self,
        response: etcd_client::WatchResponse,
        batches: &mut Vec<WatchBatch>,
    ) -> Result<(), SyncError> {
        if response.canceled() {
            return Err(cancel_error(&response, 0));
        }
        batches.push(batch(&response));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/skydns/"), b"/skydns0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
