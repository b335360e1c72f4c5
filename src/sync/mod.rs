//! The sync task: keeps the mirror equal to etcd and publishes one snapshot per batch.
//!
//! ```text
//! Listing ──(list at R)──► publish ──► Watching{from R+1} ──(batches)──► apply, publish
//!    ▲                                    │ stream broken: back off (≤ 2 s), resume from last+1
//!    └──────────── compacted ─────────────┘   (last = the last applied event's mod_revision)
//! ```
//! - Prefixes: the SkyDNS prefix and each registry-layout prefix (`EtcdConfig::registry_prefixes`)
//!   are listed together and watched on one stream each; a prefix is a `Feed` with its own
//!   revision, and "last" above is per feed: two streams run independently, so after a cut one
//!   prefix may have applied further than another, and resuming both from the furthest would
//!   skip the other's backlog. The published revision is the lowest feed revision (see
//!   [`SyncStatus::revision`]); a feed behind the others is asked for its progress after each
//!   publish, since etcd's own notification for an idle watch comes only every 10 minutes.
//! - Start: one consistent read of every prefix at revision R (paged; the first page fixes R and
//!   every other page of every prefix is pinned to it), published whole; then watches from R+1.
//! - Each wake-up applies every batch already received and publishes once, so bursts coalesce by
//!   themselves and a lone update is visible at once. No fixed delay window.
//! - Stream broken (etcd restart, network): reconnect with exponential backoff capped at 2 s and
//!   resume from the mirror's revision + 1; nothing is lost. That revision is the last applied
//!   event's own `mod_revision` (or a progress notification's), never a response header's: during
//!   a catch-up etcd sends 1,000 revisions per response under a header already at its current
//!   revision, and resuming from that would skip the rest of the backlog. The outage is logged
//!   once ("unreachable" and "response too large" apart), the recovery once; queries keep the
//!   last snapshot meanwhile.
//! - Auth token refused (etcd with auth: a watch created with an expired token, or after an
//!   etcd restart lost it, is cancelled; etcd-client renews tokens for unary calls only):
//!   authenticate again at once and resume from the same revisions; logged once at `info`. Refused
//!   again right after a fresh token: a user that may not read the prefix, trouble as above.
//! - History compacted (under any prefix): read every prefix afresh and swap the new mirror in
//!   whole.
//! - A key whose value srvd cannot serve is skipped with one warning naming it and counted; an
//!   older good value at that key is removed, so the mirror never serves stale data for it.
//!   The same key skipped again for the same reason within 10 s is counted, not logged, and the
//!   next warning for it carries `repeats` (`sync/skips.rs`), so a writer cannot flood the log.

pub mod access;
pub mod etcd;
mod leases;
mod skips;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use futures_util::{FutureExt, Stream, StreamExt};

use self::etcd::{Etcd, ProgressRequester, RawEvent, RawKv, SyncError, Watch, WatchBatch};
use self::skips::{Note, SkipLog};
use hickory_proto::rr::Name;

use crate::backend::registry::{self, RegistryEntry};
use crate::backend::{ServiceEntry, skydns};
use crate::index::leases::LeaseTable;
use crate::index::mirror::{Change, Listed, Mirror};
use crate::index::registry::RegistryMirror;
use crate::index::{BaseIndex, EtcdData, IndexHandle};

const BACKOFF_START: Duration = Duration::from_millis(100);
/// Reconnect attempts are never further apart than this.
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// What the sync task needs.
pub struct SyncSetup {
    /// The etcd connection.
    pub etcd: Etcd,
    /// The prefix's root path (`/skydns`).
    pub root: Arc<str>,
    /// Key paths of the etcd zones, in slot order.
    pub zone_paths: Vec<String>,
    /// The index without etcd data; each snapshot is this plus the current mirror.
    pub base: Arc<BaseIndex>,
    /// Where snapshots are published.
    pub handle: Arc<IndexHandle>,
    /// Lease deadlines.
    pub leases: Arc<LeaseTable>,
    /// Lease IDs whose deadline passed (from the table's expiry listener).
    pub expired_leases: mpsc::UnboundedReceiver<i64>,
    /// Root paths of the registry-layout prefixes (`/services`), disjoint from `root` and from
    /// each other.
    pub registry_roots: Vec<String>,
    /// The zone the registry is answered in (its instances' names are built in it once, as
    /// they are mirrored); the root when there is no registry.
    pub registry_zone: Name,
    /// Last contact with etcd and propagation delay, for `/metrics`.
    pub metrics: Arc<crate::ops::metrics::SyncMetrics>,
}

