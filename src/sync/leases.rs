//! Lease deadlines: asks etcd (`LeaseTimeToLive`) when a lease is first seen and whenever its
//! known deadline passes (keep-alives extend leases without any key event). Never per question,
//! and never for a lease no key uses any more (the table drops such an answer).

use std::sync::Arc;
use std::time::Duration;

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
