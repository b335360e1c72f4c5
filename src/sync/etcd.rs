//! The only importer of etcd-client: paged listing at one revision, watches that report
//! compaction, lease look-ups. Everything else in srvd sees [`RawKv`] and [`WatchBatch`].
//!
//! Revisions: every event carries its own `mod_revision` (a delete's is the delete's revision),
//! and a watch resumes after the last event applied, as etcd's Go client does. A response
//! header's revision is the store's *current* revision, which during a catch-up is ahead of the
//! events sent so far (etcd 3.4 replays a backlog 1,000 revisions per response), so it is used
//! only where etcd vouches for it: a progress notification, which goes to synced watchers only,
//! and (for publishing, never for resuming) the answer to a progress request (see `Notice`).
//!
//! Sizes: one message must fit the client's decode limit (`--etcd-max-response-bytes`). The
//! listing pages by count and, when a page is too large, halves the page and tries again. The
//! watch does not ask for fragments (etcd 3.4 cuts them in time quadratic in their events), so
//! a live transaction arrives as one response about the size of its request, and a catch-up
//! over many revisions as one response that may exceed the limit: that is
//! [`SyncError::TooLarge`], which the sync task answers with a full re-read (whose pages fit).
//!
//! Liveness: HTTP/2 pings bound every call and watch creation against a frozen peer; a watch
//! stream that stays silent is also asked for an answer on itself (see `LIVENESS_IDLE`), which
//! keeps `etcd grpc-proxy`'s stricter ping policy from cutting it.
//!
//! Endpoints: every call and watch goes to one endpoint at a time (a random one of those given
//! at first, so a fleet started from one configuration spreads over the members), and the sync
//! task moves everything to the next after a failure ([`Etcd::rotate`]). A balancer picking
//! per call would keep handing a frozen member (which still completes TCP connects) a share of
//! the retries, each costing the keep-alive's 9 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, GetResponse as RangeResponse, KvClient,
    LeaseClient, LeaseTimeToLiveOptions, WatchClient, WatchOptions, WatchRequestSender,
    WatchResponseStream,
};
use futures_util::FutureExt;

/// Most keys per page of the listing; pages shrink below this when their values are large.
/// etcd 3.4 walks the rest of the range for every page (to count it), so a listing of n keys in
/// pages of k costs about n²/2k key visits in etcd: 700,000 keys took 13.3–13.7 s in pages of
/// 5,000 and 4.1–5.2 s in pages of 50,000, in alternating runs. With the next page requested
/// while one is decoded, pages of 75,000 (about 7 MB of that set) cut etcd's CPU for the read
/// from 1.1–1.2 s to 0.85–1.05 s; pages of 100,000 were no faster and held 8 MiB more
/// resident afterwards (up to three pages are alive at once).
const PAGE_SIZE: i64 = 75_000;
/// Bytes a key costs in a range response beyond its key and value (revisions, lease, framing).
const KV_OVERHEAD: usize = 32;
/// The default decode limit for one etcd response: etcd's recommended maximum
/// `--max-request-bytes` (10 MiB) bounds one key and one transaction, whose watch response is
/// about as large plus per-key metadata; 16 MiB leaves headroom, a page of many keys is split
/// when it would exceed it, and a larger watch response is a full re-read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// gRPC status code OUT_OF_RANGE: tonic's "message too large" (and etcd's "compacted").
const OUT_OF_RANGE: i32 = 11;
/// HTTP/2 keep-alive ping interval. etcd closes a connection ("too many pings", GOAWAY) after
/// three pings that come sooner than its `--grpc-keepalive-min-time` (5 s by default) since the
/// last one, counted over the connection's life until etcd next sends data, so an idle watch
/// pinged every 3 s was cut every 12 s. hyper sends the next ping an interval after the last
/// frame read (the previous pong), so pings are never closer than this.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered: a frozen (SIGSTOPped) or unplugged member, which still
/// completes TCP connects but answers nothing, is found within interval + timeout (9 s).
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a watch stream may stay silent before srvd asks it for an answer (a liveness probe:
/// a second watcher created and cancelled on the same stream). The answer is server data, and
/// grpc-go forgives the next ping after the server sends data: `etcd grpc-proxy` (3.4) keeps
/// grpc-go's default ping policy (one ping per 5 minutes, GOAWAY "too_many_pings" after the
/// third strike), so HTTP/2 pings alone cut an idle watch through it every ~24 s. Data at least
/// every 10 s (under two `KEEP_ALIVE_INTERVAL`s) keeps the strikes at 1 at most.
const LIVENESS_IDLE: Duration = Duration::from_secs(10);
/// How long a liveness probe may go unanswered before the stream counts as broken: the answer
/// comes from whatever serves the watch (a member, or a proxy and, when no other watch on the
/// probe's key is open there, the member behind it), so a stream that no longer delivers is
/// found within `LIVENESS_IDLE` + this even where HTTP/2 pings are answered.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(5);
/// Appended to a watched prefix: the one key a liveness probe watches. Under the prefix, so a
/// user allowed to watch the prefix may watch it too; nobody writes it (an event on it would be
/// mirrored as a key srvd skips, and the probe's own events are dropped).
const PROBE_SUFFIX: &[u8] = b"\0srvd-liveness";
/// `--etcd-watch-silence` by default: how long a watcher may hear nothing at all before srvd
/// stops trusting it. etcd (3.4) sends an idle watcher a progress notification on the second
/// tick of `--experimental-watch-progress-notify-interval` (10 minutes by default) after its
/// last event, so a served watcher hears something at least every 20 minutes; one that does
/// not is attached to nothing (see `Etcd::history_kept` for how `etcd grpc-proxy` gets there).
pub const DEFAULT_WATCH_SILENCE: Duration = Duration::from_secs(21 * 60);
/// Bound on one unary call (a page, a lease look-up) and on creating a watch (a watch's stream,
/// once confirmed, has no bound).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an etcd operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The history needed to resume was compacted: relist.
    #[error("revision {wanted} was compacted; reading everything afresh")]
    Compacted {
        /// The revision we asked for.
        wanted: i64,
        /// The compaction revision, when etcd said (a watch's cancellation does, a read's
        /// refusal does not).
        compacted: Option<i64>,
    },
    /// etcd answered with an error or could not be reached (shown with its whole chain of
    /// causes: "transport error" alone tells an operator nothing).
    #[error("{}", super::access::chain(.0))]
    // Not `#[from]`: that would make it the `source` too, and a printer that walks sources
    // (anyhow's `{:#}`) would show the chain twice.
    Etcd(etcd_client::Error),
    /// etcd refused the token a watch was created with (expired, or lost in an etcd restart):
    /// authenticate again and re-watch. Watches are streams, which etcd-client's token refresh
    /// does not retry.
    #[error("etcd refused the auth token: {0}")]
    Auth(String),
    /// A TLS file srvd cannot use.
    #[error(transparent)]
    File(#[from] super::access::FileError),
    /// A call did not finish within its bound.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// A response would exceed the client's decode limit and cannot be split further.
    #[error("{what} is larger than --etcd-max-response-bytes ({limit} bytes); raise the limit")]
    TooLarge {
        /// What was too large (a key, a key range, a watch response).
        what: String,
        /// The decode limit in bytes.
        limit: usize,
    },
    /// The watch stream ended or answered unexpectedly.
    #[error("watch: {0}")]
    Watch(String),
    /// The watcher heard nothing for this long, not even etcd's periodic progress notification,
    /// while its stream kept answering: nothing upstream is serving it.
    #[error(
        "the watch delivered nothing, not even etcd's progress notification, for {0:?} \
         (--etcd-watch-silence)"
    )]
    Silent(Duration),
}