/// Progress the rest of srvd can observe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// The revision of the published mirror, once the first read finished: the lowest of the
    /// prefixes' own revisions (each the last event applied from that prefix's watch, a
    /// progress notification's, or etcd's answer when asked for progress), so every prefix has
    /// reached it. A prefix behind the others is asked for progress at once, so an idle prefix
    /// does not hold it back until etcd's periodic notification (every 10 minutes).
    pub revision: Option<i64>,
    /// SkyDNS keys in the mirror.
    pub keys: usize,
    /// Registry-layout keys in the mirror.
    pub registry_keys: usize,
    /// Full reads of the prefix so far (1 after start; one more per compaction recovery).
    pub full_reads: u64,
    /// Lease look-ups (`LeaseTimeToLive`) made so far: one per lease first used, one per
    /// passed deadline; more would mean the lease table forgets leases still in use.
    pub lease_lookups: u64,
}

/// Keys skipped since start (malformed values); one counter for the whole process.
pub static SKIPPED_KEYS: AtomicU64 = AtomicU64::new(0);

/// Decodes a SkyDNS key, taking its bytes: the key becomes the entry's without a copy.
fn decode(kv: RawKv) -> Result<ServiceEntry, (String, String)> {
    let key = String::from_utf8(kv.key).map_err(|e| {
        (
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
            "key is not UTF-8".to_string(),
        )
    })?;
    skydns::decode_owned(key, &kv.value, kv.lease)
        .map_err(|(key, reason)| (key.into(), reason.to_string()))
}

/// Decodes a registry-layout key under `root` (`/services`).
fn decode_registry(root: &str, kv: &RawKv) -> Result<RegistryEntry, (String, String)> {
    let key = String::from_utf8(kv.key.clone()).map_err(|_| {
        (
            String::from_utf8_lossy(&kv.key).into_owned(),
            "key is not UTF-8".to_string(),
        )
    })?;
    registry::decode(root, &key, &kv.value, kv.lease).map_err(|reason| (key, reason.to_string()))
}

/// Recent skip warnings, process-wide like [`SKIPPED_KEYS`].
static SKIP_LOG: LazyLock<Mutex<SkipLog>> = LazyLock::new(Mutex::default);

/// Counts a skipped key and warns about it, aggregating repeats (see [`skips`]).
fn skip(key: &str, reason: &str) {
    SKIPPED_KEYS.fetch_add(1, Ordering::Relaxed);
    match note(key, reason) {
        Note::Warn { repeats: 0 } => {
            warn!(key, reason, "skipping etcd key: its value cannot be served");
        }
        Note::Warn { repeats } => warn!(
            key,
            reason,
            repeats,
            "skipping etcd key: its value cannot be served (again; repeats since the last warning)"
        ),
        Note::Overflow { skips } => warn!(
            key,
            reason, skips, "skipping etcd keys: too many distinct bad keys to name each; counted"
        ),
        Note::Quiet => debug!(key, reason, "skipping etcd key (repeat)"),
    }
}

/// Records one more occurrence of `reason` at `key` in the shared skip log (`sync/skips.rs`).
fn note(key: &str, reason: &str) -> Note {
    SKIP_LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .note(key, reason, Instant::now())
}

/// Warns that a served registry value lost some metadata (the decoder's `dropped` notes),
/// aggregated like skips, but not counted: the key itself is served.
fn dropped_metadata(entry: &RegistryEntry) {
    for dropped in &entry.dropped {
        let key = entry.key.as_str();
        match note(key, dropped) {
            Note::Warn { repeats: 0 } => {
                warn!(key, dropped, "etcd key served without some of its metadata");
            }
            Note::Warn { repeats } => warn!(
                key,
                dropped,
                repeats,
                "etcd key served without some of its metadata (again; repeats since the last warning)"
            ),
            Note::Overflow { skips } => warn!(
                key,
                dropped,
                skips,
                "etcd keys served without some metadata: too many distinct keys to name each"
            ),
            Note::Quiet => debug!(key, dropped, "metadata dropped (repeat)"),
        }
    }
}

/// What a watched prefix holds.
#[derive(Debug, Clone)]
enum Layout {
    /// CoreDNS's SkyDNS layout, into the mirror's SkyDNS map.
    SkyDns,
    /// The service-registry layout under this root path, into the registry mirror.
    Registry(Arc<str>),
}

