"""Fault injection: the database failing at each step, misbehaving receivers, the lifecycle
callback arriving after the browser, and clocks that disagree.

- Database errors (``connection.execute_wrapper`` raising ``OperationalError`` on the
  query of a named step: the row lock, the INSERT, the UPDATE, the commit, the session
  write; and on every query in turn) in the callback (a flow's return, and a plain one)
  and in both lifecycle views: the answer is 503 (the "try again" page for the browser),
  the transaction is rolled back so nothing half-written remains, no signal is sent, the
  flow is kept, and the retry succeeds with exactly one signal in all. The session write
  comes last, after the commit: there the installation is already whole and signalled,
  and the retry (the flow still in the stored session) answers the same without a second
  signal.
- Receivers that raise or are slow: the answer still comes, the data is committed (seen
  from another connection while the receiver runs) and nothing is undone.
- An unexpected error (a project's ``post_save`` receiver, the app's own code) on a flow
  return: the project's 500 handler answers, the app logs it with its traceback and
  Django's request log, whose line names the path and so the flow id, says nothing; the
  flow is kept and the retry works. With DEBUG on, or on the plain return, the error goes
  to Django as usual.
- The ``installed`` lifecycle callback after the browser's return: for a registered app
  the return (app-level secret) creates the row and the late unsigned callback fills in the
  secret without undoing the confirmation; for an unregistered app the early return of a
  young flow, signed or trusted unsigned, is told to reload (503, Retry-After), changes
  nothing and keeps the flow, and the reload after the callback finishes the install. An
  unsigned return that is not trusted gets its one neutral answer at once, however early.
- Clock skew of this server against the token's issuer, through ``JWT_LEEWAY``: within the
  leeway accepted, beyond it refused, for ``exp`` and for ``iat``, on the callback and on a
  lifecycle callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection, connections
from django.db.models.signals import post_save
from django.dispatch import Signal
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import views
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed, uninstalled
from bitbucket_install.tokens import encode_token
from bitbucket_install.views import RESULT_SESSION_KEY
from tests.attack_helpers import UNVERIFIED_RESULT, shown
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    age_flows,
    assert_protected,
    flow_id_of,
    flow_ids,
    flow_path,
    installed_via_lifecycle,
    login,
    records_mentioning,
    return_url,
    signed_query,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle
from tests.urls_with_handler500 import SERVER_ERROR_PAGE

pytestmark = pytest.mark.django_db(transaction=True)

NEW_SECRET = "rotated-shared-secret-0123456789"
TRY_AGAIN = "Reload this page in a moment"


# --- fault injection -------------------------------------------------------------------------


Matcher = Callable[[str, bool], bool]  # (sql, inside a transaction) -> is it the step?


class Fault:
    """An ``execute_wrapper`` that raises ``OperationalError`` on the ``nth`` query that
    ``matches`` (once; matchers see the SQL without quoting), and records every query."""

    def __init__(self, matches: Matcher = lambda sql, atomic: True, nth: int = 1) -> None:
        self.matches = matches
        self.nth = nth
        self.seen = 0
        self.fired_on: str | None = None
        self.queries: list[str] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.queries.append(sql)
        plain = sql.replace('"', "").replace("`", "")  # PostgreSQL/SQLite and MariaDB quoting
        if self.fired_on is None and self.matches(plain, context["connection"].in_atomic_block):
            self.seen += 1
            if self.seen == self.nth:
                self.fired_on = sql
                raise OperationalError("injected: the database went away")
        return execute(sql, params, many, context)


def never(sql: str, atomic: bool) -> bool:
    return False


def installation_select(sql: str) -> bool:
    return sql.startswith("SELECT") and "FROM bitbucket_install_installation" in sql


# The named write steps. The row lock is the installation SELECT inside the transaction
# (SELECT ... FOR UPDATE; a plain SELECT on SQLite, which locks the whole database).
STEPS: dict[str, Matcher] = {
    "lock": lambda sql, atomic: atomic and installation_select(sql),
    "insert": lambda sql, atomic: sql.startswith("INSERT INTO bitbucket_install_installation"),
    "update": lambda sql, atomic: sql.startswith("UPDATE bitbucket_install_installation"),
    "session": lambda sql, atomic: "django_session" in sql and not sql.startswith("SELECT"),
}


@pytest.fixture
def failing_commit(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[bool]]:
    """Make the next COMMIT fail (COMMIT does not go through execute_wrapper); returns a
    function that arms it and gives the list that records whether it fired."""
    wrapper: Any = connections["default"]
    real_commit = wrapper._commit
    fired: list[bool] = []

    def arm() -> list[bool]:
        def failing_commit() -> None:
            if not fired:
                fired.append(True)
                raise OperationalError("injected: commit failed")
            real_commit()

        monkeypatch.setattr(wrapper, "_commit", failing_commit)
        return fired

    return arm


@pytest.fixture(autouse=True)
def _quiet_503_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="django.request")


def assert_try_again(response: Any) -> None:
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert TRY_AGAIN in response.content.decode()


# --- the callback -------------------------------------------------------------------------------


class Install:
    """One browser's install of KEY_A: logged in as a new user, a flow started, and the
    return URL Bitbucket would send it to (``kind`` picks the scenario; "plain-..." comes
    back to ``callback/``, the others to the flow's own path)."""

    def __init__(self, kind: str, settings: Settings, username: str = "ada") -> None:
        self.kind = kind
        self.client = Client()
        self.user: User = login(self.client, username)
        path = flow_path(self.client)
        if kind == "registered-new-row":  # the app-level secret; the return makes the row
            self.url = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)
        elif kind == "registered-lifecycle-row":  # the callback came first, as usual
            installed_via_lifecycle(KEY_A, INSTALL_SECRET)
            self.url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=path), path)
        elif kind == "plain-new-row":  # a plain return: confirms, binds nobody
            self.url = return_url(signed_query(KEY_A, APP_SECRET))
        else:  # unregistered, no JWT: confirmed by the fresh lifecycle callback
            unregistered(settings)
            # Trusted, it binds through the flow; untrusted, it binds nobody, keeps the flow.
            settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = kind == "unregistered-no-jwt"
            installed_via_lifecycle(KEY_A, INSTALL_SECRET)
            self.url = return_url(urlencode({"clientKey": KEY_A}), path)
        self.pending = flow_ids(self.client)

    @property
    def bound(self) -> User | None:
        binds = not self.kind.startswith("plain-") and self.kind != "unregistered-no-jwt-untrusted"
        return self.user if binds else None

    def assert_done(self, sent_signals: SignalRecorder, response: Any) -> None:
        """The install finished once: connected to this user (through the flow), one
        ``installed`` signal; the flow used up (a return that binds nobody leaves it
        alone)."""
        assert response.status_code == 303
        assert response["Location"] == RESULT_PATH
        row = Installation.objects.get()
        assert row.confirmed_at is not None
        bound = self.bound
        assert row.user_id == (bound.pk if bound else None)
        [kwargs] = sent_signals.of(installed)
        assert (kwargs["user"].pk if kwargs["user"] else None) == row.user_id
        assert kwargs["created"] is self.kind.endswith("new-row")
        assert not sent_signals.of(install_failed)
        assert flow_ids(self.client) == (self.pending if bound is None else [])
        page = self.client.get(RESULT_PATH)
        assert page.status_code == 200
        untrusted = self.kind == "unregistered-no-jwt-untrusted"
        expected = "Back from Bitbucket" if untrusted else "The app is installed"
        assert expected in page.content.decode()