impl From<etcd_client::Error> for SyncError {
    fn from(error: etcd_client::Error) -> Self {
        Self::Etcd(error)
    }
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
    /// A key was written (at its `mod_revision`).
    Put(RawKv),
    /// A key was deleted (also when its lease ended).
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the delete.
        revision: i64,
    },
}

impl RawEvent {
    /// The revision this change was made at.
    pub fn revision(&self) -> i64 {
        match self {
            Self::Put(kv) => kv.mod_revision,
            Self::Delete { revision, .. } => *revision,
        }
    }
}

/// What one watch response brings: whole revisions only.
#[derive(Debug, Clone, Default)]
pub struct WatchBatch {
    /// Changes in revision order; every revision present is complete.
    pub events: Vec<RawEvent>,
    /// A progress notification: every change up to this revision has been sent.
    pub progress: Option<i64>,
    /// The answer to [`ProgressRequester::request`]: a revision etcd vouches for, good enough to
    /// publish but not to resume from (see `Notice`).
    pub answered: Option<i64>,
}

/// A full read of the prefix at one revision.
#[derive(Debug)]
pub struct Listing {
    /// The revision every key was read at.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<RawKv>,
}

/// A connection to an etcd cluster (lazy: nothing is contacted until the first call), to one
/// of the endpoints given at a time ([`Etcd::rotate`] moves it to the next).
#[derive(Clone)]
pub struct Etcd {
    /// Kept for authenticating again (its clones share the token with `kv`, `watch`, `lease`).
    client: Client,
    /// The user srvd authenticates as, if etcd has auth enabled.
    user: Option<(String, crate::config::Secret)>,
    /// Every endpoint given (once each); the connection holds one of them at a time.
    all_endpoints: Arc<[String]>,
    /// Index in `all_endpoints` of the one in use; shared by every clone.
    in_use: Arc<AtomicUsize>,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    prefix: Vec<u8>,
    max_response_bytes: usize,
    /// Most keys per page of the listing ([`PAGE_SIZE`] unless a test sets it).
    page_size: i64,
    /// How long a watcher may hear nothing before it fails with [`SyncError::Silent`].
    watch_silence: Duration,
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

/// Whether etcd-client's error is tonic refusing a message above the decode limit (etcd's own
/// "required revision has been compacted" is OUT_OF_RANGE too, hence the message).
fn is_too_large(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if i32::from(status.code()) == OUT_OF_RANGE
            && status.message().contains("decoded message length too large"))
}

