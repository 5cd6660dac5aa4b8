"""``manage.py demo``: set up the example project and serve it with the Bitbucket simulator.

For development only, and only with DEBUG on (``make demo`` turns it on). It migrates,
creates the cache table, creates the demo superuser if it is missing (with a password
generated for this checkout unless DEMO_ADMIN_PASSWORD gives one), runs the system checks
of the server it is about to start, prints the URL to open and the login, then runs
``runserver 127.0.0.1:PORT`` in a child process whose environment turns DEBUG and the
simulator on and points every URL at that port.

The demo serves plain HTTP on 127.0.0.1 with the simulator on, so checks W001-W003 warn
about exactly that every time. The command says so in one line instead of letting the
server print them as if something were wrong; any other finding is printed in full, and
an error stops the demo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from example_project.local_secrets import local_secret

EXAMPLE_DIR = Path(__file__).resolve().parents[3]
MANAGE_PY = EXAMPLE_DIR / "manage.py"
# The checks' warnings about any demo: it serves plain HTTP on 127.0.0.1 (W001 for the
# descriptor URI, W002 for the base URL), with the development simulator on (W003).
PLAIN_HTTP = {"bitbucket_install.W001", "bitbucket_install.W002"}
SIMULATOR_ON = "bitbucket_install.W003"
EXPECTED_CHECKS = {*PLAIN_HTTP, SIMULATOR_ON}
CHECK_ID = re.compile(r"^\?: \(([\w.]+)\)", re.MULTILINE)


def serve_environment(port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``base`` (default: ours) with the demo's values forced.

    The URL variables are emptied so the settings derive them from PORT (an empty value
    also beats ``.env``, which only fills in variables that are missing)."""
    environment = dict(os.environ if base is None else base)
    environment.update(
        PORT=str(port),
        DEBUG="on",
        BITBUCKET_INSTALL_SIMULATOR="on",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        BITBUCKET_INSTALL_BASE_URL="",
        BITBUCKET_INSTALL_AUTHORIZE_URL="",
        BITBUCKET_INSTALL_DESCRIPTOR_URI="",
        BITBUCKET_INSTALL_REDIRECT_URI="",
        # The demo prints its own "development only" line; Django's would repeat it.
        DJANGO_RUNSERVER_HIDE_WARNING="true",
    )
    return environment


def summarize_checks(report: str) -> str | None:
    """One line for a check report holding only the demo's expected warnings (or
    nothing); None when it holds anything else, which must then be shown whole."""
    found = set(CHECK_ID.findall(report))
    if not found <= EXPECTED_CHECKS:
        return None
    if not found:
        return "System checks: no issues."
    why = []
    if found & PLAIN_HTTP:
        why.append("plain HTTP on 127.0.0.1")
    if SIMULATOR_ON in found:
        why.append("the development simulator on")
    ids = ", ".join(sorted(check_id.rpartition(".")[2] for check_id in found))
    return f"System checks: {' and '.join(why)} ({ids}), as expected for the demo."


class Command(BaseCommand):
    help = (
        "Set up the example project (migrate, a superuser) and serve it on "
        "http://127.0.0.1:PORT/ with the Bitbucket simulator. Development only."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=getattr(settings, "PORT", 8000),
            help="Port to serve on (default: PORT, else 8000).",
        )
        parser.add_argument(
            "--noreload", action="store_true", help="Do not restart the server on code changes."
        )
        parser.add_argument(
            "--no-serve", action="store_true", help="Only set up and print; do not serve."
        )

    def handle(
        self, *args: Any, port: int, noreload: bool, no_serve: bool, **options: Any
    ) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "The demo is for development only and runs only with DEBUG on: "
                "use `make demo`, or set DEBUG=on."
            )
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.")
        self.stdout.write("Setting up the example project (database, superuser)...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        username, password, note = self.ensure_superuser()
        mode = getattr(settings, "DEMO_INSTALL_MODE", "descriptor")
        url = f"http://127.0.0.1:{port}/"
        if not no_serve:
            self.check_server(port)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    self.style.SUCCESS(f"Open {url}"),
                    f"Log in as {username} / {password}{note}",
                    f"Admin: {url}admin/",
                    f"Install mode: {mode} (DEMO_INSTALL_MODE; see example_project/.env.example)",
                    f"Bitbucket simulator: {url}bitbucket/simulator/authorize/",
                    "The example project is for development only: never deploy it.",
                    "",
                ]
            )
        )
        if no_serve:
            return
        command = [
            sys.executable,
            str(MANAGE_PY),
            "runserver",
            f"127.0.0.1:{port}",
            "--skip-checks",  # run just before, by check_server
        ]
        if noreload:
            command.append("--noreload")
        try:
            completed = subprocess.run(command, env=serve_environment(port), check=False)  # noqa: S603
        except KeyboardInterrupt:
            return
        if completed.returncode:
            raise CommandError(f"runserver stopped with exit status {completed.returncode}.")

    def check_server(self, port: int) -> None:
        """The system checks of the server about to start, with its environment."""
        completed = subprocess.run(  # noqa: S603
            [sys.executable, str(MANAGE_PY), "check"],
            env=serve_environment(port),
            capture_output=True,
            text=True,
            check=False,
        )
        report = completed.stdout + completed.stderr
        summary = summarize_checks(report) if completed.returncode == 0 else None
        if summary is None:
            self.stdout.write(report)
        else:
            self.stdout.write(summary)
        if completed.returncode:
            raise CommandError("The system checks found errors: the demo cannot start.")

    def ensure_superuser(self) -> tuple[str, str, str]:
        """The demo superuser's login; created if missing, never changed if present."""
        username: str = getattr(settings, "DEMO_ADMIN_USERNAME", "admin")
        password: str = getattr(settings, "DEMO_ADMIN_PASSWORD", "") or local_secret(
            Path(getattr(settings, "DEV_STATE_DIR", EXAMPLE_DIR / ".dev")),
            "admin_password",
            nbytes=12,
        )
        user_model = get_user_model()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            user_model._default_manager.db_manager().create_superuser(username, "", password)
            return username, password, " (just created)"
        if user.check_password(password):
            return username, password, ""
        return username, password, " (this user exists with another password: use yours)"