KINDS = [
    "registered-new-row",
    "registered-lifecycle-row",
    "plain-new-row",
    "unregistered-no-jwt",
    "unregistered-no-jwt-untrusted",
]
# The writes each scenario makes (a new row is inserted, an existing one updated); reads
# outside the transaction, and any other query, get their turn in the test after this one.
KIND_STEPS = {
    "registered-new-row": ["lock", "insert", "commit", "session"],
    "registered-lifecycle-row": ["lock", "update", "commit", "session"],
    "plain-new-row": ["lock", "insert", "commit", "session"],
    "unregistered-no-jwt": ["lock", "update", "commit", "session"],
    "unregistered-no-jwt-untrusted": ["lock", "update", "commit", "session"],
}


@pytest.mark.parametrize(
    ("kind", "step"),
    [(kind, step) for kind in KINDS for step in KIND_STEPS[kind]],
)
def test_callback_database_error_at_each_step_then_a_retry_succeeds(
    settings: Settings,
    sent_signals: SignalRecorder,
    failing_commit: Callable[[], list[bool]],
    kind: str,
    step: str,
) -> None:
    install = Install(kind, settings)
    rows = installation_rows()
    sent_signals.calls.clear()

    fault = Fault(STEPS.get(step, never))
    commit_fired = failing_commit() if step == "commit" else [True]
    with connection.execute_wrapper(fault):
        response = install.client.get(install.url)

    assert_try_again(response)
    assert fault.fired_on is not None or step == "commit", fault.queries
    assert commit_fired == [True]
    if step == "session":
        # The last write: the installation is committed and signalled already...
        assert Installation.objects.get().confirmed_at is not None
        assert len(sent_signals.of(installed)) == 1
    else:
        # ...every earlier failure rolls back: nothing half-written, no signal.
        assert installation_rows() == rows
        assert sent_signals.none_sent
    assert flow_ids(install.client) == install.pending  # the stored session still has it

    retry = install.client.get(install.url)

    install.assert_done(sent_signals, retry)
    # A double click after that changes nothing and signals nothing.
    again = install.client.get(install.url)
    assert again.status_code == 303
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_callback_database_error_on_every_query_in_turn(
    settings: Settings, sent_signals: SignalRecorder, kind: str
) -> None:
    """Whatever query fails, the browser gets the 503 page and the retry completes the
    install with exactly one signal (no named step missed)."""
    recorder = Fault(never)
    probe = Install(kind, settings, username="probe")
    with connection.execute_wrapper(recorder):
        assert probe.client.get(probe.url).status_code == 303
    total = len(recorder.queries)
    assert total >= 4  # at least the row lock and write, the session read and write

    for nth in range(1, total + 1):
        Installation.objects.all().delete()
        User.objects.exclude(username="probe").delete()
        install = Install(kind, settings, username=f"user{nth}")
        sent_signals.calls.clear()
        fault = Fault(nth=nth)
        with connection.execute_wrapper(fault):
            response = install.client.get(install.url)
        assert fault.fired_on is not None
        assert_try_again(response)
        assert len(sent_signals.of(installed)) <= 1
        retry = install.client.get(install.url)
        install.assert_done(sent_signals, retry)


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "trust-unsigned-returns"])
def test_unsigned_flow_return_retried_after_the_session_write_failed_answers_the_same(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    trusted: bool,
) -> None:
    """An unsigned return (unregistered app) whose last write, the session, failed: the
    installation is committed as confirmed, ``installed`` sent, and the flow is still in
    the stored session. The retry of this very return gets the answer the first return
    would have given: the same redirect and result, nothing written, no second signal, no
    ``install_failed``. Trusted, it is this flow's return again (connected to its user,
    the flow used up now); untrusted, the one neutral answer (nobody bound, the flow
    kept)."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = trusted
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    pending = flow_ids(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}), path)
    sent_signals.calls.clear()
    with connection.execute_wrapper(Fault(STEPS["session"])):
        assert_try_again(client.get(url))
    rows = installation_rows()
    assert rows[0]["confirmed_at"] is not None
    assert rows[0]["user_id"] == (user.pk if trusted else None)
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] == (user if trusted else None)
    assert flow_ids(client) == pending
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    retry = client.get(url)

    assert retry.status_code == 303
    assert retry["Location"] == RESULT_PATH
    assert installation_rows() == rows
    assert len(sent_signals.calls) == 1  # still only the first return's ``installed``
    lines = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    if trusted:
        assert lines == [
            f"install return accepted: client_key={KEY_A} created=False signalled=False "
            f"user={user.pk}"
        ]
        assert client.session[RESULT_SESSION_KEY] == {
            "ok": True,
            "client_key": KEY_A,
            "principal_name": "Acme Team",
            "connection": "connected",
            "connected": True,
        }
        assert flow_ids(client) == []
    else:
        assert lines == [
            f"install return without a token: client_key={KEY_A} recorded=False flow=True"
        ]
        assert shown(client.session[RESULT_SESSION_KEY]) == UNVERIFIED_RESULT
        assert flow_ids(client) == pending
    # A double click after that: the same again.
    again = client.get(url)
    assert (again.status_code, again["Location"]) == (303, RESULT_PATH)
    assert installation_rows() == rows
    assert len(sent_signals.calls) == 1


@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_a_failing_database_on_a_rejected_return_is_a_503_and_changes_nothing(
    sent_signals: SignalRecorder, kind: str
) -> None:
    """A refusal that needs the database (a guessed secret) gets 503 when it is down, not
    a 400 it could not decide, and keeps the flow; once it is back, the same return is
    refused as it should be (the flow is older than the confirm window: no "not yet")."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()
    client = Client()
    login(client, "mallory")
    path = flow_path(client)
    age_flows(client, 121)
    pending = flow_ids(client)
    if kind == "plain":
        path = CALLBACK_PATH
    url = return_url(signed_query(KEY_A, "a-guessed-secret", path=path), path)
    sent_signals.calls.clear()

    with connection.execute_wrapper(Fault(lambda sql, atomic: installation_select(sql))):
        response = client.get(url)

    assert_try_again(response)
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == pending
    refused = client.get(url)
    assert refused.status_code == 400
    assert installation_rows() == rows
    if kind == "flow":
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["error"] == "token_signature"
        assert flow_ids(client) == []
    else:
        assert sent_signals.none_sent
        assert flow_ids(client) == pending