/// Takes a listed key's bytes without copying them.
fn raw(kv: etcd_client::KeyValue) -> RawKv {
    let (lease, mod_revision) = (kv.lease(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    RawKv {
        key,
        value,
        lease,
        mod_revision,
    }
}

/// A watch event's key, copied (the response is borrowed).
fn raw_ref(kv: &etcd_client::KeyValue) -> RawKv {
    RawKv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        lease: kv.lease(),
        mod_revision: kv.mod_revision(),
    }
}

/// How many keys like those of `page` fit in three quarters of the decode limit `max_bytes`, so
/// that the next page is sized from what the last one weighed instead of failing and halving
/// again each time it grows back (a denser stretch that still overflows is halved as before).
fn keys_that_fit(page: &[etcd_client::KeyValue], max_bytes: usize) -> i64 {
    let bytes: usize = page
        .iter()
        .map(|kv| kv.key().len() + kv.value().len() + KV_OVERHEAD)
        .sum();
    let per_key = bytes / page.len().max(1);
    i64::try_from(max_bytes / 4 * 3 / per_key.max(1))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// One page request, owning what it needs so that it can run ahead as its own task.
async fn get_page(
    mut kv: KvClient,
    from: Vec<u8>,
    end: Vec<u8>,
    limit: i64,
    revision: i64,
) -> Result<RangeResponse, SyncError> {
    let mut options = GetOptions::new().with_range(end).with_limit(limit);
    if revision > 0 {
        options = options.with_revision(revision);
    }
    // Compacted between pages: the listing starts afresh (the caller reads again).
    bounded(kv.get(from, Some(options)))
        .await
        .map_err(|e| compaction(e, revision))
}

/// `error` as [`SyncError::Compacted`] when it is etcd refusing a read at `revision` for
/// compaction; otherwise unchanged.
fn compaction(error: SyncError, revision: i64) -> SyncError {
    match error {
        SyncError::Etcd(error) if past_revision(&error) == Some(PastRevision::Compacted) => {
            SyncError::Compacted {
                wanted: revision,
                compacted: None,
            }
        }
        error => error,
    }
}

/// `endpoints` without repeats, in their order. One member named twice (even spelled
/// differently) is one endpoint: the connection knows endpoints by URI, and moving from one to
/// "another" that is the same would remove the only one it has.
fn distinct(endpoints: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    endpoints
        .iter()
        .filter(|e| {
            seen.insert(
                e.parse::<hyper::Uri>()
                    .map_or_else(|_| e.to_string(), |u| u.to_string()),
            )
        })
        .cloned()
        .collect()
}

/// A read at a revision etcd no longer holds, or does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PastRevision {
    /// "required revision has been compacted".
    Compacted,
    /// "required revision is a future revision".
    Future,
}

/// Which of etcd's two revision refusals `error` is, if either. Told apart by etcd's message:
/// the status code is OUT_OF_RANGE from a member, but `etcd grpc-proxy` passes it on as UNKNOWN.
fn past_revision(error: &etcd_client::Error) -> Option<PastRevision> {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return None;
    };
    let message = status.message();
    if message.contains("required revision has been compacted") {
        Some(PastRevision::Compacted)
    } else if message.contains("required revision is a future revision") {
        Some(PastRevision::Future)
    } else {
        None
    }
}

