//! Running store futures for Python: the shared tokio runtime, result conversion helpers.

use adk_postgres_core::StoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_pyerr;

/// `bytes` for `Some`, `None` for `None`.
pub(crate) fn bytes_opt<'py>(py: Python<'py>, json: Option<&[u8]>) -> Bound<'py, PyAny> {
    match json {
        Some(b) => PyBytes::new(py, b).into_any(),
        None => py.None().into_bound(py),
    }
}

/// Runs `fut` on the runtime and converts its output with `convert` (under the interpreter).
pub(crate) fn spawn<'py, T, F, C>(
    py: Python<'py>,
    fut: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let value = fut.await.map_err(to_pyerr)?;
        Python::attach(|py| convert(py, value))
    })
}
