//! Lease deadlines: asks etcd (`LeaseTimeToLive`) when a lease is first seen and whenever its
//! known deadline passes (keep-alives extend leases without any key event). Never per question,
//! and never for a lease no key uses any more (the table drops such an answer).
//!
//! A new lease is learned by the sync task itself before it publishes the snapshot that brings
//! the lease ([`learn`]): a snapshot published first would answer the key with the
//! `--min-lease-ttl` floor that stands in for an unknown deadline until the look-up lands, which
//! a cache then keeps. That wait is bounded ([`LEARN_WAIT`]) so a slow or unreachable etcd
//! cannot hold back other keys' changes; a lease not learned in time is handed to [`refresh`],
//! which retries as for a passed deadline, and is answered with the floor meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::SyncStatus;
use super::etcd::Etcd;
use crate::index::leases::LeaseTable;

/// How often moka's expiry bookkeeping runs (it reports passed deadlines to `expired`).
const TICK: Duration = Duration::from_millis(500);
/// A failed look-up is retried after this long.
const RETRY: Duration = Duration::from_secs(1);
/// The longest a publish waits for the deadlines of the new leases it brings. A loopback or LAN
/// look-up takes about a millisecond; an etcd this slow is in trouble, and the changes wait.
pub(super) const LEARN_WAIT: Duration = Duration::from_millis(500);
/// Look-ups in flight at once while a publish waits (a full re-read may bring thousands).
const LEARN_AT_ONCE: usize = 32;

/// Looks up `leases` (new to the table) and records their deadlines, for at most
/// [`LEARN_WAIT`]; returns the leases whose look-up failed or did not finish in time, for
/// [`refresh`] to retry. A lease etcd no longer has is not returned: its keys' DELETEs follow.
pub(super) async fn learn(
    etcd: &Etcd,
    table: &LeaseTable,
    leases: Vec<i64>,
    status: &tokio::sync::watch::Sender<SyncStatus>,
) -> Vec<i64> {
    // Its last key may have gone later in the same batch.
    let leases: Vec<i64> = leases.into_iter().filter(|l| table.in_use(*l)).collect();
    if leases.is_empty() {
        return leases;
    }
    let mut unknown: HashSet<i64> = leases.iter().copied().collect();
    let mut started = 0u64;
    {
        let mut answers = futures_util::stream::iter(leases.iter().copied())
            .map(|lease| {
                started += 1;
                let mut etcd = etcd.clone();
                async move { (lease, etcd.lease_remaining(lease).await) }
            })
            .buffer_unordered(LEARN_AT_ONCE);
        let deadline = tokio::time::sleep(LEARN_WAIT);
        tokio::pin!(deadline);
        loop {
            let (lease, answer) = tokio::select! {
                () = &mut deadline => break,
                answer = answers.next() => match answer {
                    Some(answer) => answer,
                    None => break,
                },
            };
            match answer {
                Ok(Some(remaining)) => {
                    let kept = table.record(lease, remaining);
                    debug!(lease, ?remaining, kept, "new lease's deadline");
                    unknown.remove(&lease);
                }
                Ok(None) => {
                    debug!(lease, "new lease no longer exists");
                    unknown.remove(&lease);
                }
                Err(error) => debug!(lease, %error, "new lease's look-up failed; retrying"),
            }
        }
    }
    status.send_modify(|s| s.lease_lookups += started);
    if !unknown.is_empty() {
        debug!(
            leases = unknown.len(),
            "publishing before these leases' deadlines are known"
        );
    }
    // In the order they came, so retries do not reshuffle.
    leases.into_iter().filter(|l| unknown.contains(l)).collect()
}

pub(super) async fn refresh(
    mut etcd: Etcd,
    table: Arc<LeaseTable>,
    mut lookups: mpsc::UnboundedReceiver<i64>,
    mut expired: mpsc::UnboundedReceiver<i64>,
    retry: mpsc::UnboundedSender<i64>,
    status: Arc<tokio::sync::watch::Sender<SyncStatus>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        let lease = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                table.run_pending();
                continue;
            }
            Some(lease) = lookups.recv() => lease,
            Some(lease) = expired.recv() => lease,
        };
        if !table.in_use(lease) {
            continue; // its last key went while the request waited
        }
        status.send_modify(|s| s.lease_lookups += 1);
        match etcd.lease_remaining(lease).await {
            Ok(Some(remaining)) => {
                // Dropped by the table if the last key went during the call.
                let kept = table.record(lease, remaining);
                debug!(lease, ?remaining, kept, "lease deadline");
            }
            // Gone: etcd deletes its keys and the watch brings the DELETEs.
            Ok(None) => debug!(lease, "lease no longer exists"),
            Err(error) => {
                debug!(lease, %error, "lease look-up failed; retrying");
                let retry = retry.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY).await;
                    let _ = retry.send(lease);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::index::leases::LeaseBounds;

    /// An etcd that accepts connections and never says a word: the publish waits for it no
    /// longer than the bound, and the lease goes to the refresher's retries.
    #[tokio::test]
    async fn a_silent_etcd_holds_a_publish_back_only_for_the_bound() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let etcd = Etcd::connect(&[url], "/skydns/", 1 << 20, &Default::default())
            .await
            .unwrap();
        let table = LeaseTable::new(LeaseBounds::default(), |_| {});
        table.acquire(7);
        let (status, _) = tokio::sync::watch::channel(SyncStatus::default());
        let started = Instant::now();
        let left = tokio::time::timeout(
            Duration::from_secs(20),
            learn(&etcd, &table, vec![7, 8], &status),
        )
        .await
        .expect("learn ends on its own");
        eprintln!("learn gave up after {:?}", started.elapsed());
        assert_eq!(left, vec![7], "8 has no key: not looked up, not retried");
        assert!(!table.is_known(7));
        assert_eq!(status.borrow().lease_lookups, 1);
        held.abort();
    }
}