/// One watched prefix: listed with the others at one revision, then watched on its own stream.
#[derive(Debug)]
struct Feed {
    /// The key prefix, ending in `/`.
    prefix: String,
    layout: Layout,
    /// The revision this prefix's keys are known to reflect: the listing's, then each applied
    /// event's own, or a progress notification's. Its watch resumes from here + 1; a single
    /// revision for all prefixes would skip a lagging prefix's backlog after a cut.
    applied: i64,
    /// The last revision etcd answered when asked for this prefix's progress. Published (as
    /// `max(applied, vouched)`), never resumed from: etcd 3.4's answer can overtake events still
    /// queued for the watch (see `etcd::Notice`). Kept across a rebuilt watch, so the published
    /// revision does not step back after a reconnect.
    vouched: i64,
    /// A progress request on this prefix's current stream is unanswered: at most one at a time,
    /// so a burst of writes elsewhere costs one request per round trip, not one per write.
    asking: bool,
}

impl Feed {
    /// The revision this prefix is published at (see [`Feed::vouched`]).
    fn reached(&self) -> i64 {
        self.applied.max(self.vouched)
    }
}

struct Syncer {
    etcd: Etcd,
    root: Arc<str>,
    zone_paths: Vec<String>,
    base: Arc<BaseIndex>,
    handle: Arc<IndexHandle>,
    leases: Arc<LeaseTable>,
    lookups: mpsc::UnboundedSender<i64>,
    status: Arc<watch::Sender<SyncStatus>>,
    mirror: Option<Mirror>,
    /// The SkyDNS prefix first, then each registry prefix.
    feeds: Vec<Feed>,
    registry_zone: Name,
    metrics: Arc<crate::ops::metrics::SyncMetrics>,
}

impl Syncer {
    /// The revision every prefix has reached (see [`SyncStatus::revision`]).
    fn reached(&self) -> i64 {
        self.feeds.iter().map(Feed::reached).min().unwrap_or(0)
    }

    /// Asks etcd for the progress of every prefix behind the furthest *applied* revision (not the
    /// furthest vouched one: answers chasing answers would keep idle streams busy under churn),
    /// unless it already has a request out. A prefix that received no event since then is
    /// otherwise only told by etcd's periodic notification, minutes later.
    async fn ask_progress(&mut self, requesters: &mut [ProgressRequester]) {
        let furthest = self.feeds.iter().map(|f| f.applied).max().unwrap_or(0);
        for (feed, requester) in self.feeds.iter_mut().zip(requesters) {
            if feed.asking || feed.reached() >= furthest {
                continue;
            }
            match requester.request().await {
                Ok(()) => feed.asking = true,
                // The stream is gone; its watch reports the break and is rebuilt.
                Err(error) => debug!(%error, prefix = feed.prefix, "progress request failed"),
            }
        }
    }

    fn publish(&mut self) {
        let reached = self.reached();
        let Some(mirror) = &mut self.mirror else {
            return;
        };
        mirror.set_revision(reached);
        let published = mirror.snapshot();
        let mirror = &*mirror;
        self.base.publish(
            &self.handle,
            EtcdData {
                mirror: Some(published),
                root: self.root.clone(),
                leases: self.leases.clone(),
            },
        );
        self.status.send_modify(|status| {
            status.revision = Some(mirror.revision());
            status.keys = mirror.len();
            status.registry_keys = mirror.registry().len();
        });
    }

    /// A key now uses `lease`: returns whether it is the first key on it (look the lease up).
    fn lease_used(&self, lease: i64) -> bool {
        lease != 0 && self.leases.acquire(lease)
    }

    /// Learns the deadlines of leases new to the table before the snapshot that brings them is
    /// published, so no answer gives their keys the `--min-lease-ttl` floor; bounded, and what
    /// is not learned in time goes to the refresher's retries (`leases::learn`).
    async fn learn_leases(&self, new: Vec<i64>) {
        for lease in leases::learn(&self.etcd, &self.leases, new, &self.status).await {
            let _ = self.lookups.send(lease);
        }
    }

    /// A key no longer uses `lease`: the table forgets it with its last key.
    fn lease_released(&self, lease: i64) {
        if lease != 0 {
            self.leases.release(lease);
        }
    }