impl Etcd {
    /// A client for `endpoints`, watching keys under `prefix` (e.g. `/skydns/`), accepting
    /// responses up to `max_response_bytes`.
    ///
    /// # Errors
    /// An endpoint that is not a valid URL.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        max_response_bytes: usize,
        security: &crate::config::EtcdSecurity,
    ) -> Result<Self, SyncError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // Detect a dead or frozen peer under an open watch or call within seconds, not at
            // the TCP timeout, without breaking etcd's ping policy (see `KEEP_ALIVE_INTERVAL`).
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member that lost its leader cancels the watch ("etcdserver: no leader", after
            // about three election timeouts) instead of keeping a stream that never delivers
            // again while the rest of the cluster moves on; a unary call to it fails at once
            // instead of waiting out its bound. Either way the next try goes to another member.
            .with_require_leader(true);
        // TLS only: the user is set by `authenticate`, so that connecting stays lazy (with a
        // user, etcd-client authenticates inside `connect` and fails while etcd is down).
        let tls_only = crate::config::EtcdSecurity {
            tls: security.tls.clone(),
            user: None,
        };
        let mut options = super::access::secure(options, &tls_only)?;
        if security.user.is_some() {
            options = options.with_auto_token_refresh(true);
        }
        let endpoints = distinct(endpoints);
        if endpoints.is_empty() {
            return Err(SyncError::Watch("no etcd endpoint given".into()));
        }
        let first = {
            use rand::{Rng, SeedableRng};
            rand::rngs::SmallRng::from_os_rng().random_range(0..endpoints.len())
        };
        let client = Client::connect(&endpoints[first..=first], Some(options)).await?;
        Ok(Self {
            user: security.user.clone(),
            all_endpoints: endpoints.into(),
            in_use: Arc::new(AtomicUsize::new(first)),
            kv: client
                .kv_client()
                .max_decoding_message_size(max_response_bytes),
            watch: client
                .watch_client()
                .max_decoding_message_size(max_response_bytes),
            lease: client.lease_client(),
            client,
            prefix: prefix.as_bytes().to_vec(),
            max_response_bytes,
            page_size: PAGE_SIZE,
            watch_silence: DEFAULT_WATCH_SILENCE,
        })
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.all_endpoints.join(",")
    }

    /// The endpoint every call and watch goes to now.
    pub fn endpoint(&self) -> &str {
        &self.all_endpoints[self.in_use.load(Ordering::Relaxed)]
    }

    /// Moves every call and watch (of every clone) to the next endpoint, after a failure on this
    /// one. The next is in the order given, so a dead or frozen member costs one failure per
    /// round, whatever the others do. Nothing with a single endpoint.
    pub async fn rotate(&self) {
        let count = self.all_endpoints.len();
        if count < 2 {
            return;
        }
        let from = self.in_use.load(Ordering::Relaxed);
        let to = (from + 1) % count;
        // Added before the other is removed: a connection without an endpoint would hold
        // every request until one came.
        let moved = async {
            self.client.add_endpoint(&self.all_endpoints[to]).await?;
            self.client.remove_endpoint(&self.all_endpoints[from]).await
        };
        // The change is queued to the connection, which takes it at its next request: bounded
        // so a full queue can never hold the sync task.
        match tokio::time::timeout(Duration::from_secs(1), moved).await {
            Ok(Ok(())) => {
                self.in_use.store(to, Ordering::Relaxed);
                tracing::debug!(endpoint = %self.all_endpoints[to], "etcd endpoint in use");
            }
            Ok(Err(error)) => tracing::debug!(%error, "moving to the next etcd endpoint failed"),
            Err(_) => tracing::debug!("moving to the next etcd endpoint timed out"),
        }
    }

    /// Whether srvd authenticates to etcd as a user.
    pub fn has_user(&self) -> bool {
        self.user.is_some()
    }

    /// Gets a fresh auth token for the user (nothing without one). Every clone of this
    /// connection uses the new token, and from then on unary calls refresh it themselves.
    ///
    /// # Errors
    /// etcd unreachable, or the user or password refused.
    pub async fn authenticate(&mut self) -> Result<(), SyncError> {
        let Some((user, password)) = &self.user else {
            return Ok(());
        };
        let creds = Some((user.clone(), password.expose().to_string()));
        bounded(self.client.update_user(creds)).await
    }

    /// Proves at start that etcd accepts srvd: authenticates (with a user) and makes one small
    /// read, so a wrong CA, a refused client certificate or a wrong password is known at once.
    ///
    /// # Errors
    /// The first failure.
    pub async fn probe(&mut self) -> Result<(), SyncError> {
        self.authenticate().await?;
        let options = GetOptions::new().with_prefix().with_count_only();
        bounded(self.kv.get(self.prefix.clone(), Some(options)))
            .await
            .map(|_| ())
    }

    /// The same connection listing at most `keys` keys per page (at least 1): lets a test put
    /// page boundaries where it wants them without writing 50,000 keys.
    #[must_use]
    pub fn with_page_size(mut self, keys: i64) -> Self {
        self.page_size = keys.max(1);
        self
    }

    /// The same connection failing a watch that hears nothing for `silence`
    /// (`--etcd-watch-silence`; [`DEFAULT_WATCH_SILENCE`] otherwise).
    #[must_use]
    pub fn with_watch_silence(mut self, silence: Duration) -> Self {
        self.watch_silence = silence;
        self
    }

    /// Reads every key under the prefix at one revision, in pages pinned to that revision. A page
    /// too large for the decode limit is halved and read again; the page size grows back after
    /// each page that fits.
    ///
    /// # Errors
    /// etcd unreachable, [`SyncError::Compacted`] when the revision is compacted between pages
    /// (the caller reads again), or one key larger than the decode limit
    /// ([`SyncError::TooLarge`], naming the key).
    pub async fn list(&mut self) -> Result<Listing, SyncError> {
        let prefix = self.prefix.clone();
        self.list_prefix(&prefix, 0).await
    }

    /// [`Etcd::list`] for keys under `prefix`, pinned to `revision` (0: the current one, which
    /// the listing then reports). Several prefixes read at one pinned revision are one
    /// consistent view of the store.
    ///
    /// # Errors
    /// As [`Etcd::list`]; also `revision` compacted.
    pub async fn list_prefix(
        &mut self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<Listing, SyncError> {
        let mut kvs = Vec::new();
        let revision = self
            .list_prefix_each(prefix, revision, |kv| kvs.push(kv))
            .await?;
        Ok(Listing { revision, kvs })
    }

    /// [`Etcd::list_prefix`], handing each key to `each` as its page arrives, so that only one
    /// page of raw bytes is held at a time (700,000 keys are about 150 MB of them). Returns the
    /// revision every key was read at.
    ///
    /// # Errors
    /// As [`Etcd::list_prefix`]; keys already handed over belong to a listing that failed.
    pub async fn list_prefix_each(
        &mut self,
        prefix: &[u8],
        revision: i64,
        mut each: impl FnMut(RawKv),
    ) -> Result<i64, SyncError> {
        self.list_prefix_pages(prefix, revision, |page| {
            page.into_iter().for_each(&mut each);
            std::future::ready(true)
        })
        .await
    }

    /// [`Etcd::list_prefix`], handing each page to `sink` as it arrives, with the request for
    /// the next page already sent: etcd prepares page N+1 (its CPU, not ours) while `sink` takes
    /// page N, which is how a caller that decodes on another thread overlaps the two. `sink`
    /// returning `false` stops the listing (its receiver is gone). Returns the revision every key
    /// was read at.
    ///
    /// # Errors
    /// As [`Etcd::list_prefix`]; pages already handed over belong to a listing that failed.
    pub async fn list_prefix_pages<F: Future<Output = bool>>(
        &mut self,
        prefix: &[u8],
        revision: i64,
        mut sink: impl FnMut(Vec<RawKv>) -> F,
    ) -> Result<i64, SyncError> {
        let end = prefix_end(prefix);
        let mut from = prefix.to_vec();
        let mut revision = revision;
        let mut limit = self.page_size;
        // The next page's request, sent before the current page is handed over.
        let mut ahead: Option<tokio::task::JoinHandle<Result<RangeResponse, SyncError>>> = None;
        loop {
            let result = match ahead.take() {
                Some(request) => request
                    .await
                    .map_err(|e| SyncError::Watch(format!("page request task: {e}")))?,
                None => self.page(&from, &end, limit, revision).await,
            };
            let mut page = match result {
                Ok(page) => page,
                Err(SyncError::Etcd(error)) if is_too_large(&error) => {
                    if limit == 1 {
                        return Err(self.key_too_large(&from, &end, revision).await);
                    }
                    limit /= 2;
                    tracing::debug!(limit, "etcd page too large; halving it");
                    continue;
                }
                Err(error) => return Err(error),
            };
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            let more = match (page.more(), page.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                    true
                }
                _ => false,
            };
            limit = (limit * 2)
                .min(self.page_size)
                .min(keys_that_fit(page.kvs(), self.max_response_bytes));
            if more {
                let (kv, from, end) = (self.kv.clone(), from.clone(), end.clone());
                ahead = Some(tokio::spawn(async move {
                    get_page(kv, from, end, limit, revision).await
                }));
                // On a runtime with one worker the request task runs only when this one waits:
                // let it put the request on the wire before the sink takes the CPU.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
            if !sink(page.take_kvs().into_iter().map(raw).collect()).await {
                if let Some(request) = ahead {
                    request.abort();
                }
                return Err(SyncError::Watch("listing abandoned".into()));
            }
            if !more {
                break;
            }
        }
        Ok(revision)
    }

    /// One page of `[from, end)`: at most `limit` keys, at `revision` (0: the current one).
    async fn page(
        &self,
        from: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<RangeResponse, SyncError> {
        get_page(
            self.kv.clone(),
            from.to_vec(),
            end.to_vec(),
            limit,
            revision,
        )
        .await
    }

    /// The error for a page of one key that is still too large, naming that key when etcd
    /// says which it is (a keys-only read is small).
    async fn key_too_large(&mut self, from: &[u8], end: &[u8], revision: i64) -> SyncError {
        let mut options = GetOptions::new()
            .with_range(end.to_vec())
            .with_limit(1)
            .with_keys_only();
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let key = bounded(self.kv.get(from.to_vec(), Some(options)))
            .await
            .ok()
            .and_then(|page| page.kvs().first().map(|kv| kv.key().to_vec()));
        let what = match key {
            Some(key) => format!("etcd key {}", String::from_utf8_lossy(&key)),
            None => format!(
                "the first etcd key in [{}, {})",
                String::from_utf8_lossy(from),
                String::from_utf8_lossy(end)
            ),
        };
        SyncError::TooLarge {
            what,
            limit: self.max_response_bytes,
        }
    }

    /// Watches the prefix from `revision`, once etcd confirms the watch.
    ///
    /// # Errors
    /// [`SyncError::Compacted`] when `revision` is no longer in etcd's history.
    pub async fn watch(&mut self, revision: i64) -> Result<Watch, SyncError> {
        let prefix = self.prefix.clone();
        self.watch_prefix(&prefix, revision).await
    }

    /// [`Etcd::watch`] for keys under `prefix`: each prefix has its own stream, so each resumes
    /// from its own last applied revision.
    ///
    /// # Errors
    /// As [`Etcd::watch`].
    pub async fn watch_prefix(&mut self, prefix: &[u8], revision: i64) -> Result<Watch, SyncError> {
        self.history_kept(prefix, revision).await?;
        // The whole creation, not only the wait for `created`: opening the stream waits for
        // etcd's response headers, and only the keep-alive stands between that and a member
        // (or a proxy in front of one) that answers pings but never the watch.
        tokio::time::timeout(CALL_TIMEOUT, self.create_watch(prefix, revision))
            .await
            .map_err(|_| SyncError::Timeout(CALL_TIMEOUT))?
    }

    /// Fails with [`SyncError::Compacted`] when etcd no longer holds the history a watch from
    /// `revision` needs, by reading one exact key at that revision: etcd checks the revision
    /// before it looks anything up, so the read costs the same however large the prefix.
    ///
    /// etcd would refuse such a watch itself, but through `etcd grpc-proxy` (3.4, and still in
    /// 3.6) that refusal breaks the prefix for everyone: the proxy shares one upstream watch
    /// among its clients' watches on a range, and the refusal (which carries revision 0) leaves
    /// that shared watch dead yet still accepting newcomers from any revision, and absorbing the
    /// proxy's live watches on the range as they deliver. Every replica behind that proxy then
    /// hears nothing, for as long as the refused watch stays open. So srvd never asks for one.
    async fn history_kept(&mut self, prefix: &[u8], revision: i64) -> Result<(), SyncError> {
        if revision <= 1 {
            return Ok(());
        }
        let options = GetOptions::new().with_revision(revision).with_count_only();
        match bounded(self.kv.get(prefix.to_vec(), Some(options))).await {
            // Nothing written since the revision srvd holds: no history to lose.
            Err(SyncError::Etcd(error)) if past_revision(&error) == Some(PastRevision::Future) => {
                Ok(())
            }
            result => result.map(|_| ()).map_err(|e| compaction(e, revision)),
        }
    }

    /// Opens the stream and waits for etcd to confirm the watch (unbounded: see `watch_prefix`).
    async fn create_watch(&mut self, prefix: &[u8], revision: i64) -> Result<Watch, SyncError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision)
            // No `with_fragment`: etcd 3.4 re-measures a fragment after each event it adds
            // (quadratic in the events: minutes of etcd CPU for a catch-up over two
            // 100,000-key transactions). A response too large to decode is a re-read instead.
            .with_progress_notify();
        let limit = self.max_response_bytes;
        let mut probe_key = prefix.to_vec();
        probe_key.extend_from_slice(PROBE_SUFFIX);
        let (sender, mut stream) = self
            .watch
            .watch(prefix.to_vec(), Some(options))
            .await
            .map_err(|e| watch_error(e, limit))?
            .split();
        // The first response confirms creation; a compacted start revision then cancels it.
        let mut pending = Vec::new();
        loop {
            let response = stream
                .message()
                .await
                .map_err(|e| watch_error(e, limit))?
                .ok_or_else(|| SyncError::Watch("stream closed before creation".into()))?;
            if response.canceled() {
                return Err(cancel_error(&response, revision));
            }
            if response.created() && response.events().is_empty() {
                // Creation alone; a cancellation for compaction may follow immediately.
                if let Some(next) = stream.message().now_or_never() {
                    match next.map_err(|e| watch_error(e, limit))? {
                        Some(r) if r.canceled() => return Err(cancel_error(&r, revision)),
                        Some(r) => pending.push(r),
                        None => return Err(SyncError::Watch("stream closed".into())),
                    }
                }
                return Ok(Watch {
                    stream,
                    probe_sender: WatchRequestSender(sender.0.clone()),
                    requester: Some(ProgressRequester(sender)),
                    id: response.watch_id(),
                    pending,
                    limit,
                    probe_key,
                    probe: Probe::None,
                    heard: Instant::now(),
                    asked: None,
                    silence: self.watch_silence,
                    own_heard: Instant::now(),
                    next: revision,
                });
            }
            pending.push(response);
        }
    }

    /// The remaining time of `lease`, or `None` when it no longer exists.
    ///
    /// # Errors
    /// etcd unreachable.
    pub async fn lease_remaining(&mut self, lease: i64) -> Result<Option<Duration>, SyncError> {
        let response = bounded(
            self.lease
                .time_to_live(lease, Some(LeaseTimeToLiveOptions::new())),
        )
        .await?;
        Ok(u64::try_from(response.ttl())
            .ok()
            .filter(|ttl| *ttl > 0)
            .map(Duration::from_secs))
    }
}

