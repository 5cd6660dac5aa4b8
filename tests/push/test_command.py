"""``manage.py bitbucket_install_push_descriptor`` against the simulated Bitbucket API over
real HTTP (a live server): 1,000 installations, some of which the simulator refuses (403 or
404), the outcome of each recorded, a resume that pushes only to those, exit codes,
``--dry-run`` that sends and writes nothing, ``--enqueue`` on the Dummy and Immediate
backends, uninstalled installations skipped, the progress bar on a terminal. Each negative
test asserts the recorded rows and that no signal was sent."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import push, task_framework
from bitbucket_install.management.commands.bitbucket_install_push_descriptor import (
    Command,
    Progress,
)
from bitbucket_install.models import Installation
from bitbucket_install.simulator import state
from tests.conftest import SignalRecorder

pytestmark = pytest.mark.django_db(transaction=True)

COMMAND = "bitbucket_install_push_descriptor"
APP_KEY = "example-app"  # BITBUCKET_INSTALL_ADDON_KEY of tests/settings.py
FRAMEWORK = task_framework.framework().__name__
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"


@pytest.fixture
def simulated(
    live_server: Any, settings: Settings, server_threads_connections: None
) -> Iterator[str]:
    """The simulator on, on a live server; its base URL. The cache holds every simulated
    installation (LocMemCache keeps 300 entries by default)."""
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    settings.BITBUCKET_INSTALL_BASE_URL = live_server.url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    yield live_server.url
    from django.core.cache import cache

    cache.clear()


def make_installations(base: str, count: int, **fields: Any) -> list[Installation]:
    """``count`` installations the simulator knows, each with a secret of its own."""
    made = []
    for number in range(count):
        client_key = f"connection:{number}"
        secret = f"installation-{number}-shared-secret-0123456789abcdef"
        state.save_installation(
            state.SimulatedInstallation(client_key, secret, APP_KEY, "Acme", ("account",))
        )
        made.append(
            Installation(
                client_key=client_key,
                addon_key=APP_KEY,
                shared_secret=secret,
                base_url=base + "/bitbucket/simulator",
                base_api_url=base + "/bitbucket/simulator/api",
                product_type="bitbucket",
                installed_at=timezone.now(),
                **fields,
            )
        )
    created: list[Installation] = Installation.objects.bulk_create(made, batch_size=500)
    return created


def rows() -> dict[str, tuple[bool, str]]:
    """Every row's (pushed, recorded error), by clientKey."""
    return {
        key: (pushed_at is not None, error)
        for key, pushed_at, error in Installation.objects.values_list(
            "client_key", "descriptor_pushed_at", "descriptor_push_error"
        )
    }


def updates(keys: list[str]) -> dict[str, int]:
    """How many PUT /2.0/addon the simulator received from each of ``keys``."""
    return {key: state.addon_updates(key) for key in keys}