    /// Reads every prefix at one revision and swaps the new mirror in whole: the first prefix's
    /// first page fixes the revision R, and every other page of every prefix is pinned to R.
    async fn relist(&mut self) -> Result<(), SyncError> {
        // Decoded page by page on a thread of its own while the next page is read: the raw
        // listing is never held whole, and etcd's work on page N+1 overlaps ours on page N.
        let (pages, mut received) = mpsc::channel::<Vec<RawKv>>(1);
        let mut listed = Listed::new(&self.zone_paths);
        let decoder = tokio::task::spawn_blocking(move || {
            while let Some(page) = received.blocking_recv() {
                for kv in page {
                    let mod_revision = kv.mod_revision;
                    match decode(kv) {
                        Ok(entry) => listed.push(Arc::new(entry), mod_revision),
                        Err((key, reason)) => skip(&key, &reason),
                    }
                }
            }
            listed
        });
        let read = self
            .etcd
            .list_prefix_pages(self.feeds[0].prefix.as_bytes(), 0, |page| {
                let pages = pages.clone();
                async move { pages.send(page).await.is_ok() }
            })
            .await;
        drop(pages);
        let listed = decoder
            .await
            .map_err(|e| SyncError::Watch(format!("decoding the listing: {e}")))?;
        let revision = read?;
        let mut registry = Vec::new();
        for feed in &self.feeds[1..] {
            let Layout::Registry(root) = &feed.layout else {
                continue;
            };
            self.etcd
                .list_prefix_each(
                    feed.prefix.as_bytes(),
                    revision,
                    |kv| match decode_registry(root, &kv) {
                        Ok(entry) => {
                            dropped_metadata(&entry);
                            registry.push(Arc::new(entry));
                        }
                        Err((key, reason)) => skip(&key, &reason),
                    },
                )
                .await?;
        }
        let first = self.mirror.is_none();
        let mut mirror = listed.finish(revision, self.mirror.as_ref());
        *mirror.registry_mut() = RegistryMirror::from_listing(
            self.registry_zone.clone(),
            registry,
            revision,
            self.mirror.as_ref().map(Mirror::registry),
        );
        let mut uses = HashMap::new();
        let skydns_leases = mirror.iter().map(|e| e.lease);
        let registry_leases = mirror.registry().iter().map(|e| e.lease);
        for lease in skydns_leases.chain(registry_leases).filter(|l| *l != 0) {
            *uses.entry(lease).or_insert(0) += 1;
        }
        let new = self.leases.replace_uses(uses);
        self.learn_leases(new).await;
        let (keys, registry_keys) = (mirror.len(), mirror.registry().len());
        self.mirror = Some(mirror);
        for feed in &mut self.feeds {
            feed.applied = revision;
        }
        self.status.send_modify(|status| status.full_reads += 1);
        self.publish();
        // Logged once the snapshot is published: from this line on, queries see the data (the
        // server answers before the first read, so operators and tests read this line as "ready").
        info!(
            keys,
            registry_keys,
            revision,
            skipped = SKIPPED_KEYS.load(Ordering::Relaxed),
            "{}",
            if first {
                "etcd initial sync complete"
            } else {
                "etcd mirror re-read in full"
            }
        );
        Ok(())
    }

    /// Applies batches in order and publishes once. Each change moves its prefix to its own
    /// revision, so a prefix's revision (where its lost watch resumes) is always one whose
    /// changes the mirror holds in full, and so is the lowest of them, which is published.
    async fn apply(&mut self, batches: Vec<(usize, WatchBatch)>) {
        let Some(mut mirror) = self.mirror.take() else {
            return;
        };
        let mut changed = 0usize;
        let mut new_leases = Vec::new();
        for (feed, batch) in batches {
            let layout = self.feeds[feed].layout.clone();
            for event in batch.events {
                let revision = event.revision();
                let (key, lease) = match &layout {
                    Layout::SkyDns => self.apply_skydns(&mut mirror, event),
                    Layout::Registry(root) => self.apply_registry(&mut mirror, root, event),
                };
                debug!(key, lease, revision, "etcd event");
                if let Some(lease) = lease {
                    new_leases.push(lease);
                }
                self.feeds[feed].applied = self.feeds[feed].applied.max(revision);
                changed += 1;
            }
            // etcd's word that nothing else changed under this prefix up to this revision (the
            // mirror's own revision is set from the prefixes' at publish).
            if let Some(revision) = batch.progress {
                self.feeds[feed].applied = self.feeds[feed].applied.max(revision);
            }
            if let Some(revision) = batch.answered {
                let feed = &mut self.feeds[feed];
                feed.vouched = feed.vouched.max(revision);
                feed.asking = false;
            }
        }
        self.learn_leases(new_leases).await;
        debug!(changed, revision = self.reached(), "publishing");
        self.mirror = Some(mirror);
        self.publish();
    }

