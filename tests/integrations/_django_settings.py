"""Django configured once per test process for the in-process integration tests."""

from __future__ import annotations


def configure_django() -> None:
    """Configure Django's settings (no database, no apps) unless already done."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["testserver"],
            DATABASES={},
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
