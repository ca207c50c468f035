"""Per-event-loop bridge between the Rust runtime and asyncio (see rust/python/src/runtime.rs).

The Rust side finishes a call on a tokio thread without touching Python: it queues the result
and writes a byte to a socket this loop watches; the loop then resolves the asyncio future.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from ._native import Bridge

# Loop → its bridge. The bridge holds no reference to the loop, so a finished loop is collected
# and its bridge (and sockets) with it.
_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Bridge] = weakref.WeakKeyDictionary()


def prepare() -> tuple[Bridge, asyncio.Future[Any]]:
    """The running loop's bridge (registered with the loop on first use) and a new future."""
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = Bridge()
        loop.add_reader(bridge.fd, bridge.drain)
        _bridges[loop] = bridge
    return bridge, loop.create_future()
