//! `adk_postgres._native.Admin`: argument conversion around `adk_postgres_core::admin`
//! (migration status, doctor, stats, prune).
//!
//! Built from a `Database` (`Admin(database)`), sharing its pool. Results come back as plain
//! dicts and lists; `adk_postgres.admin` turns them into dataclasses.

use std::path::PathBuf;
use std::sync::Arc;

use adk_postgres_core::admin::{
    Admin, AppPruned, AppStats, BackupReader, DoctorReport, MigrationStatus, PruneOptions,
    PruneReport, Stats,
};
use adk_postgres_core::db::Database;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::call::{call, to_py, Bytes, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "Admin", frozen)]
pub struct PyAdmin {
    inner: Arc<Admin>,
}

/// `adk_postgres._native.BackupReader`: a snapshot of the backup tables, read in batches.
#[pyclass(module = "adk_postgres._native", name = "BackupReader", frozen)]
pub struct PyBackupReader {
    inner: Arc<BackupReader>,
}

impl Service for BackupReader {
    fn database(&self) -> &Arc<Database> {
        BackupReader::database(self)
    }
}

#[pymethods]
impl PyBackupReader {
    /// The next `(table, [row JSON bytes])`, or `None` when every table was read.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |r| async move { r.next_batch().await },
            |py, batch| match batch {
                None => Ok(py.None()),
                Some((table, rows)) => {
                    to_py(py, (table, rows.into_iter().map(Bytes).collect::<Vec<_>>()))
                }
            },
        )
    }

    /// Ends the snapshot (the connection goes back to the pool).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(py, &self.inner, |r| async move { r.close().await }, to_py)
    }
}

impl Service for Admin {
    fn database(&self) -> &Arc<Database> {
        Admin::database(self)
    }
}

fn migrations_to_py<'py>(py: Python<'py>, m: &MigrationStatus) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("schema", &m.schema)?;
    d.set_item("current", m.current)?;
    d.set_item("latest", m.latest)?;
    let applied = PyList::empty(py);
    for a in &m.applied {
        applied.append((a.version, a.name.as_str(), a.applied_at.as_deref()))?;
    }
    d.set_item("applied", applied)?;
    d.set_item("pending", PyList::new(py, &m.pending)?)?;
    Ok(d)
}

fn doctor_to_py<'py>(py: Python<'py>, r: &DoctorReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("target", &r.target)?;
    let checks = PyList::empty(py);
    for c in &r.checks {
        checks.append((
            c.name,
            c.status.as_str(),
            c.detail.as_str(),
            c.advice.as_deref(),
        ))?;
    }
    d.set_item("checks", checks)?;
    d.set_item("connect_ms", r.connect_ms)?;
    d.set_item("round_trip_ms", r.round_trip_ms)?;
    d.set_item("server_version", r.server_version.as_deref())?;
    d.set_item("user", r.user.as_deref())?;
    d.set_item("superuser", r.superuser)?;
    d.set_item("tls", r.tls.as_deref())?;
    let extensions = PyList::empty(py);
    for e in &r.extensions {
        extensions.append((
            e.name.as_str(),
            e.available.as_deref(),
            e.installed.as_deref(),
            e.schema.as_deref(),
        ))?;
    }
    d.set_item("extensions", extensions)?;
    match &r.pool {
        Some(p) => {
            let pool = PyDict::new(py);
            pool.set_item("max_size", p.status.max_size)?;
            pool.set_item("size", p.status.size)?;
            pool.set_item("available", p.status.available)?;
            pool.set_item("waiting", p.status.waiting)?;
            pool.set_item("connect_timeout", p.connect_timeout_s)?;
            pool.set_item("acquire_timeout", p.acquire_timeout_s)?;
            pool.set_item("statement_cache", p.statement_cache)?;
            d.set_item("pool", pool)?;
        }
        None => d.set_item("pool", py.None())?,
    }
    match &r.migrations {
        Some(m) => d.set_item("migrations", migrations_to_py(py, m)?)?,
        None => d.set_item("migrations", py.None())?,
    }
    d.set_item("can_create", r.can_create)?;
    Ok(d)
}

/// `(app_name, users, sessions, events, artifact_files, artifact_versions, artifact_bytes,
/// memory_entries)`
fn app_stats_tuple(a: &AppStats) -> (&str, i64, i64, i64, i64, i64, i64, i64) {
    (
        a.app_name.as_str(),
        a.users,
        a.sessions,
        a.events,
        a.artifact_files,
        a.artifact_versions,
        a.artifact_bytes,
        a.memory_entries,
    )
}