# --- the lifecycle views -------------------------------------------------------------------------

LIFECYCLE_CASES = {
    # name: (event type, secret that signs it or None, steps it goes through)
    "first-install": ("installed", None, ["lock", "insert", "commit"]),
    "rotation": ("installed", INSTALL_SECRET, ["lock", "update", "commit"]),
    "uninstall": ("uninstalled", INSTALL_SECRET, ["lock", "update", "commit"]),
}


@pytest.mark.parametrize(
    ("case", "step"),
    [(case, step) for case, (_, _, steps) in LIFECYCLE_CASES.items() for step in steps],
)
def test_lifecycle_database_error_at_each_step_then_a_retry_succeeds(
    sent_signals: SignalRecorder,
    failing_commit: Callable[[], list[bool]],
    case: str,
    step: str,
) -> None:
    event_type, secret, _ = LIFECYCLE_CASES[case]
    if secret is not None:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    body = lifecycle_body(event_type, client_key=KEY_A, shared_secret=NEW_SECRET)
    rows = installation_rows()
    sent_signals.calls.clear()

    fault = Fault(STEPS.get(step, never))
    commit_fired = failing_commit() if step == "commit" else [True]
    with connection.execute_wrapper(fault):
        response = post_lifecycle(Client(), event_type, body, secret=secret)

    assert response.status_code == 503  # Bitbucket retries a callback that failed
    assert fault.fired_on is not None or step == "commit"
    assert commit_fired == [True]
    assert installation_rows() == rows
    assert sent_signals.none_sent

    retry = post_lifecycle(Client(), event_type, body, secret=secret)

    assert retry.status_code == 204
    row = Installation.objects.get()
    if event_type == "installed":
        assert row.shared_secret == NEW_SECRET
        assert row.uninstalled_at is None
        assert sent_signals.none_sent
    else:
        assert row.shared_secret == INSTALL_SECRET  # kept for the next install
        assert row.uninstalled_at is not None
        [kwargs] = sent_signals.of(uninstalled)
        assert kwargs["installation"].pk == row.pk