fn cancel_error(response: &etcd_client::WatchResponse, wanted: i64) -> SyncError {
    let reason = response.cancel_reason();
    if response.compact_revision() > 0 {
        SyncError::Compacted {
            wanted,
            compacted: Some(response.compact_revision()),
        }
    } else if reason.contains("permission denied") || reason.contains("auth token") {
        // etcd 3.4 cancels a watch created with an expired or unknown token as "permission
        // denied" (it cannot tell the two apart at that point).
        SyncError::Auth(reason.to_string())
    } else {
        SyncError::Watch(format!("canceled: {}", response.cancel_reason()))
    }
}

/// What the stream's next message was: a response, or why there is none (broken or closed).
fn delivered(
    next: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    limit: usize,
) -> Result<etcd_client::WatchResponse, SyncError> {
    next.map_err(|e| watch_error(e, limit))?
        .ok_or_else(|| SyncError::Watch("stream closed".into()))
}

/// A broken watch stream; "too large" is told apart so the log can say which flag to raise.
fn watch_error(error: etcd_client::Error, limit: usize) -> SyncError {
    if let etcd_client::Error::GRpcStatus(status) = &error
        && i32::from(status.code()) == super::access::UNAUTHENTICATED
    {
        SyncError::Auth(status.message().to_string())
    } else if is_too_large(&error) {
        SyncError::TooLarge {
            what: "an etcd watch response".into(),
            limit,
        }
    } else {
        SyncError::Etcd(error)
    }
}

