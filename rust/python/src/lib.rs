//! `adk_postgres._native`: the Python binding of `adk_postgres_core`.
//!
//! Only argument conversion and error mapping live here; see `rust/core` for the store.

mod errors;
mod runtime;
mod store;

use pyo3::prelude::*;

/// Worker threads for the shared tokio runtime: I/O-bound work needs few, and small machines
/// share their cores with the interpreter and often the database.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(worker_threads())
        .thread_name("adk-postgres")
        .enable_all();
    pyo3_async_runtimes::tokio::init(builder);
    m.add_class::<store::PyStore>()?;
    m.add(
        "SCHEMA_VERSION",
        adk_postgres_core::migrations::latest_version(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
