//! `adk_postgres._native`: the Python binding of `adk_postgres_core`.
//!
//! Only argument conversion, error mapping and the asyncio bridge live here; see `rust/core`
//! for the operations. One class per core handle: `Database` (the pool), and built from it
//! `Sessions`, `Artifacts`, `Memory`, `A2a`, `Conversations`, `Agents`, `Admin`, `Tenancy`; `call.rs` is what their methods
//! share, `runtime.rs` the bridge to asyncio, `gc.rs` keeps cached events out of the collector's way.

mod a2a;
mod admin;
mod agents;
mod artifacts;
mod call;
mod conversations;
mod database;
mod errors;
mod gc;
mod memory;
mod runtime;
mod sessions;
mod tenancy;

use pyo3::prelude::*;

/// How deeply objects and arrays nest in JSON text (0 for a scalar); strings are skipped.
#[pyfunction]
fn json_nesting_depth(data: &[u8]) -> usize {
    adk_postgres_core::codec::nesting_depth(data)
}

/// Raises `ConfigurationError` unless `name` is a schema name adk-postgres accepts.
#[pyfunction]
fn check_schema_name(name: &str) -> PyResult<()> {
    adk_postgres_core::config::validate_schema_name(name).map_err(errors::to_pyerr)
}

/// The statement `Conversations.list` runs on `schema` (for EXPLAIN in tests).
#[pyfunction]
fn _conversation_list_sql(schema: &str, archived: bool) -> String {
    adk_postgres_core::conversations::list_statement(schema, archived)
}

/// The append statement on `schema`, as `Sessions.append_event` sends it (for the pgbench
/// ceiling in `benches/append_ceiling.py`).
#[pyfunction]
fn _append_sql(schema: &str) -> String {
    adk_postgres_core::sessions::sql::SessionSql::new(schema).append
}

/// For the test suite: a call whose Rust future (`stage="run"`) or whose result conversion on
/// the event loop (`stage="convert"`) panics, as a bug would; its awaitable must fail with
/// `InternalError` rather than wait forever.
#[pyfunction]
fn _panicking_call<'py>(py: Python<'py>, stage: String) -> PyResult<Bound<'py, PyAny>> {
    let in_run = stage == "run";
    runtime::spawn(
        py,
        async move {
            assert!(!in_run, "a deliberate panic in a Rust future");
            Ok(())
        },
        |_py, ()| panic!("a deliberate panic while converting a result"),
    )
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runtime::Bridge>()?;
    m.add_class::<database::PyDatabase>()?;
    m.add_class::<sessions::PySessions>()?;
    m.add_class::<artifacts::PyArtifacts>()?;
    m.add_class::<memory::PyMemory>()?;
    m.add_class::<a2a::PyA2a>()?;
    m.add_class::<conversations::PyConversations>()?;
    m.add_class::<agents::PyAgents>()?;
    m.add_class::<admin::PyAdmin>()?;
    m.add_class::<admin::PyBackupReader>()?;
    m.add_class::<tenancy::PyTenancy>()?;
    m.add_function(wrap_pyfunction!(json_nesting_depth, m)?)?;
    m.add_function(wrap_pyfunction!(gc::untrack_tree, m)?)?;
    m.add_function(wrap_pyfunction!(_conversation_list_sql, m)?)?;
    m.add_function(wrap_pyfunction!(_append_sql, m)?)?;
    m.add_function(wrap_pyfunction!(check_schema_name, m)?)?;
    m.add_function(wrap_pyfunction!(_panicking_call, m)?)?;
    m.add(
        "SCHEMA_VERSION",
        adk_postgres_core::migrations::latest_version(),
    )?;
    m.add("COALESCE_MAX_BATCH", adk_postgres_core::sessions::MAX_BATCH)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
