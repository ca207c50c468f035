//! `adk_postgres._native.Agents`: the agent registry (`adk_postgres_core::agents`) on a
//! `Database`'s pool. Results are tuples (documented in `_native.pyi`).

use std::sync::Arc;

use adk_postgres_core::agents::{AgentInfo, Agents, PutMode};
use adk_postgres_core::db::Database;
use adk_postgres_core::{ErrorKind, StoreError};
use pyo3::prelude::*;

use crate::call::{call, to_py, Service};
use crate::database::PyDatabase;
use crate::errors::to_pyerr;

#[pyclass(module = "adk_postgres._native", name = "Agents", frozen)]
pub struct PyAgents {
    inner: Arc<Agents>,
}

impl Service for Agents {
    fn database(&self) -> &Arc<Database> {
        Agents::database(self)
    }
}

/// `(name, current_version, archived_at, usage_count, last_used_at, created_at, updated_at)`
type InfoRow = (String, i32, Option<f64>, i64, Option<f64>, f64, f64);

fn info_row(a: AgentInfo) -> InfoRow {
    (
        a.name,
        a.current_version,
        a.archived_at,
        a.usage_count,
        a.last_used_at,
        a.created_at,
        a.updated_at,
    )
}

#[pymethods]
impl PyAgents {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PyAgents {
            inner: Arc::new(Agents::new(PyDatabase::handle(&database))),
        }
    }

    /// The new version, or None when `mode` refused: `"create"` (only a new agent) and the
    /// agent exists, `"update"` (only an existing agent) and it does not. `"any"`: either.
    #[pyo3(signature = (name, yaml, mode="any"))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        name: String,
        yaml: String,
        mode: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mode = match mode {
            "any" => PutMode::Any,
            "create" => PutMode::Create,
            "update" => PutMode::Update,
            other => {
                return Err(to_pyerr(StoreError::new(
                    ErrorKind::Data,
                    format!("put mode must be any, create or update, not {other:?}"),
                )))
            }
        };
        call(
            py,
            &self.inner,
            |a| async move { a.put(&name, &yaml, mode).await },
            to_py,
        )
    }

    /// `[InfoRow]` by name.
    fn list<'py>(&self, py: Python<'py>, include_archived: bool) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let agents = a.list(include_archived).await?;
                Ok(agents.into_iter().map(info_row).collect::<Vec<_>>())
            },
            to_py,
        )
    }

    /// `(InfoRow, version, yaml, version_created_at)` or None.
    #[pyo3(signature = (name, version=None))]
    fn show<'py>(
        &self,
        py: Python<'py>,
        name: String,
        version: Option<i32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let shown = a.show(&name, version).await?;
                Ok(shown.map(|v| (info_row(v.agent), v.version, v.yaml, v.created_at)))
            },
            to_py,
        )
    }

    /// `[(version, created_at, size)]`, newest first; empty for an unknown agent.
    fn history<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let versions = a.history(&name).await?;
                Ok(versions
                    .into_iter()
                    .map(|v| (v.version, v.created_at, v.size))
                    .collect::<Vec<_>>())
            },
            to_py,
        )
    }

    /// False: no such agent.
    fn archive<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.archive(&name).await },
            to_py,
        )
    }

    /// False: no such agent.
    fn restore<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.restore(&name).await },
            to_py,
        )
    }

    /// `(version, archived, yaml_or_None)` or None; the YAML only when the current version
    /// is not `known` and the agent is not archived.
    #[pyo3(signature = (name, known=None))]
    fn current<'py>(
        &self,
        py: Python<'py>,
        name: String,
        known: Option<i32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move {
                let current = a.current(&name, known).await?;
                Ok(current.map(|c| (c.version, c.archived, c.yaml)))
            },
            to_py,
        )
    }

    /// How many agents were updated.
    fn record_usage<'py>(
        &self,
        py: Python<'py>,
        names: Vec<String>,
        uses: Vec<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.record_usage(&names, &uses).await },
            to_py,
        )
    }
}