    /// Applies one SkyDNS event; returns its key and the lease it brings, when new to the table.
    fn apply_skydns(&self, mirror: &mut Mirror, event: RawEvent) -> (String, Option<i64>) {
        let revision = event.revision();
        let (key, new_entry) = match event {
            RawEvent::Put(kv) => match decode(kv) {
                Ok(entry) => (String::from(&*entry.key), Some(Arc::new(entry))),
                Err((key, reason)) => {
                    skip(&key, &reason);
                    (key, None)
                }
            },
            RawEvent::Delete { key, .. } => (String::from_utf8_lossy(&key).into_owned(), None),
        };
        let old_lease = mirror.exact(&key).map(|e| e.lease);
        // The new lease is taken before the old one is let go, so re-writing a key on the same
        // lease never drops that lease's count to zero (and forgets it).
        let new_lease = new_entry
            .as_ref()
            .map(|e| e.lease)
            .filter(|l| self.lease_used(*l));
        if let Some(old) = old_lease {
            self.lease_released(old);
        }
        let change = match new_entry {
            Some(entry) => Change::Put(entry),
            None => Change::Delete(key.clone()),
        };
        // Applied per event so a later event's old-lease lookup sees this one.
        mirror.apply(revision, [change]);
        (key, new_lease)
    }

    /// Applies one registry event (keys under `root`), as [`Syncer::apply_skydns`] does.
    fn apply_registry(
        &self,
        mirror: &mut Mirror,
        root: &str,
        event: RawEvent,
    ) -> (String, Option<i64>) {
        let revision = event.revision();
        let (key, new_entry) = match event {
            RawEvent::Put(kv) => match decode_registry(root, &kv) {
                Ok(entry) => {
                    dropped_metadata(&entry);
                    (entry.key.clone(), Some(Arc::new(entry)))
                }
                Err((key, reason)) => {
                    skip(&key, &reason);
                    (key, None)
                }
            },
            RawEvent::Delete { key, .. } => (String::from_utf8_lossy(&key).into_owned(), None),
        };
        let new_lease = new_entry
            .as_ref()
            .map(|e| e.lease)
            .filter(|l| self.lease_used(*l));
        mirror.touch_registry();
        let registry = mirror.registry_mut();
        let old = match new_entry {
            Some(entry) => registry.put(entry, revision),
            None => registry.remove(&key, revision),
        };
        if let Some(old) = old {
            self.lease_released(old.lease);
        }
        (key, new_lease)
    }

    /// Watches every prefix, each from its own revision, until a stream breaks.
    async fn watch(
        &mut self,
        health: &mut Health,
        backoff: &mut Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), SyncError> {
        let mut streams = Vec::with_capacity(self.feeds.len());
        let mut requesters = Vec::with_capacity(self.feeds.len());
        for (slot, feed) in self.feeds.iter_mut().enumerate() {
            // A request on the old stream will never be answered.
            feed.asking = false;
            let mut watch = self
                .etcd
                .watch_prefix(feed.prefix.as_bytes(), feed.applied + 1)
                .await?;
            let requester = watch
                .requester()
                .ok_or_else(|| SyncError::Watch("no request side".into()))?;
            requesters.push(requester);
            streams.push(batches_of(slot, watch));
        }
        let mut streams = futures_util::stream::select_all(streams);
        if health.answered() {
            info!(
                revision = self.reached(),
                endpoint = self.etcd.endpoint(),
                "etcd reachable again; resuming the watch"
            );
        }
        // The next break starts backing off from the beginning. (A response too large to
        // decode never comes back here: it is a re-read.)
        *backoff = BACKOFF_START;
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = streams.next() => next,
            };
            // Every stream yields until its watch breaks, and then ends the select with its error.
            let Some((slot, first)) = next else {
                return Err(SyncError::Watch("every watch ended".into()));
            };
            let arrived = Instant::now();
            let mut batches = Vec::new();
            let mut broken = None;
            match first {
                Ok(got) => batches.extend(got.into_iter().map(|b| (slot, b))),
                Err(error) => broken = Some(error),
            }
            // Whatever the other prefixes' streams already hold goes into the same publish.
            while broken.is_none() {
                match streams.next().now_or_never() {
                    Some(Some((slot, Ok(got)))) => {
                        batches.extend(got.into_iter().map(|b| (slot, b)));
                    }
                    Some(Some((_, Err(error)))) => broken = Some(error),
                    Some(None) | None => break,
                }
            }
            // What arrived before a break is whole revisions: apply it, then resume after it.
            if !batches.is_empty() {
                self.metrics.contact();
                self.apply(batches).await;
                self.metrics.propagated(arrived);
                if broken.is_none() {
                    self.ask_progress(&mut requesters).await;
                }
                if health.progressed() {
                    info!("etcd sync moving again");
                }
                *backoff = BACKOFF_START;
            }
            if let Some(error) = broken {
                return Err(error);
            }
        }
    }
}

