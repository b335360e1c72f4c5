//! What the TCP accept loop does at its connection bound.
//!
//! A full table of connections must not shut real clients out: idle keep-alive connections and
//! slowloris clients that trickle a query byte by byte would otherwise hold every slot for the
//! idle timeout, and a client falling back to TCP after a truncated UDP answer would get a reset.
//! Under pressure the connection that has made no progress for the longest time (no complete
//! query read, no answer written) is closed to make room, as RFC 7766 §6.2.3 allows, provided it
//! has been quiet for at least [`TcpLimits::close_idle_after`](super::TcpLimits). Only when every
//! connection is busy is the new one refused.
//!
//! Every warning about the bound goes through a [`Throttle`], so an attacker cycling connections
//! cannot turn srvd's log into an amplifier: at most one line per [`THROTTLE_PERIOD`], carrying the
//! count since the last line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Warnings about the connection bound are at most this frequent.
pub const THROTTLE_PERIOD: Duration = Duration::from_secs(10);

/// Counts events and says when one may be logged: the first at once, then at most one per period.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_logged: Option<Instant>,
    since_last: u64,
}

impl Throttle {
    /// A throttle that lets one log line through per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new(ThrottleState::default()),
        }
    }

    /// Records one event. Returns `Some(count)` when a line may be logged now, where `count` is
    /// the number of events since the last logged line (this one included).
    pub fn hit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.since_last += 1;
        let due = state
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= self.period);
        if !due {
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.since_last))
    }
}

/// One connection as the accept loop sees it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    /// Nanoseconds after the table's epoch of the last progress (accepted, a complete query read,
    /// an answer written). Written by the connection task, read by the accept loop.
    last_progress: AtomicU64,
    /// Cancelled to close the connection under pressure.
    close: CancellationToken,
    /// Cancelled once its task has ended (and its socket is closed).
    ended: CancellationToken,
}

impl Connection {
    /// Resolves when the accept loop chose this connection to make room.
    pub async fn closed(&self) {
        self.close.cancelled().await;
    }

    /// Resolves once the connection's task has ended, its socket closed.
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }
}

/// The live TCP connections of one server, for choosing which one to close under pressure.
#[derive(Debug)]
pub struct ConnectionTable {
    epoch: Instant,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl ConnectionTable {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Registers a newly accepted connection; [`ConnectionTable::remove`] it when it ends.
    pub fn add(&self) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            last_progress: AtomicU64::new(self.now()),
            close: CancellationToken::new(),
            ended: CancellationToken::new(),
        });
        self.lock().insert(connection.id, connection.clone());
        connection
    }

    /// Notes that `connection` made progress (one atomic store per query; no lock).
    pub fn progress(&self, connection: &Connection) {
        connection
            .last_progress
            .store(self.now(), Ordering::Relaxed);
    }

    /// How long `connection` has made no progress (the HTTP loop's idle timeout reads it).
    pub fn quiet_for(&self, connection: &Connection) -> Duration {
        let last = connection.last_progress.load(Ordering::Relaxed);
        Duration::from_nanos(self.now().saturating_sub(last))
    }

    /// Forgets a connection that ended (its socket already closed).
    pub fn remove(&self, connection: &Connection) {
        self.lock().remove(&connection.id);
        connection.ended.cancel();
    }

    /// Closes the connection that has made no progress for the longest time, if that is at least
    /// `quiet_for`. Returns the one closed (its slot frees once its task has ended).
    pub fn close_oldest_idle(&self, quiet_for: Duration) -> Option<Arc<Connection>> {
        let cutoff = self
            .now()
            .saturating_sub(u64::try_from(quiet_for.as_nanos()).unwrap_or(u64::MAX));
        let mut live = self.lock();
        let oldest = live
            .values()
            .map(|c| (c.last_progress.load(Ordering::Relaxed), c.id))
            .filter(|(progress, _)| *progress <= cutoff)
            .min();
        let (_, id) = oldest?;
        // Removed here, so a second accept under pressure picks another connection.
        let connection = live.remove(&id)?;
        connection.close.cancel();
        Some(connection)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_the_first_event_through_then_counts_until_the_period_passes() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.hit(), Some(1));
        for _ in 0..199 {
            assert_eq!(throttle.hit(), None);
        }
        let start = Instant::now();
        let count = loop {
            if let Some(count) = throttle.hit() {
                break count;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "period ends");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(count >= 200, "carries the suppressed events: {count}");
    }

    #[test]
    fn the_connection_quiet_the_longest_is_closed_first_and_only_once() {
        let table = ConnectionTable::default();
        let first = table.add();
        let second = table.add();
        let third = table.add();
        table.progress(&first);
        // `second` is now the quietest, then `third`.
        assert!(table.close_oldest_idle(Duration::ZERO).is_some());
        assert!(second.close.is_cancelled());
        assert!(!first.close.is_cancelled() && !third.close.is_cancelled());
        assert!(table.close_oldest_idle(Duration::ZERO).is_some());
        assert!(third.close.is_cancelled());
        assert!(!first.close.is_cancelled());
    }

    #[test]
    fn recently_active_connections_are_not_closed() {
        let table = ConnectionTable::default();
        let connection = table.add();
        assert!(table.close_oldest_idle(Duration::from_secs(3600)).is_none());
        assert!(!connection.close.is_cancelled());
        table.remove(&connection);
        assert!(
            table.close_oldest_idle(Duration::ZERO).is_none(),
            "nothing left"
        );
    }
}