@pytest.mark.parametrize("case", list(LIFECYCLE_CASES))
def test_lifecycle_database_error_on_every_query_in_turn(
    sent_signals: SignalRecorder, case: str
) -> None:
    event_type, secret, _ = LIFECYCLE_CASES[case]
    body = lifecycle_body(event_type, client_key=KEY_A, shared_secret=NEW_SECRET)

    def prepare() -> None:
        Installation.objects.all().delete()
        if secret is not None:
            installed_via_lifecycle(KEY_A, INSTALL_SECRET)
        sent_signals.calls.clear()

    prepare()
    recorder = Fault(never)
    with connection.execute_wrapper(recorder):
        assert post_lifecycle(Client(), event_type, body, secret=secret).status_code == 204
    total = len(recorder.queries)
    assert total >= 2

    for nth in range(1, total + 1):
        prepare()
        rows = installation_rows()
        fault = Fault(nth=nth)
        with connection.execute_wrapper(fault):
            response = post_lifecycle(Client(), event_type, body, secret=secret)
        assert fault.fired_on is not None
        assert response.status_code == 503
        assert installation_rows() == rows
        assert sent_signals.none_sent
        assert post_lifecycle(Client(), event_type, body, secret=secret).status_code == 204
        assert len(sent_signals.of(uninstalled)) == (event_type == "uninstalled")


# --- receivers that raise or are slow ----------------------------------------------------------


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Callable[..., None]], None]]:
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def _connect(signal: Signal, receiver: Callable[..., None]) -> None:
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))

    yield _connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


def seen_from_another_connection(client_key: str) -> dict[str, Any] | None:
    """The row as a new connection (another thread) sees it: only committed data."""
    found: list[dict[str, Any] | None] = []

    def look() -> None:
        try:
            found.append(
                Installation.objects.filter(client_key=client_key)
                .values("confirmed_at", "uninstalled_at", "shared_secret")
                .first()
            )
        finally:
            for wrapper in connections.all(initialized_only=True):
                # Django ignores close() on an in-memory SQLite database (closing would
                # drop it); this thread's own handle must really go, or Python 3.13 warns
                # about an unclosed sqlite3.Connection (an error under filterwarnings).
                if wrapper.vendor == "sqlite" and wrapper.connection is not None:
                    wrapper.connection.close()
                    wrapper.connection = None
                else:
                    wrapper.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(timeout=30)
    return found[0]


SLOW = 0.3


