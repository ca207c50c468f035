//! The connection pool (deadpool-postgres) and the error mapping for acquiring from it.

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};

use std::time::Duration;

use crate::config::StoreConfig;
use crate::connect::PerHost;
use crate::error::{ErrorKind, Result, StoreError};
use crate::password::PasswordSource;
use crate::tls::make_connector;

/// Beyond every host's own timeout (see `connect.rs`), before the pool gives up on a connect.
const CREATE_MARGIN: Duration = Duration::from_secs(1);

/// Builds a pool; no connection is opened until the first acquire.
pub fn build_pool(config: &StoreConfig) -> Result<Pool> {
    let tls = make_connector(config)?;
    let options = &config.options;
    let connect = PerHost::new(
        &config.pg,
        tls,
        options.connect_timeout,
        config.password_source.clone(),
    );
    let create_timeout = connect.total_timeout() + CREATE_MARGIN;
    let manager = Manager::from_connect(
        config.pg.clone(),
        connect,
        // `Fast` skips a test query on every checkout; a broken connection is detected by
        // `is_closed()` and replaced, and a statement on a dropped one fails with a typed error.
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(options.acquire_timeout),
            create: Some(create_timeout),
            recycle: Some(options.connect_timeout),
        })
        .build()
        .map_err(|e| StoreError::config(format!("cannot build the connection pool: {e}")))
}

/// Takes a connection from the pool, mapping every failure to a typed error.
/// `password`: the configuration's password source, whose failure replaces the connect
/// error it caused.
pub async fn acquire(
    pool: &Pool,
    describe: impl Fn() -> String,
    password: Option<&PasswordSource>,
) -> Result<Object> {
    let result = pool.get().await;
    if result.is_err() {
        if let Some(reason) = password.and_then(PasswordSource::take_error) {
            return Err(StoreError::new(
                ErrorKind::Connection,
                format!(
                    "cannot connect to PostgreSQL ({}): the password function failed: {reason}",
                    describe()
                ),
            ));
        }
    }
    result.map_err(|err| match err {
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => StoreError::new(
            ErrorKind::PoolTimeout,
            format!(
                "no connection became free within the acquire timeout; all {} pooled connections \
                 are in use (raise pool_size or acquire_timeout)",
                pool.status().max_size
            ),
        ),
        PoolError::Timeout(_) => StoreError::new(
            ErrorKind::Connection,
            format!("timed out connecting to PostgreSQL ({})", describe()),
        ),
        PoolError::Backend(e) => {
            let mut mapped = StoreError::from(e);
            if mapped.kind == ErrorKind::Connection {
                mapped.message = format!(
                    "cannot connect to PostgreSQL ({}): {}",
                    describe(),
                    mapped.message
                );
            }
            mapped
        }
        PoolError::Closed => StoreError::new(ErrorKind::Closed, "the connection pool is closed"),
        PoolError::NoRuntimeSpecified => StoreError::config("no async runtime for the pool"),
        PoolError::PostCreateHook(e) => StoreError::new(
            ErrorKind::Connection,
            format!("connection setup failed: {e}"),
        ),
    })
}

/// Pool counters for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

pub fn status(pool: &Pool) -> PoolStatus {
    let s = pool.status();
    PoolStatus {
        max_size: s.max_size,
        size: s.size,
        available: s.available,
        waiting: s.waiting,
    }
}
