"""Integrations with web frameworks, servers and runtimes; import the one you use.

Each module imports its framework only when it is imported itself, so this package
pulls in nothing:

- :mod:`gbtrack.integrations.asgi`: Starlette and FastAPI (``pip install gbtrack[fastapi]``):
  an ASGI middleware and a FastAPI dependency that bind the customer per request, and
  a lifespan that configures and closes the tracker off the event loop.
- :mod:`gbtrack.integrations.serverless`: AWS Lambda-style handlers: a decorator that
  flushes, bounded, at the end of each invocation.
- :mod:`gbtrack.integrations.django`, :mod:`gbtrack.integrations.flask`,
  :mod:`gbtrack.integrations.gunicorn` and :mod:`gbtrack.integrations.celery`: their
  frameworks' integrations.
"""