def test_slow_installed_receiver_runs_after_the_commit_and_the_page_still_comes(
    sent_signals: SignalRecorder, connect: Callable[[Signal, Callable[..., None]], None]
) -> None:
    during: list[dict[str, Any] | None] = []

    def slow_receiver(installation: Installation, **kwargs: Any) -> None:
        during.append(seen_from_another_connection(installation.client_key))
        time.sleep(SLOW)

    connect(installed, slow_receiver)
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)

    started = time.monotonic()
    response = client.get(return_url(signed_query(KEY_A, APP_SECRET, path=path), path))

    assert response.status_code == 303
    assert time.monotonic() - started >= SLOW  # receivers run in the request
    [seen] = during
    assert seen is not None
    assert seen["confirmed_at"] is not None  # committed before the receiver ran
    assert Installation.objects.get().user_id == user.pk
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("behaviour", ["raises", "slow"])
def test_uninstalled_receiver_that_raises_or_is_slow(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
    behaviour: str,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    during: list[dict[str, Any] | None] = []

    def receiver(installation: Installation, **kwargs: Any) -> None:
        during.append(seen_from_another_connection(installation.client_key))
        if behaviour == "raises":
            raise RuntimeError("the project's receiver is broken")
        time.sleep(SLOW)

    connect(uninstalled, receiver)
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    body = lifecycle_body("uninstalled", client_key=KEY_A, shared_secret=INSTALL_SECRET)

    response = post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET)

    assert response.status_code == 204
    [seen] = during
    assert seen is not None
    assert seen["uninstalled_at"] is not None
    assert Installation.objects.get().uninstalled_at is not None
    assert len(sent_signals.of(uninstalled)) == 1
    errors = [r for r in caplog.records if r.name == "bitbucket_install" and r.levelno >= 40]
    assert len(errors) == (1 if behaviour == "raises" else 0)
    # Bitbucket's retry of the same callback changes nothing and signals nothing more.
    retry = post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET)
    assert retry.status_code == 204
    assert len(sent_signals.of(uninstalled)) == 1


def test_raising_receiver_then_a_double_click_sends_no_second_signal(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("broken")

    connect(installed, broken)
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    url = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)

    assert client.get(url).status_code == 303
    assert client.get(url).status_code == 303

    assert len(sent_signals.of(installed)) == 1
    assert Installation.objects.get().confirmed_at is not None


# --- an unexpected error on the return -----------------------------------------------------------


class Broken(RuntimeError):
    """What a bug raises, in the project's code or the app's: no database error."""


def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every record, Django's request log too (quiet in this module otherwise)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.request")
    caplog.clear()


def assert_failed_as_the_project_answers(
    response: Any, caplog: pytest.LogCaptureFixture, flow_id: str, page: str
) -> None:
    """The 500 answer of the project's handler (protected like every answer of the app),
    the error logged by the app with its traceback, and no record naming the flow id:
    none of Django's request log, whose line would hold the path."""
    assert response.status_code == 500
    assert page in response.content.decode()
    assert_protected(response)
    [failed] = [r for r in caplog.records if r.getMessage() == "install return failed"]
    assert failed.name == "bitbucket_install"
    assert failed.levelno == logging.ERROR
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], Broken)
    assert "Traceback" in (failed.exc_text or "")
    assert not [r for r in caplog.records if r.name == "django.request"]
    assert records_mentioning(caplog, flow_id) == []


@pytest.mark.parametrize("urlconf", ["tests.urls_with_handler500", "tests.urls"])
def test_a_receiver_raising_on_a_flow_return_gets_the_projects_500_and_loses_nothing(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
    urlconf: str,
) -> None:
    """A project's ``post_save`` receiver of Installation that raises, as the return
    records the confirmation: the transaction rolls back whole (nothing written, no
    signal, no ``install_failed``), the flow is still live, and once the receiver is
    fixed the retry of the same return connects the installation. The answer is the
    project's own 500 page (Django's default one without a handler500)."""
    settings.ROOT_URLCONF = urlconf
    broken = True

    def receiver(sender: type, **kwargs: Any) -> None:
        if broken and sender is Installation:
            raise Broken("the project's post_save receiver is broken")

    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    connect(post_save, receiver)
    rows, pending = installation_rows(), flow_ids(client)
    sent_signals.calls.clear()
    url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=path), path)
    _log_everything(caplog)

    response = client.get(url)

    page = SERVER_ERROR_PAGE if urlconf == "tests.urls_with_handler500" else "Server Error (500)"
    assert_failed_as_the_project_answers(response, caplog, flow_id_of(path), page)
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == pending
    assert RESULT_SESSION_KEY not in client.session

    broken = False
    retry = client.get(url)

    assert retry.status_code == 303
    assert retry["Location"] == RESULT_PATH
    assert Installation.objects.get().user_id == user.pk
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"].pk == user.pk
    assert len(sent_signals.calls) == 1
    assert flow_ids(client) == []