fn event(event: &etcd_client::Event) -> Option<RawEvent> {
    let kv = event.kv()?;
    Some(match event.event_type() {
        EventType::Put => RawEvent::Put(raw_ref(kv)),
        // A delete's kv holds the key and, as mod_revision, the revision of the delete.
        EventType::Delete => RawEvent::Delete {
            key: kv.key().to_vec(),
            revision: kv.mod_revision(),
        },
    })
}

/// Turns one response into a batch: its events (whole revisions, since the watch asks for no
/// fragments), or the progress an event-less response reports.
fn assemble(events: Vec<RawEvent>, progress: Option<i64>) -> Option<WatchBatch> {
    if events.is_empty() {
        return progress.map(|revision| WatchBatch {
            progress: Some(revision),
            ..WatchBatch::default()
        });
    }
    Some(WatchBatch {
        events,
        progress: None,
        answered: None,
    })
}

/// What an event-less watch response says, told apart by its `watch_id`.
///
/// etcd sends two kinds, and only one may move the revision a watch resumes from. Its periodic
/// progress notification carries the watcher's own id, goes only to a synced watcher and travels
/// the watcher's own channel behind its events: every change up to its revision has been sent.
/// The answer to a progress *request* carries id -1 (checked against etcd 3.4.23), reports the
/// store's current revision without asking whether the watcher is synced, and travels a control
/// channel that can overtake events still queued for the watcher (etcd issue #15220, fixed only
/// in later releases). Resuming after it could skip such an event forever; publishing it is the
/// lesser risk (a reader may briefly see the revision before the in-flight event lands), and
/// without it an idle prefix would hold the published revision back for up to 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    /// Not an event-less notice (events, or the creation confirmation).
    None,
    /// The watcher's own progress notification: safe to resume from.
    Progress(i64),
    /// The answer to a progress request: safe to publish, not to resume from.
    Answered(i64),
}

/// Classifies a response of the watcher `own` (see [`Notice`]).
fn notice(own: i64, watch_id: i64, created: bool, has_events: bool, header: Option<i64>) -> Notice {
    match header {
        Some(revision) if !created && !has_events => {
            if watch_id == own {
                Notice::Progress(revision)
            } else {
                Notice::Answered(revision)
            }
        }
        _ => Notice::None,
    }
}

