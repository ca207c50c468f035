//! Passwords asked for at each new connection: short-lived credentials (cloud IAM database
//! tokens, a secrets manager's rotating password) must be fetched again for every connection
//! the pool opens, not read once from the URL.
//!
//! The source is any async function; the Python layer gives one that calls the user's
//! callable. Its failure cannot travel through deadpool's connector (whose error type is
//! tokio-postgres's), so it is kept here and the pool reports it in place of the connect
//! error it caused (`pool::acquire`).

use std::fmt;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

/// Fetches a password, or says why it could not.
pub type FetchPassword =
    dyn Fn() -> BoxFuture<'static, std::result::Result<String, String>> + Send + Sync;

/// Where a configuration's password comes from when it is not in the URL.
#[derive(Clone)]
pub struct PasswordSource {
    fetch: Arc<FetchPassword>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl PasswordSource {
    pub fn new(
        fetch: impl Fn() -> BoxFuture<'static, std::result::Result<String, String>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        PasswordSource {
            fetch: Arc::new(fetch),
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    /// A fresh password, or `None` when the source failed (the reason is kept for
    /// [`PasswordSource::take_error`]).
    pub async fn fetch(&self) -> Option<String> {
        let outcome = (self.fetch)().await;
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(password) => {
                *last_error = None;
                Some(password)
            }
            Err(reason) => {
                *last_error = Some(reason);
                None
            }
        }
    }

    /// Why the last fetch failed, if it did (and forgets it).
    pub fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password; there is nothing else to show.
        f.write_str("PasswordSource")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_fetch_asks_again_and_a_failure_is_kept_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let source = PasswordSource::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 1 {
                    Err("vault sealed".to_string())
                } else {
                    Ok(format!("token-{n}"))
                }
            })
        });
        assert_eq!(source.fetch().await.as_deref(), Some("token-0"));
        assert_eq!(source.fetch().await, None);
        assert_eq!(source.take_error().as_deref(), Some("vault sealed"));
        assert_eq!(source.take_error(), None);
        assert_eq!(source.fetch().await.as_deref(), Some("token-2"));
        assert_eq!(format!("{source:?}"), "PasswordSource");
    }
}
