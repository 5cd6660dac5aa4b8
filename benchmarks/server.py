"""Serve the example project with gunicorn for benchmarks and load runs.

Usage::

    from benchmarks.server import SHARED_SECRET, serve_example_project

    with serve_example_project("postgres://postgres@127.0.0.1:5432/bench", workers=4) as url:
        ...  # url is "http://127.0.0.1:<port>", the site answers at url + "/"

What the served site is: ``example_project.settings`` with ``DEBUG`` off, the database you
pass (``migrate`` runs first), ``ALLOWED_HOSTS = ["127.0.0.1"]``, a registered app
(``BITBUCKET_INSTALL_ADDON_KEY = ADDON_KEY``, install links with ``addon_key``) whose
app-level shared secret is ``SHARED_SECRET`` (so a client can sign redirect JWTs), base URL
``http://127.0.0.1:<port>`` (the app under ``/bitbucket/``), no simulator, a local-memory
cache. A developer's ``example_project/.env`` is ignored: only what is listed here counts.

gunicorn runs in a process group of its own on a free port of 127.0.0.1, with ``workers``
sync workers, or gthread workers when ``threads`` > 1. Its output (and the app's one log
line per install outcome) goes to ``log_path`` (a temporary file by default, removed at the
end), never to a pipe nobody reads. Leaving the ``with`` block stops the whole process group
(TERM, then KILL after a grace period).

Importing this module has no side effect: it neither configures Django nor starts anything.
``run_manage`` runs other management commands (``createsuperuser``, ``shell -c ...``) in
the same environment, e.g. to create the users a load run logs in as.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = REPO_ROOT / "example_project" / "manage.py"

ADDON_KEY = "bench-app"
"""The registered app's key (``BITBUCKET_INSTALL_ADDON_KEY`` of the served site)."""

SHARED_SECRET = "bench-app-level-shared-secret-0123456789"
"""The app-level shared secret (``BITBUCKET_INSTALL_SHARED_SECRET`` of the served site)."""

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class ServerError(RuntimeError):
    """gunicorn did not start, or a management command failed; the message has the log."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def site_environment(
    database_url: str, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment the example project reads its settings from (see the module doc)."""
    environment = dict(os.environ)
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            # os.devnull is not a regular file: the settings skip reading a .env file.
            "ENV_FILE": os.devnull,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            "DEBUG": "false",
            # Plain HTTP on loopback: no redirect to HTTPS (the example's default off DEBUG).
            "SECURE_SSL_REDIRECT": "false",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database_url,
            "CACHE_URL": "locmemcache://",
            "PORT": str(port),
            "ALLOWED_HOSTS": "127.0.0.1",
            "BITBUCKET_INSTALL_BASE_URL": f"http://127.0.0.1:{port}",
            "DEMO_INSTALL_MODE": "registered",
            "BITBUCKET_INSTALL_ADDON_KEY": ADDON_KEY,
            "BITBUCKET_INSTALL_SHARED_SECRET": SHARED_SECRET,
            "BITBUCKET_INSTALL_SIMULATOR": "false",
            "BITBUCKET_INSTALL_AUTHORIZE_URL": "",
            "BITBUCKET_INSTALL_REDIRECT_URI": "",
            "BITBUCKET_INSTALL_DESCRIPTOR_URI": "",
            "BITBUCKET_INSTALL_SUCCESS_URL": "",
            "BITBUCKET_INSTALL_FAILURE_URL": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra:
        environment.update(extra)
    return environment


def run_manage(
    database_url: str, *args: str, port: int = 8000, extra_env: Mapping[str, str] | None = None
) -> str:
    """Run ``manage.py <args>`` of the example project as served; return its output."""
    done = subprocess.run(
        [sys.executable, str(MANAGE_PY), *args],
        env=site_environment(database_url, port, extra_env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(
            f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn's process group: TERM, then KILL if it lingers."""
    if process.poll() is not None:
        return
    for sent, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sent)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def serve_example_project(
    database_url: str,
    *,
    workers: int = 4,
    worker_class: Literal["sync", "gthread"] | None = None,
    threads: int = 1,
    migrate: bool = True,
    log_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Serve the example project with gunicorn; yield its base URL ``http://127.0.0.1:<port>``.

    ``database_url``: a django-environ URL; the database must exist (``migrate`` fills it).
    ``workers``: gunicorn worker processes. ``worker_class``: ``"sync"`` or ``"gthread"``,
    by default gthread when ``threads`` > 1, else sync. ``log_path``: where gunicorn's
    output goes (kept); by default a temporary file removed afterwards. ``extra_env``:
    more environment variables for the site (they win over the defaults above).
    Raises ``ServerError`` with the log's tail if gunicorn does not answer within 60 s.
    """
    if workers < 1 or threads < 1:
        raise ValueError("workers and threads must be at least 1")
    kind = worker_class or ("gthread" if threads > 1 else "sync")
    port = free_port()
    if migrate:
        run_manage(database_url, "migrate", "--noinput", port=port, extra_env=extra_env)
    with contextlib.ExitStack() as cleanup:
        if log_path is None:
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
            log_path = Path(directory) / "gunicorn.log"
        log = cleanup.enter_context(log_path.open("ab"))
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "django.core.wsgi:get_wsgi_application()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            kind,
            "--threads",
            str(threads),
            "--graceful-timeout",
            "5",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ]
        process = subprocess.Popen(
            command,
            env=site_environment(database_url, port, extra_env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one below
        )
        cleanup.callback(_stop, process)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(base_url + "/"):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise ServerError(
                    f"gunicorn did not start on {base_url} (exit {process.poll()}):\n"
                    + _tail(log_path)
                )
            time.sleep(0.2)
        yield base_url
