//! Every call's future is moved into a spawned task and copied on the way, so its size is a
//! per-call cost. This guards against the easy ways to double it (an `async` wrapper that
//! holds the future it wraps, a rarely taken branch inlined into the hot path): with response
//! timeouts and replicas added, read futures had grown from about 2.5 KB to 5 KB, reads at 32
//! concurrent callers lost about 12 %.

use std::sync::Arc;

use adk_postgres_core::db::{Database, Retry};
use adk_postgres_core::sessions::{SessionKey, Sessions};
use adk_postgres_core::{StoreConfig, StoreOptions};

/// About 1.5 times what they measure (2.4–2.9 KB with rustc 1.95, release or debug): room
/// for compiler drift, not for a doubling.
const LIMIT: usize = 4096;

#[tokio::test]
async fn read_futures_stay_small() {
    // Nothing connects: futures are built, measured and dropped unpolled.
    let config = StoreConfig::parse("postgresql://u@127.0.0.1:1/db", StoreOptions::default())
        .expect("a valid URL");
    let db = Arc::new(Database::new(config).expect("a pool"));
    let sessions = Sessions::new(db.clone());
    let key = SessionKey {
        app_name: "a",
        user_id: "u",
        session_id: "s",
    };
    let sizes = [
        (
            "fetch",
            std::mem::size_of_val(&db.fetch("SELECT 1", &[], Retry::Yes)),
        ),
        (
            "get_session",
            std::mem::size_of_val(&sessions.get_session(key, None, Some(10))),
        ),
        (
            "get_session_since",
            std::mem::size_of_val(&sessions.get_session_since(key, 3)),
        ),
        (
            "list_sessions",
            std::mem::size_of_val(&sessions.list_sessions("a", Some("u"))),
        ),
    ];
    for (name, size) in sizes {
        assert!(
            size <= LIMIT,
            "the future of {name} is {size} bytes (limit {LIMIT})"
        );
    }
}
