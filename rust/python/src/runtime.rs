//! Running store futures for Python without ever touching the interpreter from tokio threads.
//!
//! Each asyncio event loop gets a [`Bridge`]: a socket pair whose read end the loop watches
//! (`loop.add_reader`) and a queue of finished results. A store future runs on the tokio
//! runtime; when it finishes, its worker thread pushes the plain Rust result onto the queue and
//! writes one byte — no GIL, no Python objects. The loop thread then calls [`Bridge::drain`],
//! which builds the Python values and resolves the asyncio futures.
//!
//! Why not pyo3-async-runtimes' `future_into_py`: it takes the GIL on tokio threads to resolve
//! futures, which races with interpreter shutdown (a tokio thread inside `PyGILState_Release`
//! while the main thread finalises aborts the process). Keeping Python on the loop thread also
//! avoids GIL hand-offs between threads on every call.
//!
//! Nothing may leave an asyncio future waiting forever: a Rust future that panics completes its
//! Python future with `InternalError`, a conversion that panics or fails completes it with the
//! error, and a failure while resolving one future is reported (as an unraisable exception)
//! without delaying the others drained with it.
//!
//! The runtime itself is per process: a forked child (whose copy of the parent's runtime has no
//! worker threads) builds its own on first use.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use adk_postgres_core::{ErrorKind, StoreError};
use futures_util::FutureExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use crate::errors::to_pyerr;

/// Worker threads: I/O-bound work needs few, and small machines share their cores with the
/// interpreter and often the database.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The tokio runtime of this process (built on first use, and again in a forked child).
pub(crate) fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return rt.clone();
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // The parent's runtime: its threads do not exist here, and dropping it would wait for
        // them forever.
        std::mem::forget(inherited);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("adk-postgres")
            .enable_all()
            .build()
            .expect("cannot start the adk-postgres tokio runtime"),
    );
    *slot = Some((pid, rt.clone()));
    rt
}

type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What a worker thread leaves for the loop thread: no Python objects inside.
struct Completion {
    id: u64,
    result: Result<Convert, StoreError>,
}

/// The part of a bridge that worker threads see.
struct Mailbox {
    queue: Mutex<VecDeque<Completion>>,
    writer: UnixStream,
}

impl Mailbox {
    fn deliver(&self, completion: Completion) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(completion);
        // A full socket buffer already guarantees a wake-up, so a failed write is harmless.
        let _ = (&self.writer).write(&[1]);
    }
}

struct Pending {
    future: Py<PyAny>,
    abort: AbortHandle,
}

/// One event loop's end of the bridge (see the module docs).
#[pyclass(module = "adk_postgres._native", frozen)]
pub struct Bridge {
    mailbox: Arc<Mailbox>,
    reader: UnixStream,
    pending: Mutex<HashMap<u64, Pending>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[pymethods]
impl Bridge {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Bridge {
            mailbox: Arc::new(Mailbox {
                queue: Mutex::new(VecDeque::new()),
                writer,
            }),
            reader,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The file descriptor the event loop watches.
    #[getter]
    fn fd(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Resolve the futures whose results arrived (called by the loop when `fd` is readable).
    /// Each is resolved on its own: a failure is reported and the next one still resolved.
    fn drain(&self, py: Python<'_>) {
        let mut sink = [0u8; 256];
        while matches!((&self.reader).read(&mut sink), Ok(n) if n > 0) {}
        loop {
            let next = self
                .mailbox
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(Completion { id, result }) = next else {
                return;
            };
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let Some(Pending { future, .. }) = pending else {
                continue; // cancelled meanwhile
            };
            let future = future.into_bound(py);
            if let Err(err) = resolve(py, &future, result) {
                err.write_unraisable(py, Some(&future));
            }
        }
    }

    /// Calls in flight on this loop.
    fn in_flight(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Completes `future` with the converted result or the error.
fn resolve(
    py: Python<'_>,
    future: &Bound<'_, PyAny>,
    result: Result<Convert, StoreError>,
) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(()); // cancelled meanwhile
    }
    let value = result.map_err(to_pyerr).and_then(|convert| {
        std::panic::catch_unwind(AssertUnwindSafe(|| convert(py)))
            .unwrap_or_else(|panic| Err(to_pyerr(panicked("converting a result", &*panic))))
    });
    match value {
        Ok(value) => future.call_method1("set_result", (value,))?,
        Err(err) => future.call_method1("set_exception", (err.into_value(py),))?,
    };
    Ok(())
}

/// The error a caller sees for a panic in adk-postgres' Rust code.
fn panicked(during: &str, panic: &(dyn Any + Send)) -> StoreError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    StoreError::new(
        ErrorKind::Internal,
        format!("adk-postgres' Rust core panicked while {during}: {message}"),
    )
}

/// Done-callback of every call's future: when the future is cancelled, the Rust future is
/// dropped (a statement already sent may still complete on the server; appends are idempotent
/// by event id).
#[pyclass(module = "adk_postgres._native", frozen)]
struct CancelOnDone {
    bridge: Py<Bridge>,
    id: u64,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            let bridge = self.bridge.get();
            if let Some(p) = bridge
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id)
            {
                p.abort.abort();
            }
        }
        Ok(())
    }
}

/// `adk_postgres._bridge.prepare`: `(bridge, future)` for the running event loop.
static PREPARE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Runs `fut` on the runtime; returns an asyncio future resolved (on the loop thread) with
/// `convert`'s value, or the mapped exception.
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
    let prepare = PREPARE.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import("adk_postgres._bridge")?
                .getattr("prepare")?
                .unbind(),
        )
    })?;
    let (bridge_obj, future): (Bound<'py, Bridge>, Bound<'py, PyAny>) =
        prepare.bind(py).call0()?.extract()?;
    let bridge = bridge_obj.get();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mailbox = bridge.mailbox.clone();
    let task = runtime().spawn(async move {
        let result = match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(result) => result.map(|value| -> Convert { Box::new(move |py| convert(py, value)) }),
            Err(panic) => Err(panicked("running a call", &*panic)),
        };
        mailbox.deliver(Completion { id, result });
    });
    bridge
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id,
            Pending {
                future: future.clone().unbind(),
                abort: task.abort_handle(),
            },
        );
    let on_done = CancelOnDone {
        bridge: bridge_obj.unbind(),
        id,
    };
    future.call_method1("add_done_callback", (on_done,))?;
    Ok(future)
}
