//! What this process knows of each session it wrote or read — the incarnation and revision —
//! so that a read from a replica that is behind is redone on the primary (see `replica.rs`).
//! Kept only when a replica is configured.

use super::{SessionData, SessionKey, SessionList, Sessions};
use crate::replica::{Seen, SEEN_LIMIT};

type Key = (String, String, String);

/// The newest state of a session this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    At {
        incarnation: i64,
        revision: i64,
    },
    /// Deleted by this process (or found gone on the primary).
    Gone,
}

pub(super) type SeenSessions = Seen<Key, Known>;

pub(super) fn new_seen() -> SeenSessions {
    Seen::new(SEEN_LIMIT)
}

fn owned(key: SessionKey<'_>) -> Key {
    (
        key.app_name.to_string(),
        key.user_id.to_string(),
        key.session_id.to_string(),
    )
}

/// Whether a replica that returned `found` for a session shows all this process knows of it.
fn shows(known: Option<Known>, found: Option<(i64, i64)>) -> bool {
    match (known, found) {
        (None, _) => true,
        (Some(Known::Gone), found) => found.is_none(),
        (Some(Known::At { .. }), None) => false,
        (
            Some(Known::At {
                incarnation,
                revision,
            }),
            Some((i, r)),
        ) => i == incarnation && r >= revision,
    }
}

impl Sessions {
    fn tracking(&self) -> bool {
        self.db.has_replica()
    }

    /// Remembers a session state this process wrote or read on the primary (or a replica,
    /// once checked); an older revision of the same incarnation never replaces a newer one.
    pub(super) fn note(&self, key: SessionKey<'_>, known: Known) {
        if self.tracking() {
            self.seen
                .note(owned(key), known, |old, new| match (old, new) {
                    (
                        Known::At {
                            incarnation: a,
                            revision: r,
                        },
                        Known::At {
                            incarnation: b,
                            revision: s,
                        },
                    ) => a == b && r >= s,
                    _ => false,
                });
        }
    }

    pub(super) fn note_read(&self, key: SessionKey<'_>, data: Option<&SessionData>) {
        self.note(
            key,
            data.map_or(Known::Gone, |d| Known::At {
                incarnation: d.incarnation,
                revision: d.revision,
            }),
        );
    }

    pub(super) fn note_listed(&self, app_name: &str, list: &SessionList) {
        if self.tracking() {
            for s in &list.sessions {
                let key = SessionKey {
                    app_name,
                    user_id: &s.user_id,
                    session_id: &s.session_id,
                };
                let (incarnation, revision) = (s.incarnation, s.revision);
                self.note(
                    key,
                    Known::At {
                        incarnation,
                        revision,
                    },
                );
            }
        }
    }

    /// Whether a replica's answer for one session may be served.
    pub(super) fn replica_shows(&self, key: SessionKey<'_>, data: Option<&SessionData>) -> bool {
        let found = data.map(|d| (d.incarnation, d.revision));
        shows(self.seen.get(&owned(key)), found)
    }

    /// Whether a replica's listing shows every session of the listed scope this process knows.
    pub(super) fn replica_lists(
        &self,
        app_name: &str,
        user_id: Option<&str>,
        list: &SessionList,
    ) -> bool {
        let known = self
            .seen
            .select(|(app, user, _)| app == app_name && user_id.map_or(true, |u| u == user));
        known.into_iter().all(|((_, user, id), known)| {
            let found = list
                .sessions
                .iter()
                .find(|s| s.user_id == user && s.session_id == id)
                .map(|s| (s.incarnation, s.revision));
            shows(Some(known), found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_must_show_what_was_written_or_seen() {
        let at = |incarnation, revision| {
            Some(Known::At {
                incarnation,
                revision,
            })
        };
        assert!(shows(None, None));
        assert!(shows(at(7, 3), Some((7, 3))));
        assert!(shows(at(7, 3), Some((7, 4))));
        assert!(!shows(at(7, 3), Some((7, 2))), "behind");
        assert!(
            !shows(at(7, 3), Some((8, 9))),
            "another incarnation cannot be ordered"
        );
        assert!(!shows(at(7, 3), None), "not replayed yet, or deleted since");
        assert!(shows(Some(Known::Gone), None));
        assert!(!shows(Some(Known::Gone), Some((7, 3))));
    }
}
