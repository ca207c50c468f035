//! `adk_postgres._native.Tenancy`: row-level security switches and tenant grants
//! (`adk_postgres_core::tenancy`), on a `Database`'s pool.

use std::sync::Arc;

use adk_postgres_core::db::Database;
use adk_postgres_core::tenancy::{Tenancy, TenantGrant};
use pyo3::prelude::*;

use crate::call::{call, to_py, Service};
use crate::database::PyDatabase;

#[pyclass(module = "adk_postgres._native", name = "Tenancy", frozen)]
pub struct PyTenancy {
    inner: Arc<Tenancy>,
}

impl Service for Tenancy {
    fn database(&self) -> &Arc<Database> {
        Tenancy::database(self)
    }
}

fn grant(role: String, app_name: String, user_id: Option<String>) -> TenantGrant {
    TenantGrant {
        role,
        app_name,
        user_id,
    }
}

#[pymethods]
impl PyTenancy {
    #[new]
    fn new(database: Bound<'_, PyDatabase>) -> Self {
        PyTenancy {
            inner: Arc::new(Tenancy::new(PyDatabase::handle(&database))),
        }
    }

    fn set_row_level_security<'py>(
        &self,
        py: Python<'py>,
        enabled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |t| async move { t.set_row_level_security(enabled).await },
            to_py,
        )
    }

    fn row_level_security<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |t| async move { t.row_level_security().await },
            to_py,
        )
    }

    #[pyo3(signature = (role, app_name, user_id=None))]
    fn grant<'py>(
        &self,
        py: Python<'py>,
        role: String,
        app_name: String,
        user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let g = grant(role, app_name, user_id);
        call(
            py,
            &self.inner,
            |t| async move { t.grant_tenant(&g).await },
            to_py,
        )
    }

    #[pyo3(signature = (role, app_name, user_id=None))]
    fn revoke<'py>(
        &self,
        py: Python<'py>,
        role: String,
        app_name: String,
        user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let g = grant(role, app_name, user_id);
        call(
            py,
            &self.inner,
            |t| async move { t.revoke_tenant(&g).await },
            to_py,
        )
    }

    /// `[(role, app_name, user_id)]`
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call(
            py,
            &self.inner,
            |t| async move {
                let grants = t.list_tenants().await?;
                Ok(grants
                    .into_iter()
                    .map(|g| (g.role, g.app_name, g.user_id))
                    .collect::<Vec<_>>())
            },
            to_py,
        )
    }
}