def test_an_error_after_the_commit_gets_the_500_and_the_retry_answers_the_same(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app's own code raising once the confirmation is committed (here: making the
    result): 500, the installation confirmed and signalled once, the session not written
    (the flow still live); the retry of the same return answers the same success without
    a second signal."""
    settings.ROOT_URLCONF = "tests.urls_with_handler500"
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    pending = flow_ids(client)
    url = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Broken("making the result failed")

    monkeypatch.setattr(views, "result_of", broken)
    _log_everything(caplog)

    response = client.get(url)

    assert_failed_as_the_project_answers(response, caplog, flow_id_of(path), SERVER_ERROR_PAGE)
    rows = installation_rows()
    assert rows[0]["user_id"] == user.pk
    assert rows[0]["confirmed_at"] is not None
    assert len(sent_signals.of(installed)) == 1
    assert len(sent_signals.calls) == 1
    assert flow_ids(client) == pending

    monkeypatch.undo()
    retry = client.get(url)

    assert retry.status_code == 303
    assert retry["Location"] == RESULT_PATH
    assert installation_rows() == rows
    assert len(sent_signals.calls) == 1
    assert flow_ids(client) == []
    assert client.session[RESULT_SESSION_KEY]["connection"] == "connected"


def test_with_debug_on_an_unexpected_error_on_a_flow_return_propagates(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DEBUG on: the error reaches Django (its debug page), not the project's 500 handler,
    and the app logs nothing of it."""
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.urls_with_handler500"
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    pending = flow_ids(client)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Broken("the policy failed")

    monkeypatch.setattr(views, "decide", broken)
    _log_everything(caplog)

    with pytest.raises(Broken):
        client.get(return_url(signed_query(KEY_A, APP_SECRET, path=path), path))

    assert not [r for r in caplog.records if r.getMessage() == "install return failed"]
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert flow_ids(client) == pending


@pytest.mark.parametrize("raises", [True, False], ids=["test-client-raises", "answered"])
def test_an_unexpected_error_on_a_plain_return_propagates(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    raises: bool,
) -> None:
    """The plain path holds no flow id: the error goes to Django as usual, which answers
    with the project's 500 handler and logs it in its request log; the app does not."""
    settings.ROOT_URLCONF = "tests.urls_with_handler500"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Broken("the policy failed")

    monkeypatch.setattr(views, "decide", broken)
    client = Client(raise_request_exception=raises)
    _log_everything(caplog)
    url = return_url(signed_query(KEY_A, APP_SECRET))

    if raises:
        with pytest.raises(Broken):
            client.get(url)
    else:
        response = client.get(url)
        assert response.status_code == 500
        assert SERVER_ERROR_PAGE in response.content.decode()
    assert not [r for r in caplog.records if r.getMessage() == "install return failed"]
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == [
        f"Internal Server Error: {CALLBACK_PATH}"
    ]
    assert installation_rows() == []
    assert sent_signals.none_sent


# --- the lifecycle callback after the browser's return ------------------------------------------


def test_registered_return_first_then_the_unsigned_first_callback(
    sent_signals: SignalRecorder,
) -> None:
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    url = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)

    response = client.get(url)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.shared_secret == ""
    assert row.user_id == user.pk
    [kwargs] = sent_signals.of(installed)
    assert kwargs["created"] is True

    # The installed callback arrives late, unsigned (Bitbucket has no previous secret):
    # trusted on first use, it fills in the secret and the payload...
    late = post_lifecycle(
        Client(), "installed", lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    )

    assert late.status_code == 204
    row = Installation.objects.get()
    assert row.shared_secret == INSTALL_SECRET
    assert row.principal_name == "Acme Team"
    assert row.installed_at is not None
    # ...and keeps what the return did: connected, confirmed.
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1

    # A reload of the return changes nothing and signals nothing more.
    again = client.get(url)
    assert again.status_code == 303
    assert len(sent_signals.of(installed)) == 1
    assert Installation.objects.get().confirmed_at is not None

    # From now on, only the stored secret changes it.
    rows = installation_rows()
    hijack = post_lifecycle(
        Client(), "installed", lifecycle_body(client_key=KEY_A, shared_secret=NEW_SECRET)
    )
    assert hijack.status_code == 401
    assert installation_rows() == rows
    rotation = post_lifecycle(
        Client(),
        "installed",
        lifecycle_body(client_key=KEY_A, shared_secret=NEW_SECRET),
        secret=INSTALL_SECRET,
    )
    assert rotation.status_code == 204
    assert Installation.objects.get().shared_secret == NEW_SECRET


