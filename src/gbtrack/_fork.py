"""One ``os.register_at_fork`` hook for every object that must reset in a forked child.

Senders and stores hold threads, locks and connections that a forked child must not
share with its parent (a gunicorn worker forked after import, say). Each registers
with :func:`reset_after_fork`; in the child, their ``_after_fork()`` runs in the order
they registered (a store before the sender that created it), and only for objects
still alive: they are held weakly.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["forget", "reset_after_fork"]


class ForkAware(Protocol):
    """An object that resets its threads, locks and connections in a forked child."""

    def _after_fork(self) -> None: ...


# Insertion-ordered and weak: registration order is reset order, and the dead are gone.
_objects: weakref.WeakKeyDictionary[ForkAware, None] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in every forked child while ``obj`` is alive."""
    with _lock:
        _objects[obj] = None


def forget(obj: ForkAware) -> None:
    """Stop resetting ``obj`` after a fork (it was closed)."""
    with _lock:
        _objects.pop(obj, None)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    for obj in list(_objects.keys()):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
