//! `adk_postgres._native.TenancyStore`: row-level security switches and tenant grants
//! (`adk_postgres_core::tenancy`), on a `Store`'s pool.

use std::sync::Arc;

use adk_postgres_core::tenancy::TenantGrant;
use adk_postgres_core::Store;
use pyo3::prelude::*;

use crate::runtime::spawn;
use crate::store::PyStore;

#[pyclass(module = "adk_postgres._native", name = "TenancyStore", frozen)]
pub struct PyTenancyStore {
    store: Py<PyStore>,
}

impl PyTenancyStore {
    fn checked(&self) -> PyResult<Arc<Store>> {
        self.store.get().checked()
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
impl PyTenancyStore {
    #[new]
    fn new(store: Bound<'_, PyStore>) -> Self {
        PyTenancyStore {
            store: store.unbind(),
        }
    }

    fn set_row_level_security<'py>(
        &self,
        py: Python<'py>,
        enabled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(
            py,
            async move { store.set_row_level_security(enabled).await },
            |py, ()| Ok(py.None()),
        )
    }

    fn row_level_security<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(
            py,
            async move { store.row_level_security().await },
            |py, on| {
                Ok(pyo3::types::PyBool::new(py, on)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
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
        let store = self.checked()?;
        let g = grant(role, app_name, user_id);
        spawn(py, async move { store.grant_tenant(&g).await }, |py, ()| {
            Ok(py.None())
        })
    }

    #[pyo3(signature = (role, app_name, user_id=None))]
    fn revoke<'py>(
        &self,
        py: Python<'py>,
        role: String,
        app_name: String,
        user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        let g = grant(role, app_name, user_id);
        spawn(
            py,
            async move { store.revoke_tenant(&g).await },
            |py, found| {
                Ok(pyo3::types::PyBool::new(py, found)
                    .to_owned()
                    .into_any()
                    .unbind())
            },
        )
    }

    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.checked()?;
        spawn(
            py,
            async move { store.list_tenants().await },
            |py, grants| {
                let rows: Vec<(String, String, Option<String>)> = grants
                    .into_iter()
                    .map(|g| (g.role, g.app_name, g.user_id))
                    .collect();
                Ok(rows.into_pyobject(py)?.into_any().unbind())
            },
        )
    }
}