/// Asks etcd, on one watch's stream, for a progress answer (a [`WatchBatch::answered`]).
#[derive(Debug)]
pub struct ProgressRequester(WatchRequestSender);

impl ProgressRequester {
    /// Sends one request. The caller keeps at most one unanswered, so the request channel
    /// (capacity > 1) never fills and this never waits on etcd.
    ///
    /// # Errors
    /// The stream is gone (its watch reports the break).
    pub async fn request(&mut self) -> Result<(), SyncError> {
        self.0.request_progress().await.map_err(SyncError::from)
    }
}

/// Where the stream's liveness probe stands (at most one is out at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// None out.
    None,
    /// Created, its `created` reply (which names its id) not yet received.
    Creating,
    /// Confirmed as the watcher with this id and cancelled; its `canceled` reply not yet received.
    Canceling(i64),
}

/// Whether a response with `watch_id` belongs to the liveness probe in state `probe` (on a
/// stream whose watcher is `own`), and if so the probe's next state; `None`: the watcher's own.
/// Only one probe is out at a time and the watcher was confirmed before it, so any `created`
/// reply for another id while one is being created is the probe's (`etcd grpc-proxy` numbers
/// watchers itself, ignoring a requested id). A cancellation is the probe's only by its id: the
/// watcher's own still ends the watch.
fn probe_reply(
    probe: Probe,
    own: i64,
    watch_id: i64,
    created: bool,
    canceled: bool,
) -> Option<Probe> {
    match probe {
        Probe::Creating if created && watch_id != own => Some(if canceled {
            // Refused at once (it still answered): nothing to cancel.
            Probe::None
        } else {
            Probe::Canceling(watch_id)
        }),
        // Its cancellation, or an event on its key written meanwhile.
        Probe::Canceling(probe) if watch_id == probe => Some(if canceled {
            Probe::None
        } else {
            Probe::Canceling(probe)
        }),
        _ => None,
    }
}

/// A confirmed watch.
pub struct Watch {
    stream: WatchResponseStream,
    /// The stream's sending half, for liveness probes.
    probe_sender: WatchRequestSender,
    /// Until taken: the sending half of the stream, for progress requests.
    requester: Option<ProgressRequester>,
    /// This watcher's id on its stream: tells its own progress notifications from answers.
    id: i64,
    pending: Vec<etcd_client::WatchResponse>,
    limit: usize,
    /// The exact key a liveness probe watches.
    probe_key: Vec<u8>,
    probe: Probe,
    /// When the stream last delivered anything.
    heard: Instant,
    /// When a liveness probe was asked for, if nothing has been heard since.
    asked: Option<Instant>,
    /// How long the watcher itself may hear nothing (see [`SyncError::Silent`]).
    silence: Duration,
    /// When the watcher itself last heard something: its creation, events or etcd's progress
    /// notification (the stream's other traffic proves the stream, not the watcher).
    own_heard: Instant,
    /// The revision this watch delivers next (its start, then past each event or progress
    /// notification): what a cancellation for compaction says was wanted.
    next: i64,
}

impl Watch {
    /// The stream's sending half, for progress requests (once: later calls return `None`).
    pub fn requester(&mut self) -> Option<ProgressRequester> {
        self.requester.take()
    }

    /// Waits for the next batches: everything already received, without waiting for more, so a
    /// burst is applied and published once.
    ///
    /// # Errors
    /// The stream broke (reconnect and resume) or etcd cancelled it for compaction.
    pub async fn next_batches(&mut self) -> Result<Vec<WatchBatch>, SyncError> {
        let mut batches = Vec::new();
        for response in std::mem::take(&mut self.pending) {
            self.push(&response, &mut batches)?;
        }
        while batches.is_empty() {
            let next = self.next_response().await?;
            self.receive(&next, &mut batches).await?;
        }
        while let Some(next) = self.stream.message().now_or_never() {
            let next = delivered(next, self.limit)?;
            self.receive(&next, &mut batches).await?;
        }
        Ok(batches)
    }

    /// The next response; after `LIVENESS_IDLE` of silence asks for one (a liveness probe), and
    /// fails when that goes unanswered for `LIVENESS_DEADLINE`, or when the watcher itself has
    /// heard nothing for its `silence`. A response that is already in counts even when srvd
    /// comes back late (the timeout polls the stream first).
    async fn next_response(&mut self) -> Result<etcd_client::WatchResponse, SyncError> {
        loop {
            let probe = match self.asked {
                Some(at) => at + LIVENESS_DEADLINE,
                None => self.heard + LIVENESS_IDLE,
            };
            let silent = self.own_heard + self.silence;
            match tokio::time::timeout_at(probe.min(silent).into(), self.stream.message()).await {
                Ok(next) => return delivered(next, self.limit),
                Err(_) if Instant::now() >= silent => {
                    return Err(SyncError::Silent(self.silence));
                }
                Err(_) if self.asked.is_some() => {
                    return Err(SyncError::Watch(format!(
                        "no answer within {LIVENESS_DEADLINE:?} to a liveness probe after \
                         {LIVENESS_IDLE:?} of silence"
                    )));
                }
                Err(_) => self.ask().await?,
            }
        }
    }

    /// Sends a liveness probe: a watcher on one exact key from the current revision, which any
    /// etcd watch server (a member or `etcd grpc-proxy`, which answers no progress request)
    /// confirms with a `created` reply and which costs no history read. With one already out,
    /// its outstanding reply is the answer awaited.
    async fn ask(&mut self) -> Result<(), SyncError> {
        self.asked = Some(Instant::now());
        if self.probe == Probe::None {
            self.probe_sender
                .watch(self.probe_key.clone(), Some(WatchOptions::new()))
                .await?;
            self.probe = Probe::Creating;
        }
        tracing::trace!(probe = ?self.probe, "liveness probe");
        Ok(())
    }