/// What one prefix's watch yields: its feed slot and the batches received (or why it broke).
type FeedStream = Pin<Box<dyn Stream<Item = (usize, Result<Vec<WatchBatch>, SyncError>)> + Send>>;

/// One prefix's watch as a stream of `(feed slot, batches)`, ending after its first error, so
/// several prefixes' watches are selected together without losing what one has received.
fn batches_of(slot: usize, watch: Watch) -> FeedStream {
    Box::pin(futures_util::stream::unfold(
        Some(watch),
        move |watch| async move {
            let mut watch = watch?;
            let result = watch.next_batches().await;
            let watch = result.is_ok().then_some(watch);
            Some(((slot, result), watch))
        },
    ))
}

/// Why the sync is not making progress, as far as the log is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// etcd cannot be reached (or answered with an error).
    Unreachable,
    /// etcd answers, but a response exceeds `--etcd-max-response-bytes`.
    TooLarge,
    /// etcd refuses the watch even with a fresh token (the user may not read the prefix).
    Refused,
}

impl Trouble {
    fn of(error: &SyncError) -> Self {
        match error {
            SyncError::TooLarge { .. } => Self::TooLarge,
            _ => Self::Unreachable,
        }
    }
}

/// What the log has said about the sync's trouble: each kind is logged once per outage. A
/// listing that keeps meeting one key too large to decode is no recovery when etcd answers
/// something else in between, so only progress ends a "too large" outage.
#[derive(Debug, Default)]
struct Health {
    trouble: Option<Trouble>,
}

impl Health {
    /// A call failed with `kind`; returns it when it is news to warn about.
    fn failed(&mut self, kind: Trouble) -> Option<Trouble> {
        (self.trouble != Some(kind)).then(|| {
            self.trouble = Some(kind);
            kind
        })
    }

    /// etcd answered (a watch was confirmed): ends an "unreachable" outage, not a "too large"
    /// one. Returns whether that ended an outage.
    fn answered(&mut self) -> bool {
        let ended = self.trouble == Some(Trouble::Unreachable);
        if ended {
            self.trouble = None;
        }
        ended
    }

    /// The mirror moved on (a listing or watch events applied): ends any outage. Returns
    /// whether that ended one.
    fn progressed(&mut self) -> bool {
        self.trouble.take().is_some()
    }
}