def run(*args: str) -> tuple[int, str, str]:
    """The command as ``manage.py`` runs it (``run_from_argv``, which turns a
    ``CommandError`` into its exit status): that status and the output."""
    out, err = StringIO(), StringIO()
    command = Command(stdout=out, stderr=err)
    try:
        command.run_from_argv(["manage.py", COMMAND, *args])
    except SystemExit as exited:
        return int(exited.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_a_thousand_pushed_the_refused_recorded_then_resumed(
    simulated: str, sent_signals: SignalRecorder
) -> None:
    made = make_installations(simulated, 1000)
    keys = [row.client_key for row in made]
    gone = keys[990:]
    Installation.objects.filter(client_key__in=gone).update(uninstalled_at=timezone.now())
    forbidden = keys[0:600:60]  # 10 refused with 403
    unknown = keys[30:600:60]  # 10 with 404
    for key in forbidden:
        state.refuse_addon_update(key, 403)
    for key in unknown:
        state.refuse_addon_update(key, 404)
    refused = set(forbidden) | set(unknown)

    status, out, err = run("--concurrency", "8")

    assert status == 1
    assert "Pushed the descriptor to 970 of 990 installations; 20 failed." in out
    assert "20 pushes failed" in err
    assert "--only-failed" in err
    assert "\r" not in out  # not a terminal: one summary line, no bar
    recorded = rows()
    for key in forbidden:
        assert recorded[key] == (False, "403 Improper authentication.")
    for key in unknown:
        assert recorded[key] == (False, "404 Resource not found")
    for key in keys[:990]:
        if key not in refused:
            assert recorded[key] == (True, "")
    # Uninstalled ones were skipped: nothing sent, nothing recorded.
    assert {key: recorded[key] for key in gone} == dict.fromkeys(gone, (False, ""))
    assert updates(gone) == dict.fromkeys(gone, 0)
    assert updates(keys[:990]) == dict.fromkeys(keys[:990], 1)
    assert sent_signals.none_sent

    # Bitbucket accepts them now: the resume pushes to those 20 alone.
    for key in refused:
        state.refuse_addon_update(key, None)
    status, out, err = run("--only-failed")

    assert status == 0
    assert "failed (their errors" not in err
    assert "Pushed the descriptor to 20 of 20 installations; 0 failed." in out
    assert updates(sorted(refused)) == dict.fromkeys(sorted(refused), 2)
    assert updates([k for k in keys[:990] if k not in refused]) == {
        k: 1 for k in keys[:990] if k not in refused
    }
    assert rows() == {**dict.fromkeys(keys[:990], (True, "")), **dict.fromkeys(gone, (False, ""))}
    assert sent_signals.none_sent

    # Nothing left to resume: a run sends nothing.
    status, out, _ = run("--only-failed")
    assert status == 0
    assert "Pushed the descriptor to 0 of 0 installations; 0 failed." in out
    assert sum(updates(keys).values()) == 990 + 20


def test_an_interrupted_run_resumes_where_it_stopped(
    simulated: str, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    made = make_installations(simulated, 60)
    keys = [row.client_key for row in made]
    reading = push.pages

    def interrupted(*args: Any, **kwargs: Any) -> Iterator[Installation]:
        for number, installation in enumerate(reading(*args, **kwargs)):
            if number == 25:
                raise KeyboardInterrupt
            yield installation

    monkeypatch.setattr(push, "pages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        call_command(COMMAND, stdout=StringIO())
    monkeypatch.undo()

    first = rows()
    pushed = {key for key, (done, _) in first.items() if done}
    assert 0 < len(pushed) <= 25
    assert all(error == "" for _, error in first.values())
    assert updates(keys) == {key: int(key in pushed) for key in keys}

    out = StringIO()
    call_command(COMMAND, "--only-failed", stdout=out)

    assert f"Pushed the descriptor to {60 - len(pushed)} of {60 - len(pushed)}" in out.getvalue()
    # Every installation pushed to exactly once over the two runs.
    assert updates(keys) == dict.fromkeys(keys, 1)
    assert rows() == dict.fromkeys(keys, (True, ""))
    assert sent_signals.none_sent


def test_a_dry_run_sends_and_writes_nothing(simulated: str, sent_signals: SignalRecorder) -> None:
    made = make_installations(simulated, 30)
    keys = [row.client_key for row in made]
    Installation.objects.filter(client_key__in=keys[:5]).update(
        descriptor_push_error="403 Improper authentication."
    )
    Installation.objects.filter(client_key__in=keys[5:12]).update(
        descriptor_pushed_at=timezone.now()
    )
    Installation.objects.filter(client_key=keys[29]).update(uninstalled_at=timezone.now())
    before = list(Installation.objects.order_by("pk").values())

    status, out, _ = run("--dry-run")
    assert status == 0
    assert "Dry run: would push the descriptor to 29 installed installations;" in out
    assert (
        "Recorded outcomes of the 29 installed installations: 7 pushed, 5 failed, "
        "17 never pushed." in out
    )
    status, out, _ = run("--dry-run", "--only-failed")
    assert status == 0
    assert "would push the descriptor to 22 installed installations whose last push" in out
    # Even with --enqueue: a dry run enqueues nothing either.
    status, out, _ = run("--dry-run", "--enqueue")
    assert status == 0

    assert list(Installation.objects.order_by("pk").values()) == before
    assert updates(keys) == dict.fromkeys(keys, 0)
    assert sent_signals.none_sent


@pytest.mark.parametrize("concurrency", ["0", "33", "-1"])
def test_concurrency_out_of_bounds_is_refused(
    simulated: str, concurrency: str, sent_signals: SignalRecorder
) -> None:
    made = make_installations(simulated, 3)
    before = list(Installation.objects.order_by("pk").values())

    with pytest.raises(CommandError, match="--concurrency must be 1 to 32"):
        call_command(COMMAND, "--concurrency", concurrency)

    assert list(Installation.objects.order_by("pk").values()) == before
    assert updates([row.client_key for row in made]) == {row.client_key: 0 for row in made}
    assert sent_signals.none_sent


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar(simulated: str) -> None:
    made = make_installations(simulated, 12)
    state.refuse_addon_update(made[3].client_key, 404)
    out = Terminal()

    with pytest.raises(CommandError):
        call_command(COMMAND, "--concurrency", "3", stdout=out)

    text = out.getvalue()
    assert text.startswith("\r[" + "." * 30 + "] 0/12  pushed 0, failed 0")
    assert "\r[" + "#" * 30 + "] 12/12  pushed 11, failed 1\n" in text
    assert text.count("\r") == 13
    assert text.endswith("Pushed the descriptor to 11 of 12 installations; 1 failed.\n")


def test_a_terminal_with_nothing_to_push_gets_a_full_bar(simulated: str) -> None:
    out = Terminal()
    call_command(COMMAND, stdout=out)
    assert out.getvalue() == (
        "\r[" + "#" * 30 + "] 0/0  pushed 0, failed 0\n"
        "Pushed the descriptor to 0 of 0 installations; 0 failed.\n"
    )


def backend_of(alias: str) -> Any:
    return task_framework.task_backends()[alias]


def test_enqueue_on_the_dummy_backend_stores_one_task_each(
    simulated: str, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    made = make_installations(simulated, 20)
    keys = [row.client_key for row in made]
    Installation.objects.filter(client_key=keys[0]).update(uninstalled_at=timezone.now())
    backend = backend_of("default")
    before = list(Installation.objects.order_by("pk").values())
    try:
        status, out, _ = run("--enqueue")

        assert status == 0
        assert "Enqueued 19 tasks, one per installation" in out
        assert "19 installed installations: 0 pushed, 0 failed, 19 never pushed." in out
        results = list(backend.results)
        assert [result.task.name for result in results] == ["push_installation_descriptor"] * 19
        assert sorted(result.args[0] for result in results) == sorted(row.pk for row in made[1:])
        # Nothing pushed yet: the tasks wait for a worker.
        assert list(Installation.objects.order_by("pk").values()) == before
        assert updates(keys) == dict.fromkeys(keys, 0)

        # A worker runs them (one is refused meanwhile, one uninstalled since).
        state.refuse_addon_update(keys[5], 403)
        Installation.objects.filter(client_key=keys[6]).update(uninstalled_at=timezone.now())
        ran = [result.task.func(*result.args, **result.kwargs) for result in results]

        assert sorted(ran) == ["failed"] + ["nothing"] + ["pushed"] * 17
        status, out, _ = run("--dry-run")
        assert "18 installed installations: 17 pushed, 1 failed, 0 never pushed." in out
        assert rows()[keys[5]] == (False, "403 Improper authentication.")
        assert rows()[keys[6]] == (False, "")
        assert updates([keys[0], keys[6]]) == {keys[0]: 0, keys[6]: 0}
        assert sent_signals.none_sent
    finally:
        backend.clear()


def test_enqueue_on_the_immediate_backend_records_as_the_command_does(
    simulated: str, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}}
    made = make_installations(simulated, 20)
    keys = [row.client_key for row in made]
    state.refuse_addon_update(keys[2], 404)

    status, out, _ = run("--enqueue")

    assert status == 0
    assert "Enqueued 20 tasks" in out
    assert "20 installed installations: 19 pushed, 1 failed, 0 never pushed." in out
    assert rows() == {
        **dict.fromkeys(keys, (True, "")),
        keys[2]: (False, "404 Resource not found"),
    }
    assert updates(keys) == dict.fromkeys(keys, 1)
    assert sent_signals.none_sent

    # Run again with --only-failed: only the refused one is enqueued, and pushed now.
    state.refuse_addon_update(keys[2], None)
    status, out, _ = run("--enqueue", "--only-failed")
    assert "Enqueued 1 tasks" in out
    assert "20 pushed, 0 failed, 0 never pushed." in out
    assert updates(keys) == {**dict.fromkeys(keys, 1), keys[2]: 2}


def test_without_a_tasks_framework_enqueue_says_what_to_install(
    simulated: str, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    made = make_installations(simulated, 3)
    monkeypatch.setattr(task_framework, "FRAMEWORKS", ("no_such_tasks_framework",))
    monkeypatch.delitem(sys.modules, "bitbucket_install.tasks", raising=False)
    before = list(Installation.objects.order_by("pk").values())

    status, _, err = run("--enqueue")

    assert status == 1
    assert "No tasks framework can be imported" in err
    assert "django-bitbucket-install[tasks]" in err
    assert list(Installation.objects.order_by("pk").values()) == before
    assert updates([row.client_key for row in made]) == {row.client_key: 0 for row in made}
    assert sent_signals.none_sent


def test_the_bar_never_runs_past_its_end() -> None:
    # An installation made during the run is pushed too: more outcomes than counted.
    out = Terminal()
    progress = Progress(1, OutputWrapper(out), bar=True)
    progress(Installation(client_key="connection:1"), None)
    progress(Installation(client_key="connection:2"), "404 Resource not found")
    progress.finish()
    assert out.getvalue().endswith("\r[" + "#" * 30 + "] 2/1  pushed 1, failed 1\n")