@pytest.mark.parametrize("return_kind", ["jwt-of-the-installation", "no-jwt-trusted"])
def test_unregistered_return_first_is_told_to_reload_then_finishes(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    return_kind: str,
) -> None:
    """The browser is back before Bitbucket's ``installed`` callback. Nothing verifies the
    return yet (no row; with a JWT, no secret to check it with): "reload in a moment",
    nothing written, no signal, the flow kept. The reload after the callback succeeds,
    connecting the user when a JWT proves it, or (unsigned) when the project trusts
    unsigned returns."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None  # an unregistered app has none
    with_jwt = return_kind == "jwt-of-the-installation"
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = not with_jwt
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    pending = flow_ids(client)
    if with_jwt:
        url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=path), path)
    else:
        url = return_url(urlencode({"clientKey": KEY_A}), path)
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    early = client.get(url)

    assert_try_again(early)
    assert early["Retry-After"] == "5"
    assert early["Referrer-Policy"] == "no-referrer"
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert flow_ids(client) == pending
    reason = "unknown_installation" if with_jwt else "client_key_unverified"
    assert f"install return not verifiable yet: reason={reason}" in caplog.text

    # A reload that is still too early: the same answer, still nothing.
    assert_try_again(client.get(url))
    assert sent_signals.none_sent

    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    reload = client.get(url)

    assert reload.status_code == 303
    assert reload["Location"] == RESULT_PATH
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] == user
    assert kwargs["created"] is False
    assert flow_ids(client) == []


def test_untrusted_unsigned_return_first_gets_the_neutral_answer_at_once(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The browser is back before Bitbucket's ``installed`` callback, unsigned returns not
    trusted: no "reload in a moment" (it would tell an unknown clientKey from a known one),
    but the one neutral answer: nothing written, no signal, no ``install_failed``, the flow
    kept. The callback arriving next is stored unconfirmed."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    pending = flow_ids(client)
    url = return_url(urlencode({"clientKey": KEY_A}), path)
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    early = client.get(url)

    assert early.status_code == 303
    assert early["Location"] == RESULT_PATH
    assert early["Cache-Control"] == "no-store"
    assert shown(client.session[RESULT_SESSION_KEY]) == UNVERIFIED_RESULT
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert flow_ids(client) == pending
    assert "install return not verifiable yet" not in caplog.text
    assert f"install return without a token: client_key={KEY_A} recorded=False" in caplog.text

    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    row = Installation.objects.get()
    assert row.confirmed_at is None
    assert row.user_id is None
    assert sent_signals.none_sent


def test_untrusted_unsigned_return_before_its_callback_still_gets_the_install_confirmed(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    """Unregistered app, unsigned returns not trusted (the default): the browser is back
    before Bitbucket's ``installed`` callback (which the return trip allows for). The
    neutral answer sends it on to the result page, which reloads itself once (whatever the
    return named); each load in the confirm window records the named installation if its
    callback is in by then: the install ends confirmed, binding nobody, with one
    ``installed``, and still the neutral page."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    url = return_url(urlencode({"clientKey": KEY_A}), path)

    answer = client.get(url)
    shown = answer["Location"] if answer.status_code in (302, 303) else url
    first_view = client.get(shown)
    assert 'data-bbi-reload-after="5"' in first_view.content.decode()
    assert not sent_signals.of(installed)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    reload = client.get(shown, follow=True)

    assert reload.status_code == 200
    assert "data-bbi-reload-after" not in reload.content.decode()  # it reloads once only
    assert "Acme Team" not in reload.content.decode()
    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_at is not None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None
    assert kwargs["created"] is False
    assert not sent_signals.of(install_failed)


def test_registered_reinstall_return_first_waits_for_its_callback(
    sent_signals: SignalRecorder,
) -> None:
    """Uninstalled, then installed again: the return (app-level secret) comes before the
    new ``installed`` callback, so the row is still uninstalled: reload in a moment. After
    the callback (signed with the kept secret), the reload connects it."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    body = lifecycle_body("uninstalled", client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET).status_code == 204
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    url = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)
    rows = installation_rows()
    sent_signals.calls.clear()

    assert_try_again(client.get(url))
    assert installation_rows() == rows
    assert sent_signals.none_sent

    reinstall = lifecycle_body(client_key=KEY_A, shared_secret=NEW_SECRET)
    callback = post_lifecycle(Client(), "installed", reinstall, secret=INSTALL_SECRET)
    assert callback.status_code == 204
    reload = client.get(url)

    assert reload.status_code == 303
    row = Installation.objects.get()
    assert row.uninstalled_at is None
    assert row.user_id == user.pk
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("kind", ["plain", "old-flow"])
def test_an_early_return_without_a_recent_flow_is_refused(
    settings: Settings, sent_signals: SignalRecorder, kind: str
) -> None:
    """With ``TRUST_UNSIGNED_RETURNS``: only this browser's recent flow earns the "reload"
    answer; a plain return, or the return of a flow older than the confirm window, does
    not."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    age_flows(client, 121)
    pending = flow_ids(client)

    response = client.get(
        return_url(urlencode({"clientKey": KEY_A}), CALLBACK_PATH if kind == "plain" else path)
    )

    assert response.status_code == 400
    assert installation_rows() == []
    if kind == "plain":
        assert sent_signals.none_sent
        assert flow_ids(client) == pending
    else:
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["error"] == "client_key_unverified"
        assert flow_ids(client) == []


