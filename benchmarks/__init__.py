"""gbtrack's benchmarks: run with ``python -m nox -s bench`` (or ``python -m benchmarks``)."""
