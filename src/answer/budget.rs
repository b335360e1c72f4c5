//! What one question may cost: the bound that keeps every answer cheap, however large the data.
//!
//! - **Records**: a record takes at least [`MIN_RECORD_LEN`] bytes on the wire (a compressed
//!   owner and the fixed fields), so a response of `limit` bytes holds at most `limit / 12` of
//!   them. An answer builds at most [`record_cap`] = `limit / 12 + 1` answer records: when more
//!   exist, the last one built cannot fit either, so the encoder still sets TC exactly when
//!   records are left out. Additional records are bounded by the same number (at most that many
//!   can fit; they are discardable anyway).
//! - **Lookups** (etcd): beyond the question's own reads, at most [`MAX_LOOKUPS`] further name
//!   reads (CNAME targets and glue), examining at most [`MAX_ENTRIES`] entries between them. A
//!   target past the budget counts as unresolvable, as a chain past CoreDNS's depth limit does.
//!
//! So a question costs O(n log n) for the n entries under its own name (read once, drawn or
//! de-duplicated with `small.rs` sets: hashed past 16 keys), plus at most 1,024 reads of at most 262,144 entries in total,
//! plus building at most 2 · (`limit` / 12 + 1) records (at most 10,924 over TCP).

use std::cell::Cell;

/// The fewest bytes a resource record takes in a response: a compression pointer for the owner
/// (2), type, class, TTL and RDLENGTH (10), and empty RDATA.
pub const MIN_RECORD_LEN: usize = 12;

/// Further name reads one question may make after its own (CNAME targets, glue).
pub const MAX_LOOKUPS: usize = 1_024;

/// Entries those further reads may examine in total.
pub const MAX_ENTRIES: usize = 1 << 18;

/// The most answer (or additional) records worth building for a response of `limit` bytes.
pub fn record_cap(limit: u16) -> usize {
    usize::from(limit) / MIN_RECORD_LEN + 1
}

/// The lookup budget of one etcd question (records are bounded by the callers' caps).
#[derive(Debug)]
pub(crate) struct Lookups {
    lookups: Cell<usize>,
    entries: Cell<usize>,
}

impl Lookups {
    pub(crate) fn new() -> Self {
        Self {
            lookups: Cell::new(MAX_LOOKUPS),
            entries: Cell::new(MAX_ENTRIES),
        }
    }

    /// Takes one lookup; returns how many entries it may examine, or `None` when the question
    /// has no lookups left.
    pub(crate) fn take(&self) -> Option<usize> {
        let left = self.lookups.get().checked_sub(1)?;
        self.lookups.set(left);
        Some(self.entries.get())
    }

    /// Records that a lookup examined `entries` entries.
    pub(crate) fn spend(&self, entries: usize) {
        self.entries.set(self.entries.get().saturating_sub(entries));
    }
}

/// An output vector with the number of records the question may still build into it (shared
/// by the vectors of nested CNAME resolutions, whose records end up in the same section).
pub(crate) struct Sink<'s, 'a> {
    pub(crate) records: &'s mut Vec<super::Rr<'a>>,
    left: &'s Cell<usize>,
}

impl<'s, 'a> Sink<'s, 'a> {
    pub(crate) fn new(records: &'s mut Vec<super::Rr<'a>>, left: &'s Cell<usize>) -> Self {
        Self { records, left }
    }

    /// Whether the cap is reached: nothing more built here can be sent.
    pub(crate) fn full(&self) -> bool {
        self.left.get() == 0
    }

    pub(crate) fn push(&mut self, rr: super::Rr<'a>) {
        self.left.set(self.left.get().saturating_sub(1));
        self.records.push(rr);
    }

    /// Another vector drawing on the same cap (a nested resolution).
    pub(crate) fn nested<'t>(&self, records: &'t mut Vec<super::Rr<'a>>) -> Sink<'t, 'a>
    where
        's: 't,
    {
        Sink {
            records,
            left: self.left,
        }
    }

    /// Appends records already counted by a nested sink.
    pub(crate) fn append(&mut self, records: &mut Vec<super::Rr<'a>>) {
        self.records.append(records);
    }
}
