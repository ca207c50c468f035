//! Keeping the warm-read cache out of the cyclic garbage collector's way.
//!
//! CPython's full collections walk every container object it tracks. With the cache holding
//! tens of thousands of decoded events (about ten containers each: the model instances, their
//! `__dict__`s, part lists, delta dicts), one full collection took over half a second on the
//! 2-core machine and stalled every request in flight: agent turns at c=32 had a p99 of 404 ms
//! with the cache on against 86 ms with it off (`benches/client_cost.py`).
//!
//! Cached events are immutable by contract and are trees of pydantic models, dicts, lists and
//! JSON scalars: they hold no reference cycles, so the collector can never find garbage among
//! them. Untracking them is safe: they are still freed by reference counting when the cache
//! and the callers drop them, and a container the collector does not track only counts as an
//! outside reference to what it holds, which keeps that alive, never frees it early. The one
//! cost of breaking the contract (building a reference cycle through a cached event) is that
//! the cycle is not collected.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFrozenSet, PyList, PySet, PyTuple, PyType};

static BASE_MODEL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The slots of a pydantic model instance besides its fields' `__dict__`.
const MODEL_SLOTS: [&str; 4] = [
    "__dict__",
    "__pydantic_fields_set__",
    "__pydantic_extra__",
    "__pydantic_private__",
];

/// Untracks each of `roots` (decoded events) and the containers they are made of: pydantic
/// model instances, dicts, lists, tuples and sets. Anything else (strings, numbers, enum
/// members, objects of other classes) is left as it is and not looked into. Returns how many
/// objects it untracked.
#[pyfunction]
pub(crate) fn untrack_tree(py: Python<'_>, roots: &Bound<'_, PyAny>) -> PyResult<usize> {
    let base_model = BASE_MODEL
        .get_or_try_init(py, || -> PyResult<Py<PyType>> {
            Ok(py
                .import("pydantic")?
                .getattr("BaseModel")?
                .cast_into::<PyType>()?
                .unbind())
        })?
        .bind(py);
    let mut stack: Vec<Bound<'_, PyAny>> = roots.try_iter()?.collect::<PyResult<_>>()?;
    let mut untracked = 0;
    while let Some(object) = stack.pop() {
        let is_model = object.is_instance(base_model)?;
        let is_container = is_model
            || object.is_instance_of::<PyDict>()
            || object.is_instance_of::<PyList>()
            || object.is_instance_of::<PyTuple>()
            || object.is_instance_of::<PySet>()
            || object.is_instance_of::<PyFrozenSet>();
        // Only what was tracked is looked into: an object already untracked (by this walk, or
        // by CPython, which untracks dicts and tuples of scalars) holds nothing to untrack, and
        // a cycle ends the walk instead of looping.
        if !is_container || !untrack(&object) {
            continue;
        }
        untracked += 1;
        if is_model {
            for slot in MODEL_SLOTS {
                if let Ok(value) = object.getattr(slot) {
                    stack.push(value);
                }
            }
        } else if let Ok(dict) = object.cast::<PyDict>() {
            stack.extend(dict.values());
        } else {
            stack.extend(object.try_iter()?.collect::<PyResult<Vec<_>>>()?);
        }
    }
    Ok(untracked)
}

/// Untracks `object`; false if it was not tracked.
fn untrack(object: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `object` is a live object (we hold a reference) of a GC type (a model instance or
    // a builtin container), and the GIL is held.
    unsafe {
        if ffi::PyObject_GC_IsTracked(object.as_ptr()) == 0 {
            return false;
        }
        ffi::PyObject_GC_UnTrack(object.as_ptr().cast());
    }
    true
}
