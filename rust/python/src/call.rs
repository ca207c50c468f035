//! What every exported method does: check that this process may use the pool, run the core
//! call on the runtime (`runtime::spawn`), and turn its result into Python values.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use adk_postgres_core::db::Database;
use adk_postgres_core::StoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use crate::errors::to_pyerr;
use crate::runtime::spawn;

/// A core service handle the binding exports (sessions, artifacts, memory, ...).
pub(crate) trait Service: Send + Sync + 'static {
    fn database(&self) -> &Arc<Database>;
}

/// Runs `operation(service)` on the runtime; the returned awaitable resolves to `convert`'s
/// value or raises the mapped exception. The process check runs first: in a forked child the
/// runtime's worker threads do not exist, so a future handed to them would never finish.
pub(crate) fn call<'py, S, T, Fut, C>(
    py: Python<'py>,
    service: &Arc<S>,
    operation: impl FnOnce(Arc<S>) -> Fut,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    S: Service,
    T: Send + 'static,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    service.database().check_process().map_err(to_pyerr)?;
    spawn(py, operation(service.clone()), convert)
}

/// The usual `convert`: any value with a Python form.
pub(crate) fn to_py<T>(py: Python<'_>, value: T) -> PyResult<Py<PyAny>>
where
    T: for<'a> IntoPyObject<'a>,
{
    value.into_py_any(py)
}

/// Owned bytes (JSON text, payloads) that become a Python `bytes` (a `Vec<u8>` would become a
/// list of ints).
pub(crate) struct Bytes(pub Vec<u8>);

impl<'py> IntoPyObject<'py> for Bytes {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

pub(crate) fn bytes_opt(data: Option<Vec<u8>>) -> Option<Bytes> {
    data.map(Bytes)
}

/// A non-negative number of seconds, or a `ConfigurationError` naming the option.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        to_pyerr(StoreError::config(format!(
            "{name} must be a finite number of seconds >= 0"
        )))
    })
}