@pytest.mark.parametrize("kind", ["plain", "old-flow"])
def test_an_early_untrusted_unsigned_return_without_a_recent_flow_gets_the_neutral_answer(
    settings: Settings, sent_signals: SignalRecorder, kind: str
) -> None:
    """Unsigned returns not trusted: a plain return, or that of an old flow, before any
    callback gets the neutral answer too, refusing nothing and using no flow up."""
    unregistered(settings)
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    age_flows(client, 121)
    pending = flow_ids(client)

    response = client.get(
        return_url(urlencode({"clientKey": KEY_A}), CALLBACK_PATH if kind == "plain" else path)
    )

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert shown(client.session[RESULT_SESSION_KEY]) == UNVERIFIED_RESULT
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert flow_ids(client) == pending


# --- clock skew ---------------------------------------------------------------------------------

MARGIN = 3  # seconds, so that the test's own run time never decides


def skewed_return(client_key: str, path: str, *, iat_offset: float, lifetime: int) -> str:
    """A return signed with the app-level secret by an issuer whose clock is off."""
    query = urlencode({"clientKey": client_key})
    token = encode_token(
        {"iss": client_key},
        APP_SECRET,
        method="GET",
        path=path,
        query_string=query,
        now=time.time() + iat_offset,
        lifetime=lifetime,
    )
    return return_url(query + "&" + urlencode({"jwt": token}), path)


# (what is off, by how much relative to the leeway, accepted?)
SKEWS = [
    pytest.param("exp", -MARGIN, True, id="expired-within-leeway"),
    pytest.param("exp", +MARGIN, False, id="expired-beyond-leeway"),
    pytest.param("iat", -MARGIN, True, id="issued-ahead-within-leeway"),
    pytest.param("iat", +MARGIN, False, id="issued-ahead-beyond-leeway"),
]


@pytest.mark.parametrize("leeway", [10, 60])
@pytest.mark.parametrize(("claim", "beyond", "accepted"), SKEWS)
def test_callback_clock_skew(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    leeway: int,
    claim: str,
    beyond: int,
    accepted: bool,
) -> None:
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = leeway
    lifetime = 60
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    # The button was pressed before the (skewed) token was issued: only exp and iat decide.
    age_flows(client, 2 * (lifetime + leeway + MARGIN))
    # exp: the issuer's clock is behind, the token expired (leeway+beyond) ago; iat: it is
    # ahead, the token was issued (leeway+beyond) from now.
    iat_offset = -(lifetime + leeway + beyond) if claim == "exp" else leeway + beyond
    url = skewed_return(KEY_A, path, iat_offset=iat_offset, lifetime=lifetime)
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    response = client.get(url)

    if accepted:
        assert response.status_code == 303
        assert Installation.objects.get().confirmed_at is not None
        assert len(sent_signals.of(installed)) == 1
    else:
        assert response.status_code == 400
        assert installation_rows() == []
        assert not sent_signals.of(installed)
        reason = "token_expired" if claim == "exp" else "token_issued_in_future"
        assert f"reason={reason}" in caplog.text


@pytest.mark.parametrize("leeway", [10, 60])
@pytest.mark.parametrize(("claim", "beyond", "accepted"), SKEWS)
def test_lifecycle_clock_skew(
    settings: Settings,
    sent_signals: SignalRecorder,
    leeway: int,
    claim: str,
    beyond: int,
    accepted: bool,
) -> None:
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = leeway
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()
    now = int(time.time())
    if claim == "exp":
        iat, exp = now - 60 - leeway - beyond, now - leeway - beyond
    else:
        iat, exp = now + leeway + beyond, now + leeway + beyond + 60
    body = lifecycle_body(client_key=KEY_A, shared_secret=NEW_SECRET)

    response = post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET, iat=iat, exp=exp)

    if accepted:
        assert response.status_code == 204
        assert Installation.objects.get().shared_secret == NEW_SECRET
    else:
        assert response.status_code == 401
        assert installation_rows() == rows
    assert sent_signals.none_sent
