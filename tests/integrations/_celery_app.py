"""The Celery app the integration tests run in a real worker (``celery -A _celery_app``).

Configured by the environment the test gives the worker: ``BROKER_URL``, the emulator's
``GAMEBALL_*`` variables, ``GBTRACK_FLUSH_INTERVAL`` (a long one proves that events
reached the emulator through the integration's flush, not the sender's own timer) and
``GBTRACK_INSTRUMENT`` (``0``: no integration), ``FLUSH_AFTER_TASK`` (``1``:
``instrument(flush_after_task=True)``) and ``HOLD_EXIT`` (``1``: in a pool child that ran a
task, the first ``worker_process_shutdown`` receiver, connected before the
integration's, creates ``exiting-<pid>`` in the working directory and then waits up to
30 s, so a test can signal the child there).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals

import gbtrack
from gbtrack.integrations.celery import instrument

ran_a_task = False  # in this process

app = Celery("gbtrack_tests", broker=os.environ.get("BROKER_URL", "memory://"))
app.conf.update(
    result_backend=os.environ.get("BROKER_URL", "cache+memory://"),
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("GAMEBALL_API_KEY"):
    gbtrack.configure(flush_interval=float(os.environ.get("GBTRACK_FLUSH_INTERVAL", "0.5")))
if os.environ.get("HOLD_EXIT") == "1":

    @signals.worker_process_shutdown.connect(weak=False)
    def hold_exit(**_: Any) -> None:
        """Another library's slow exit hook, running before the integration's."""
        if not ran_a_task:
            return
        Path(f"exiting-{os.getpid()}").touch()
        threading.Event().wait(30)


if os.environ.get("GBTRACK_INSTRUMENT", "1") == "1":
    instrument(flush_timeout=10.0, flush_after_task=os.environ.get("FLUSH_AFTER_TASK") == "1")


@gbtrack.track(
    "purchase_completed",
    metadata={"n": "n", "pid": lambda call: os.getpid()},
)
def purchase(n: int) -> None:
    """A tracked business function with no customer_id: it comes from identify()."""


@app.task(name="tests.purchase")
def purchase_task(n: int, sleep: float = 0.0) -> dict[str, object]:
    """Track one event and say which identity the task saw."""
    global ran_a_task
    ran_a_task = True
    if sleep:
        time.sleep(sleep)
    purchase(n)
    identity = gbtrack.current_identity()
    return {
        "customer_id": identity.customer_id,
        "email": identity.email,
        "mobile": identity.mobile,
        "has_token": identity.session_token is not None,
        "pid": os.getpid(),
    }


@app.task(name="tests.fan_out")
def fan_out(n: int) -> str:
    """Publish a child task from inside a task (the identity is carried on); its id."""
    return str(purchase_task.delay(n).id)