/// Runs the sync task until `shutdown`; `status` reports progress.
pub async fn run(setup: SyncSetup, status: watch::Sender<SyncStatus>, shutdown: CancellationToken) {
    let (lookups_tx, lookups_rx) = mpsc::unbounded_channel();
    let status = Arc::new(status);
    let refresher = tokio::spawn(leases::refresh(
        setup.etcd.clone(),
        setup.leases.clone(),
        lookups_rx,
        setup.expired_leases,
        lookups_tx.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let feeds: Vec<Feed> = std::iter::once(Feed {
        prefix: skydns::key::subtree_prefix(&setup.root),
        layout: Layout::SkyDns,
        applied: 0,
        vouched: 0,
        asking: false,
    })
    .chain(setup.registry_roots.iter().map(|root| Feed {
        prefix: skydns::key::subtree_prefix(root),
        layout: Layout::Registry(Arc::from(root.as_str())),
        applied: 0,
        vouched: 0,
        asking: false,
    }))
    .collect();
    let mut syncer = Syncer {
        etcd: setup.etcd,
        root: setup.root,
        zone_paths: setup.zone_paths,
        base: setup.base,
        handle: setup.handle,
        leases: setup.leases,
        lookups: lookups_tx,
        status,
        mirror: None,
        feeds,
        registry_zone: setup.registry_zone,
        metrics: setup.metrics,
    };
    let mut need_list = true;
    let mut health = Health::default();
    let mut backoff = BACKOFF_START;
    // An auth refusal was just answered with a new token: one more refusal right after it is
    // no expiry but a user that may not watch the prefix, handled as trouble (warn, back off).
    let mut reauthenticated = false;
    // Token renewals are logged at `info` once per run, then at `debug`.
    let mut auth_logged = false;
    while !shutdown.is_cancelled() {
        let result = if need_list {
            // A listing is rare: get a token first, so a start while etcd was down (no token
            // yet) or an etcd that lost its tokens is read with a valid one.
            let authenticated = syncer.etcd.authenticate().await;
            let relisted = match authenticated {
                Ok(()) => syncer.relist().await,
                Err(error) => Err(error),
            };
            relisted.map(|()| {
                syncer.metrics.contact();
                need_list = false;
                if health.progressed() {
                    info!(
                        endpoint = syncer.etcd.endpoint(),
                        "etcd reachable again; mirror re-read"
                    );
                }
                backoff = BACKOFF_START;
            })
        } else {
            syncer.watch(&mut health, &mut backoff, &shutdown).await
        };
        if !matches!(result, Err(SyncError::Auth(_))) {
            // Anything but another refusal: a fresh token was not refused, so the next
            // refusal is a new expiry (logged at debug: one line per expiry would be noise).
            reauthenticated = false;
        }
        match result {
            Ok(()) => {}
            // A watch response too large to decode: a catch-up over many revisions comes as
            // one message. The listing's pages always fit, so read everything at the current
            // revision and watch on from there (one re-read per such response, no backoff).
            Err(SyncError::TooLarge { what, limit }) if !need_list => {
                info!(
                    limit,
                    revision = syncer.reached(),
                    "{what} is larger than --etcd-max-response-bytes; re-reading everything instead"
                );
                need_list = true;
            }
            // A watcher nothing serves (its stream still answers): what it missed cannot be
            // known, so read everything, as after a compaction. Warned each time: it takes
            // --etcd-watch-silence to happen again.
            Err(SyncError::Silent(silence)) => {
                warn!(
                    ?silence,
                    revision = syncer.reached(),
                    endpoint = syncer.etcd.endpoint(),
                    "an etcd watch delivered nothing, not even etcd's progress notification, for \
                     --etcd-watch-silence; re-reading everything"
                );
                need_list = true;
                syncer.etcd.rotate().await;
            }
            Err(SyncError::Compacted { wanted, compacted }) => {
                info!(
                    wanted,
                    compacted = %compacted.map_or_else(|| "unknown".into(), |c| c.to_string()),
                    "etcd history compacted past our revision; re-reading everything"
                );
                need_list = true;
            }
            Err(SyncError::Auth(reason)) => {
                // etcd-client refreshes the token for unary calls only: a watch created with an
                // expired token (or after an etcd restart, which forgets every simple token) is
                // cancelled. Get a new token and resume from the last revision.
                let renewed = syncer.etcd.authenticate().await;
                let refused_again = std::mem::replace(&mut reauthenticated, true);
                match renewed {
                    Ok(()) if !refused_again => {
                        if auth_logged {
                            debug!(%reason, "etcd auth token renewed for the watch");
                        } else {
                            info!(
                                %reason,
                                revision = syncer.reached(),
                                "etcd refused the watch's auth token; authenticated again, resuming"
                            );
                            auth_logged = true;
                        }
                        // At once: nothing is wrong with etcd.
                        continue;
                    }
                    // Refused right after a fresh token: not an expiry (the user may not read
                    // the prefix); trouble, logged once, retried with backoff.
                    Ok(()) => {
                        if health.failed(Trouble::Refused).is_some() {
                            warn!(%reason, "etcd refuses the watch even with a fresh auth token (may the etcd user read the prefix?); answering from the last snapshot, retrying");
                        }
                    }
                    Err(error) => {
                        if health.failed(Trouble::of(&error)).is_some() {
                            warn!(%error, "etcd refused the watch's auth token and authenticating again failed; answering from the last snapshot, retrying");
                        }
                        syncer.etcd.rotate().await;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
            Err(error) => {
                match health.failed(Trouble::of(&error)) {
                    Some(Trouble::TooLarge) => warn!(
                        %error,
                        "an etcd response is too large to decode; answering from the last snapshot, retrying"
                    ),
                    // Logged where it is found (the `Auth` arm above).
                    Some(Trouble::Refused) => {}
                    Some(Trouble::Unreachable) => warn!(
                        %error,
                        endpoint = syncer.etcd.endpoint(),
                        "etcd unreachable; answering from the last snapshot until it is back"
                    ),
                    None => {
                        debug!(%error, endpoint = syncer.etcd.endpoint(), "etcd sync still failing")
                    }
                }
                // The next try goes to the next endpoint (nothing with one).
                syncer.etcd.rotate().await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
    refresher.abort();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{Health, Ordering, SKIPPED_KEYS, Trouble, dropped_metadata, skip};

    #[test]
    fn a_listed_key_is_named_in_its_skip_and_kept_whole_in_its_entry() {
        let kv = |key: &[u8], value: &[u8]| super::RawKv {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: 7,
            mod_revision: 3,
        };
        let entry = super::decode(kv(b"/skydns/test/a", br#"{"host":"10.0.0.1"}"#)).unwrap();
        assert_eq!((&*entry.key, entry.lease), ("/skydns/test/a", 7));
        assert_eq!(
            super::decode(kv(b"/skydns/test/\xff", b"{}")).unwrap_err(),
            (
                "/skydns/test/\u{fffd}".to_string(),
                "key is not UTF-8".to_string()
            )
        );
        let (key, reason) = super::decode(kv(b"/skydns/test/b", b"[1]")).unwrap_err();
        assert_eq!(key, "/skydns/test/b");
        assert!(reason.contains("expected an object"), "{reason}");
    }

    #[test]
    fn a_watch_confirmed_then_broken_by_an_oversized_response_warns_once() {
        let mut health = Health::default();
        assert_eq!(health.failed(Trouble::TooLarge), Some(Trouble::TooLarge));
        for _ in 0..5 {
            assert!(!health.answered(), "etcd answers, but this is no recovery");
            assert_eq!(health.failed(Trouble::TooLarge), None, "logged once");
        }
        assert_eq!(
            health.failed(Trouble::Unreachable),
            Some(Trouble::Unreachable),
            "a different trouble is news"
        );
        assert_eq!(health.failed(Trouble::Unreachable), None);
        assert!(health.answered(), "reachable again");
        assert_eq!(health.failed(Trouble::TooLarge), Some(Trouble::TooLarge));
        assert!(health.progressed(), "events applied end it");
        assert!(!health.progressed());
        assert_eq!(health.failed(Trouble::TooLarge), Some(Trouble::TooLarge));
    }

    /// Everything logged at `warn` or above while `run` runs on this thread.
    fn warnings(run: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_key_written_bad_again_and_again_warns_once_and_counts_every_skip() {
        let before = SKIPPED_KEYS.load(Ordering::Relaxed);
        let log = warnings(|| {
            for _ in 0..100 {
                skip("/skydns/test/flood", "expected a JSON object");
            }
            skip("/skydns/test/flood", "another reason");
            skip("/skydns/test/neighbour", "expected a JSON object");
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(lines[0].contains("/skydns/test/flood") && lines[0].contains("JSON object"));
        assert!(lines[1].contains("another reason"));
        assert!(lines[2].contains("/skydns/test/neighbour"));
        // Other tests may skip keys meanwhile: at least ours were all counted.
        assert!(SKIPPED_KEYS.load(Ordering::Relaxed) - before >= 102);
    }

    #[test]
    fn dropped_metadata_warns_once_per_key_and_note_and_is_not_a_skip() {
        let entry = crate::backend::registry::decode(
            "/services",
            "/services/web/dropping",
            br#"{"Addr":"10.0.0.1","Port":80,"Metadata":{"a=b":"1","ok":"2"}}"#,
            0,
        )
        .unwrap();
        assert_eq!((entry.txt.len(), entry.dropped.len()), (1, 1));
        let log = warnings(|| {
            for _ in 0..20 {
                dropped_metadata(&entry);
            }
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains("/services/web/dropping") && lines[0].contains("without some"),
            "{log}"
        );
        assert!(lines[0].contains(r#"Metadata key \"a=b\""#), "{log}");
    }
}