fn stats_to_py<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("apps", PyList::new(py, s.apps.iter().map(app_stats_tuple))?)?;
    d.set_item("totals", app_stats_tuple(&s.totals))?;
    d.set_item("artifact_contents", s.artifact_contents)?;
    d.set_item("stored_contents", s.stored_contents)?;
    d.set_item("stored_content_bytes", s.stored_content_bytes)?;
    d.set_item("a2a_tasks", PyList::new(py, s.a2a_tasks.iter().cloned())?)?;
    d.set_item("a2a_feedback", s.a2a_feedback)?;
    let tables = PyList::empty(py);
    for t in &s.tables {
        tables.append((t.name.as_str(), t.bytes, t.rows_estimate))?;
    }
    d.set_item("tables", tables)?;
    Ok(d)
}

/// `(app_name, sessions, session_events, events, artifact_files, artifact_versions)`
/// `(app, sessions, session_events, events, artifact_files, artifact_versions,
/// archived_sessions, archived_events)`
type AppPrunedRow<'a> = (&'a str, i64, i64, i64, i64, i64, i64, i64);

fn app_pruned_tuple(a: &AppPruned) -> AppPrunedRow<'_> {
    (
        a.app_name.as_str(),
        a.sessions,
        a.session_events,
        a.events,
        a.artifact_files,
        a.artifact_versions,
        a.archived_sessions,
        a.archived_events,
    )
}

fn prune_to_py<'py>(py: Python<'py>, r: &PruneReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("dry_run", r.dry_run)?;
    d.set_item("cutoff", r.cutoff)?;
    d.set_item(
        "apps",
        PyList::new(py, r.apps.iter().map(app_pruned_tuple))?,
    )?;
    d.set_item("contents", r.contents)?;
    d.set_item("content_bytes", r.content_bytes)?;
    d.set_item("files", r.files)?;
    d.set_item("files_queued", r.files_queued)?;
    d.set_item("tasks_cutoff", r.tasks_cutoff)?;
    d.set_item("tasks", r.tasks)?;
    d.set_item("task_feedback", r.task_feedback)?;
    d.set_item("archived_cutoff", r.archived_cutoff)?;
    d.set_item("batches", r.batches)?;
    Ok(d)
}

/// A dict built by one of the `*_to_py` functions, as a plain object.
fn dict(built: PyResult<Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
    Ok(built?.into_any().unbind())
}

#[pymethods]
impl PyAdmin {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PyAdmin {
            inner: Arc::new(Admin::new(PyDatabase::handle(&database))),
        }
    }

    /// Applied and pending migrations; changes nothing.
    fn migration_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.migration_status().await },
            |py, m| dict(migrations_to_py(py, &m)),
        )
    }

    /// Every health check; failures are in the report, not raised.
    fn doctor<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.doctor().await },
            |py, r| dict(doctor_to_py(py, &r)),
        )
    }

    /// A snapshot of the backup tables of `groups` (of one app when given).
    #[pyo3(signature = (groups, app_name=None))]
    fn open_backup<'py>(
        &self,
        py: Python<'py>,
        groups: Vec<String>,
        app_name: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.open_backup(&groups, app_name).await },
            |py, reader| {
                let reader = PyBackupReader {
                    inner: Arc::new(reader),
                };
                Ok(Py::new(py, reader)?.into_any())
            },
        )
    }

    /// Inserts backed-up rows of `table` in one transaction; returns how many were new.
    fn restore_rows<'py>(
        &self,
        py: Python<'py>,
        table: String,
        rows: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows: Vec<Vec<u8>> = rows.iter().map(|r| r.as_bytes().to_vec()).collect();
        call(
            py,
            &self.inner,
            |a| async move { a.restore_rows(&table, &rows).await },
            to_py,
        )
    }

    #[pyo3(signature = (app_name=None))]
    fn stats<'py>(&self, py: Python<'py>, app_name: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |a| async move { a.stats(app_name.as_deref()).await },
            |py, s| dict(stats_to_py(py, &s)),
        )
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, app_name=None, idle_for=None, keep_events=None, orphaned_artifacts=false, content_dir=None, file_grace=adk_postgres_core::artifacts::DEFAULT_FILE_GRACE_S, tasks_finished_before=None, archived_for=None, dry_run=false, batch_size=adk_postgres_core::admin::DEFAULT_BATCH_SIZE))]
    fn prune<'py>(
        &self,
        py: Python<'py>,
        app_name: Option<String>,
        idle_for: Option<f64>,
        keep_events: Option<i64>,
        orphaned_artifacts: bool,
        content_dir: Option<PathBuf>,
        file_grace: f64,
        tasks_finished_before: Option<f64>,
        archived_for: Option<f64>,
        dry_run: bool,
        batch_size: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = PruneOptions {
            app_name,
            idle_for_s: idle_for,
            keep_events,
            orphaned_artifacts,
            content_dir,
            file_grace_s: file_grace,
            tasks_finished_for_s: tasks_finished_before,
            archived_for_s: archived_for,
            dry_run,
            batch_size,
        };
        call(
            py,
            &self.inner,
            |a| async move { a.prune(&options).await },
            |py, r| dict(prune_to_py(py, &r)),
        )
    }
}
