"""Every credential form a store URL can carry is redacted by the one function, and
every path that turns text into output (errors, log lines, HTTP bodies) goes through it."""

from __future__ import annotations

import io
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tether import errors, redact
from tether.observe.logging import configure_logging
from tether.server import http_errors
from tether.store import migrations

SECRET = "Hunter2-pw"

FORMS = [
    f"postgresql://app:{SECRET}@db.internal:5432/prod",
    f"postgresql://app:{SECRET}@db.internal/prod?sslmode=require",
    f"postgresql://app@db.internal/prod?password={SECRET}&pool_max=4",
    f"postgresql://app@db.internal/prod?sslmode=disable&PASSWORD={SECRET}",
    f"postgresql://app@db.internal/prod?passfile=/etc/{SECRET}",
    f"postgresql://app@db.internal/prod?sslpassword={SECRET}",
    f"host=db.internal user=app password={SECRET} dbname=prod",
    f"host=db.internal password = '{SECRET} with space' dbname=prod",
    f"postgresql://app:{SECRET}@with@db.internal/prod",
    f"postgres://:{SECRET}@db.internal/prod",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_credential_form_is_redacted(form: str) -> None:
    shown = redact.text(f"store {form} failed")
    assert SECRET not in shown
    assert redact.MASK in shown
    assert "db.internal" in shown  # the operator still sees where
    assert migrations.redact(form) == redact.url(form)
    assert SECRET in "".join(redact.secrets_in(form))


def test_text_without_credentials_is_unchanged() -> None:
    plain = "sqlite:///./r.db and postgresql://app@db/prod?sslmode=require, a=b"
    assert redact.text(plain) == plain


def test_error_messages_never_carry_a_password() -> None:
    exc = errors.StoreUnavailable(f"PostgreSQL store {FORMS[2]} is unavailable")
    assert SECRET not in exc.message
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc.to_dict())


@pytest.mark.parametrize("as_json", [True, False])
def test_log_lines_never_carry_a_password(as_json: bool) -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", json=as_json, stream=stream)
    try:
        log = logging.getLogger("tether.test")
        for form in FORMS:
            log.warning("store.unavailable", extra={"store": form})
            log.warning("connecting to %s", form)
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().count("\n") == 2 * len(FORMS)
    assert SECRET not in stream.getvalue()


def test_server_errors_answer_without_store_details() -> None:
    """A 5xx names neither the store's URL nor its host, user or database: that is logged."""
    app = FastAPI()
    http_errors.install(app)

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise errors.StoreUnavailable(f"PostgreSQL store {FORMS[0]} is unavailable")

    @app.get("/failed")
    async def failed() -> None:
        raise errors.InfraError(f"PostgreSQL store {FORMS[2]} failed: NUL in string")

    client = TestClient(app)
    for path, code in (("/unavailable", 503), ("/failed", 500)):
        answer = client.get(path)
        assert answer.status_code == code
        body = answer.text
        for part in (SECRET, "db.internal", "prod", "app@", "postgresql"):
            assert part not in body, (path, body)
        assert answer.json()["error"]["message"]
