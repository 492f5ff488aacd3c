"""Import time of a module with 200 ``@track``-decorated functions (issue 10).

Decoration does all the work (signature, paths compiled, every step type-checked
against the annotations, the tracking plan), so it must stay cheap at import. A module
is generated with 200 functions, each tracked with a customer id, an email and four
metadata paths through annotated dataclasses (``from __future__ import annotations``,
so every annotation is a string resolved by the check). It is imported in a fresh
subprocess (gbtrack and wrapt already imported, so only the module's own import is
timed), interleaved with the same module decorated by a bare ``wrapt`` pass-through
(the baseline, same run); the median of the repeats is kept.

``--reference DIR`` also times the same module against another gbtrack source tree
(e.g. ``git archive e8b6259 src | tar -x -C /tmp/gb-e8b6259`` for the code before the
type checks), so "at most 2x today's" is measured in one run.

Public API only.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._harness import Result, Table

FUNCTIONS = 200
IMPORT_LIMIT = 2.0  # at most 2x the import time before the type checks (issue 10)

_HEADER = '''\
"""Generated: {n} tracked functions."""
from __future__ import annotations

from dataclasses import dataclass, field

{imports}


@dataclass
class Customer:
    id: str
    email: str


@dataclass
class Line:
    sku: str
    price: float
    quantity: int = 1


@dataclass
class Order:
    id: str
    total: float
    currency: str = "EGP"
    lines: list[Line] = field(default_factory=list)
'''

_FUNCTION = """

@{decorator}
def checkout_{i}(customer: Customer, cart: list[Line]) -> Order:
    return Order(id="o-{i}", total=sum(line.price for line in cart), lines=cart)
"""

_TRACK = (
    'track("purchase_{i}", customer_id="customer.id", email="customer.email", '
    'metadata={{"order_id": "result.id", "amount": "result.total", '
    '"currency": "result.currency", "first_sku": "result.lines[0].sku"}})'
)

_RUNNER = """
import sys, time
import gbtrack, wrapt  # not timed: the module's own import is
sys.path.insert(0, sys.argv[1])
start = time.perf_counter()
__import__(sys.argv[2])
print(time.perf_counter() - start)
"""


def write_module(directory: Path, name: str, *, tracked: bool, n: int = FUNCTIONS) -> None:
    """Write ``name.py`` into ``directory``: ``n`` functions, tracked or passed through."""
    if tracked:
        imports = "from gbtrack import track"
    else:
        imports = (
            "import wrapt\n\n\n@wrapt.decorator\ndef passthrough(wrapped, instance, args, kwargs):"
            "\n    return wrapped(*args, **kwargs)"
        )
    parts = [_HEADER.format(n=n, imports=imports)]
    for i in range(n):
        decorator = _TRACK.format(i=i) if tracked else "passthrough"
        parts.append(_FUNCTION.format(decorator=decorator, i=i))
    (directory / f"{name}.py").write_text("".join(parts), encoding="utf-8")


def _import_seconds(directory: Path, module: str, src: str | None) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(directory), module],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(*, repeats: int = 11, reference: str | None = None) -> dict[str, float]:
    """Median import seconds of each variant: ``wrapt``, ``gbtrack`` (and ``reference``)."""
    here = str(Path(__file__).resolve().parent.parent / "src")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_module(directory, "tracked_module", tracked=True)
        write_module(directory, "wrapt_module", tracked=False)
        variants: dict[str, tuple[str, str | None]] = {
            "wrapt": ("wrapt_module", None),
            "gbtrack": ("tracked_module", here),
        }
        if reference is not None:
            variants["reference"] = ("tracked_module", str(Path(reference) / "src"))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for module, src in variants.values():  # warm-up: writes the .pyc files
            _import_seconds(directory, module, src)
        for _ in range(repeats):
            for name, (module, src) in variants.items():
                samples[name].append(_import_seconds(directory, module, src))
    return {name: statistics.median(values) for name, values in samples.items()}


def run(table: Table, *, quick: bool = False, reference: str | None = None) -> None:
    """Add the import-time row(s) to ``table``."""
    times = measure(repeats=5 if quick else 11, reference=reference)
    wrapt_ms, ours_ms = times["wrapt"] * 1e3, times["gbtrack"] * 1e3
    per_function = (times["gbtrack"] - times["wrapt"]) / FUNCTIONS * 1e6
    table.add(
        Result(
            benchmark=f"import of a module with {FUNCTIONS} @track functions (type-checked)",
            measured=f"{ours_ms:.1f} ms ({per_function:.0f} us per decoration over wrapt)",
            baseline=f"bare wrapt decoration {wrapt_ms:.1f} ms",
            ratio=times["gbtrack"] / times["wrapt"],
        )
    )
    if "reference" in times:
        ref_ms = times["reference"] * 1e3
        ratio = times["gbtrack"] / times["reference"]
        table.add(
            Result(
                benchmark=f"import of {FUNCTIONS} @track functions vs the reference tree",
                measured=f"{ours_ms:.1f} ms",
                baseline=f"{reference}: {ref_ms:.1f} ms",
                ratio=ratio,
                target=f"<= {IMPORT_LIMIT:g}x",
                ok=ratio <= IMPORT_LIMIT,
            )
        )


if __name__ == "__main__":  # pragma: no cover
    ref = sys.argv[1] if len(sys.argv) > 1 else None
    table = Table()
    run(table, reference=ref)
    print(table.markdown())
