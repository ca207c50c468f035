//! Reads from standbys, never older than what this process wrote or already saw.
//!
//! With a read URL configured (a standby, or a multi-host URL with
//! `target_session_attrs=prefer-standby`), reads go to a second pool. A standby replays the
//! primary's log with some lag, so each service checks what came back against what this process
//! knows, and reads again from the primary when the standby is behind:
//!
//! * sessions — the revision and incarnation travel in the read statement itself: a session
//!   this process wrote or read at revision r is re-read from the primary when the standby
//!   returns an older revision, another incarnation, or nothing. Nothing extra is sent when the
//!   standby is current.
//! * artifacts and memory — per (app, user), the log position (LSN) of this process's last
//!   write there, or of the newest read there: a standby read is pipelined with the standby's
//!   replay position (same round trip) and redone on the primary when that is behind.
//!
//! Other sessions and scopes may be as stale as the standby's replay lag. A standby that is
//! down (or cannot be reached) is skipped: the read goes to the primary.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use crate::error::StoreError;

/// Most keys remembered per tracker; the oldest are forgotten first (a forgotten key may then
/// be read as stale as the standby's lag).
pub const SEEN_LIMIT: usize = 100_000;

/// The statement whose answer is a node's log position: what a standby has replayed, or a
/// primary's current position. Asked by role, not by `COALESCE`: a promoted standby (the
/// primary after a failover) still answers `pg_last_wal_replay_lsn()` with where its replay
/// stopped, which would make every later write look already replayed.
pub const POSITION_SQL: &str =
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_lsn() END)::text";

/// Whether a standby's error means it has not replayed the schema this statement needs (a
/// schema, table, column, function or type the primary has: a new tenant schema, a migration
/// not yet replayed). SQLSTATE classes 42 and 3F. The read then goes to the primary, which
/// answers for good — with its own error if the statement is wrong there too.
pub fn behind_on_schema(err: &StoreError) -> bool {
    err.sqlstate
        .as_deref()
        .is_some_and(|code| code.starts_with("42") || code.starts_with("3F"))
}

/// A PostgreSQL log position (`"16/B374D848"`) as a number; `None` if it is not one.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u32::MAX as u64 && low <= u32::MAX as u64).then_some((high << 32) | low)
}

/// A bounded map of the newest value this process knows per key (oldest keys forgotten first).
pub struct Seen<K, V> {
    inner: Mutex<(HashMap<K, V>, VecDeque<K>)>,
    limit: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Seen<K, V> {
    pub fn new(limit: usize) -> Self {
        Seen {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            limit,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(key).cloned()
    }

    /// Records `value` for `key` unless `keep(old)` says the known one must stay.
    pub fn note(&self, key: K, value: V, keep: impl FnOnce(&V, &V) -> bool) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        match map.get_mut(&key) {
            Some(old) => {
                if !keep(old, &value) {
                    *old = value;
                }
            }
            None => {
                if map.len() >= self.limit {
                    if let Some(oldest) = order.pop_front() {
                        map.remove(&oldest);
                    }
                }
                order.push_back(key.clone());
                map.insert(key, value);
            }
        }
    }

    /// Every known entry whose key passes `select`.
    pub fn select(&self, select: impl Fn(&K) -> bool) -> Vec<(K, V)> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .0
            .iter()
            .filter(|(k, _)| select(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The newest log position this process wrote or saw per (app, user): artifacts and memory.
pub type ScopePositions = Seen<(String, String), u64>;

/// Recorded for a scope when the position of a write could not be learnt: its next read goes
/// to the primary (which then records its own position).
pub const UNKNOWN_POSITION: u64 = u64::MAX;

impl ScopePositions {
    /// Remembers `lsn` for the scope unless a newer one is known.
    pub fn advance(&self, app: &str, user: &str, lsn: u64) {
        self.note((app.to_string(), user.to_string()), lsn, |old, new| {
            old >= new
        });
    }

    /// After a read on the primary at `position`: it showed everything there was.
    pub fn reset(&self, app: &str, user: &str, position: u64) {
        self.note((app.to_string(), user.to_string()), position, |_, _| false);
    }

    /// Whether a node at `position` has everything this process knows of the scope.
    pub fn is_current(&self, app: &str, user: &str, position: u64) -> bool {
        self.get(&(app.to_string(), user.to_string()))
            .map_or(true, |known| position >= known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn failed_with(sqlstate: Option<&str>) -> StoreError {
        StoreError {
            sqlstate: sqlstate.map(str::to_string),
            ..StoreError::new(ErrorKind::Database, "failed")
        }
    }

    #[test]
    fn missing_schema_objects_send_the_read_to_the_primary() {
        // undefined table, column, function, schema: not replayed yet
        for code in ["42P01", "42703", "42883", "3F000"] {
            assert!(behind_on_schema(&failed_with(Some(code))), "{code}");
        }
        // a statement timeout, a data error, a client-side failure: the caller's to see
        for code in [Some("57014"), Some("22P02"), None] {
            assert!(!behind_on_schema(&failed_with(code)), "{code:?}");
        }
    }

    #[test]
    fn log_positions_compare_as_numbers() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert!(parse_lsn("1/FFFFFFFF") < parse_lsn("2/0"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/"), None);
    }

    #[test]
    fn seen_keeps_the_newest_and_forgets_the_oldest_keys() {
        let seen: Seen<u32, u64> = Seen::new(2);
        seen.note(1, 10, |old, new| old >= new);
        seen.note(1, 5, |old, new| old >= new);
        assert_eq!(seen.get(&1), Some(10));
        seen.note(2, 1, |_, _| false);
        seen.note(3, 1, |_, _| false);
        assert_eq!(seen.get(&1), None, "the oldest key is forgotten");
        assert_eq!(seen.select(|k| *k > 1).len(), 2);
    }

    #[test]
    fn scopes_are_current_when_the_node_has_replayed_what_was_seen() {
        let scopes = ScopePositions::new(10);
        assert!(scopes.is_current("a", "u", 0));
        scopes.advance("a", "u", 100);
        assert!(!scopes.is_current("a", "u", 99));
        assert!(scopes.is_current("a", "u", 100));
        assert!(scopes.is_current("a", "other", 0));
    }
}
