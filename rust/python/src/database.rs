//! `adk_postgres._native.Database`: one pool on one schema (`adk_postgres_core::db`), the
//! handle the service classes are built from.

use std::sync::Arc;

use adk_postgres_core::db::Database;
use adk_postgres_core::password::PasswordSource;
use adk_postgres_core::{StoreConfig, StoreOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::call::{seconds, to_py};
use crate::errors::to_pyerr;

#[pyclass(module = "adk_postgres._native", name = "Database", frozen)]
pub struct PyDatabase {
    pub(crate) inner: Arc<Database>,
}

#[pymethods]
impl PyDatabase {
    #[new]
    #[pyo3(signature = (url, *, schema, pool_size, connect_timeout, acquire_timeout, statement_cache, application_name, coalesce_appends=true, failover_timeout=0.0, response_timeout=None, read_url=None, password=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: &str,
        schema: String,
        pool_size: usize,
        connect_timeout: f64,
        acquire_timeout: f64,
        statement_cache: bool,
        application_name: Option<String>,
        coalesce_appends: bool,
        failover_timeout: f64,
        response_timeout: Option<f64>,
        read_url: Option<&str>,
        password: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let options = StoreOptions {
            pool_size,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            acquire_timeout: seconds("acquire_timeout", acquire_timeout)?,
            statement_cache,
            coalesce_appends,
            schema,
            application_name,
            failover_timeout: seconds("failover_timeout", failover_timeout)?,
            response_timeout: response_timeout
                .map(|s| seconds("response_timeout", s))
                .transpose()?,
        };
        let replica = read_url
            .map(|read_url| StoreConfig::parse(read_url, options.clone()))
            .transpose()
            .map_err(to_pyerr)?;
        let mut replica = replica;
        let mut config = StoreConfig::parse(url, options).map_err(to_pyerr)?;
        if let Some(password) = password {
            let source = python_password_source(password);
            config.password_source = Some(source.clone());
            if let Some(replica) = &mut replica {
                replica.password_source = Some(source);
            }
        }
        // The pools need the runtime's context to be created.
        let runtime = crate::runtime::runtime();
        let _guard = runtime.enter();
        let database = Database::with_replica(config, replica).map_err(to_pyerr)?;
        Ok(PyDatabase {
            inner: Arc::new(database),
        })
    }

    /// Host, port, database, user and schema; never the password.
    fn describe(&self) -> String {
        self.inner.config().describe()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&self) {
        self.inner.close();
    }

    /// Raises ProcessForkedError when called in a process other than the creator.
    fn check_process(&self) -> PyResult<()> {
        self.inner.check_process().map_err(to_pyerr)
    }

    fn pool_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.pool_status();
        let d = PyDict::new(py);
        d.set_item("max_size", s.max_size)?;
        d.set_item("size", s.size)?;
        d.set_item("available", s.available)?;
        d.set_item("waiting", s.waiting)?;
        Ok(d)
    }

    /// Applies pending migrations (once per handle); resolves to the schema version.
    fn migrate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.check_process().map_err(to_pyerr)?;
        let db = self.inner.clone();
        crate::runtime::spawn(py, async move { db.migrate().await }, to_py)
    }
}

impl PyDatabase {
    pub(crate) fn handle(database: &Bound<'_, PyDatabase>) -> Arc<Database> {
        database.get().inner.clone()
    }
}

/// A password source that calls `fetch` (a Python callable returning `str`; the Python layer
/// turns async callables into such) on a blocking thread, since it may block or take the GIL
/// for a while, and the runtime's workers must not.
fn python_password_source(fetch: Py<PyAny>) -> PasswordSource {
    let fetch = Arc::new(fetch);
    PasswordSource::new(move || {
        let fetch = fetch.clone();
        Box::pin(async move {
            let asked = tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let value = fetch.call0(py).map_err(|err| err.to_string())?;
                    value
                        .extract::<String>(py)
                        .map_err(|_| "the password function must return a str".to_string())
                })
            });
            asked
                .await
                .map_err(|err| format!("the password function did not finish: {err}"))?
        })
    })
}