    /// Takes one response: a liveness probe's own replies (and any event on its key) end there
    /// (a probe's cancellation must never end the watch); the rest goes to `push`.
    async fn receive(
        &mut self,
        response: &etcd_client::WatchResponse,
        batches: &mut Vec<WatchBatch>,
    ) -> Result<(), SyncError> {
        self.heard = Instant::now();
        self.asked = None;
        let id = response.watch_id();
        let Some(next) = probe_reply(
            self.probe,
            self.id,
            id,
            response.created(),
            response.canceled(),
        ) else {
            return self.push(response, batches);
        };
        if let Probe::Canceling(probe) = next
            && self.probe == Probe::Creating
        {
            self.probe_sender.cancel(probe).await?;
        }
        tracing::trace!(watch_id = id, probe = ?next, "liveness probe reply");
        self.probe = next;
        Ok(())
    }

    fn push(
        &mut self,
        response: &etcd_client::WatchResponse,
        batches: &mut Vec<WatchBatch>,
    ) -> Result<(), SyncError> {
        if response.canceled() {
            return Err(cancel_error(response, self.next));
        }
        if response.watch_id() == self.id {
            self.own_heard = Instant::now();
        }
        let kind = notice(
            self.id,
            response.watch_id(),
            response.created(),
            !response.events().is_empty(),
            response.header().map(|h| h.revision()),
        );
        tracing::trace!(
            watch_id = response.watch_id(),
            own = self.id,
            ?kind,
            "watch response"
        );
        let progress = match kind {
            Notice::Answered(revision) => {
                batches.push(WatchBatch {
                    answered: Some(revision),
                    ..WatchBatch::default()
                });
                return Ok(());
            }
            Notice::Progress(revision) => Some(revision),
            Notice::None => None,
        };
        let events: Vec<RawEvent> = response.events().iter().filter_map(event).collect();
        let reached = events.iter().map(RawEvent::revision).chain(progress).max();
        if let Some(reached) = reached {
            self.next = self.next.max(reached + 1);
        }
        if let Some(batch) = assemble(events, progress) {
            batches.push(batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Notice, Probe, RawEvent, assemble, distinct, notice, prefix_end, probe_reply};

    fn revisions(events: &[RawEvent]) -> Vec<i64> {
        events.iter().map(RawEvent::revision).collect()
    }

    #[test]
    fn only_an_eventless_response_carries_progress() {
        let batch = assemble(
            vec![RawEvent::Delete {
                key: b"a".to_vec(),
                revision: 4,
            }],
            Some(99),
        )
        .unwrap();
        assert_eq!((revisions(&batch.events), batch.progress), (vec![4], None));
        let batch = assemble(Vec::new(), Some(99)).unwrap();
        assert_eq!(batch.progress, Some(99));
        assert!(assemble(Vec::new(), None).is_none());
    }

    #[test]
    fn only_the_watchers_own_notification_is_progress_and_an_answer_is_only_vouched() {
        // The first watcher on a stream is id 0; etcd 3.4 answers a progress request as -1.
        assert_eq!(notice(0, 0, false, false, Some(9)), Notice::Progress(9));
        assert_eq!(notice(0, -1, false, false, Some(9)), Notice::Answered(9));
        assert_eq!(notice(3, 0, false, false, Some(9)), Notice::Answered(9));
        assert_eq!(notice(0, 0, true, false, Some(9)), Notice::None, "creation");
        assert_eq!(notice(0, 0, false, true, Some(9)), Notice::None, "events");
        assert_eq!(notice(0, -1, false, true, Some(9)), Notice::None, "events");
        assert_eq!(notice(0, 0, false, false, None), Notice::None, "no header");
    }

    #[test]
    fn a_probes_replies_are_its_own_and_never_end_the_watch() {
        // The watcher is id 0 on its stream; the probe gets the next id.
        assert_eq!(
            probe_reply(Probe::None, 0, 0, false, true),
            None,
            "own cancel"
        );
        assert_eq!(
            probe_reply(Probe::Creating, 0, 1, true, false),
            Some(Probe::Canceling(1))
        );
        assert_eq!(
            probe_reply(Probe::Creating, 0, 0, false, false),
            None,
            "own events while the probe is created"
        );
        assert_eq!(
            probe_reply(Probe::Creating, 0, -1, false, false),
            None,
            "a progress answer"
        );
        assert_eq!(
            probe_reply(Probe::Creating, 0, -1, true, true),
            Some(Probe::None),
            "refused"
        );
        assert_eq!(
            probe_reply(Probe::Canceling(1), 0, 1, false, false),
            Some(Probe::Canceling(1)),
            "an event on the probe's key"
        );
        assert_eq!(
            probe_reply(Probe::Canceling(1), 0, 1, false, true),
            Some(Probe::None)
        );
        assert_eq!(
            probe_reply(Probe::Canceling(1), 0, 0, false, true),
            None,
            "the watcher's own cancel still ends the watch"
        );
    }

    #[test]
    fn an_endpoint_named_twice_is_one_endpoint() {
        let given: Vec<String> = [
            "http://10.0.0.1:2379",
            "http://10.0.0.2:2379",
            "http://10.0.0.1:2379/",
            "http://10.0.0.2:2379",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(distinct(&given), given[..2]);
    }

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/skydns/"), b"/skydns0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
