"""Many threads and many tasks tracking at once: nothing lost, nothing mixed."""

from __future__ import annotations

import asyncio
import threading

from gbtrack import InMemorySender, Tracker, identify


def test_many_threads(tracker: Tracker, sender: InMemorySender) -> None:
    @tracker.track("hit", metadata={"thread": "t", "i": "i"})
    def hit(t: int, i: int) -> None: ...

    n_threads, per_thread = 16, 200
    start = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        start.wait(timeout=60)
        with identify(f"c{t}"):
            for i in range(per_thread):
                hit(t, i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    events = sender.events
    assert len(events) == n_threads * per_thread
    assert tracker.stats.sent == n_threads * per_thread
    for event in events:  # identity never crosses threads
        assert event.customer_id == f"c{event.metadata['thread']}"
    by_thread: dict[object, list[object]] = {}
    for event in events:
        by_thread.setdefault(event.metadata["thread"], []).append(event.metadata["i"])
    assert all(values == list(range(per_thread)) for values in by_thread.values())
    assert len({e.event_id for e in events}) == len(events)


async def test_concurrent_tasks_with_different_identities(
    tracker: Tracker, sender: InMemorySender
) -> None:
    @tracker.track("step", metadata={"task": "task", "step": "step"})
    async def step(task: int, step: int) -> None:
        await asyncio.sleep(0)  # interleave the tasks

    async def session(task: int) -> None:
        with identify(f"cust-{task}", email=f"{task}@example.com", session_token=f"tok-{task}"):
            for i in range(20):
                await step(task, i)

    await asyncio.gather(*(session(t) for t in range(50)))
    events = sender.events
    assert len(events) == 50 * 20
    for event in events:
        task = event.metadata["task"]
        assert event.customer_id == f"cust-{task}"
        assert event.email == f"{task}@example.com"
        assert event.session_token is not None
        assert event.session_token.get_secret_value() == f"tok-{task}"
