"""``manage.py demo``: set up the example project and serve it with the Bitbucket simulator.

It migrates, creates the cache table, creates the demo superuser if it is missing, prints
the URL to open and the login, then runs ``runserver 127.0.0.1:PORT`` in a child process
whose environment turns DEBUG and the simulator on and points every URL at that port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

MANAGE_PY = Path(__file__).resolve().parents[3] / "manage.py"


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
    )
    return environment


class Command(BaseCommand):
    help = (
        "Set up the example project (migrate, a superuser) and serve it on "
        "http://127.0.0.1:PORT/ with the Bitbucket simulator."
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
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.")
        self.stdout.write("Setting up the example project (migrate, superuser)...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        username, password, note = self.ensure_superuser()
        mode = getattr(settings, "DEMO_INSTALL_MODE", "descriptor")
        url = f"http://127.0.0.1:{port}/"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    self.style.SUCCESS(f"Open {url}"),
                    f"Log in as {username} / {password}{note}",
                    f"Admin: {url}admin/",
                    f"Install mode: {mode} (DEMO_INSTALL_MODE in example_project/.env)",
                    f"Bitbucket simulator: {url}bitbucket/simulator/authorize/",
                    "",
                ]
            )
        )
        if no_serve:
            return
        command = [sys.executable, str(MANAGE_PY), "runserver", f"127.0.0.1:{port}"]
        if noreload:
            command.append("--noreload")
        try:
            completed = subprocess.run(command, env=serve_environment(port), check=False)  # noqa: S603
        except KeyboardInterrupt:
            return
        if completed.returncode:
            raise CommandError(f"runserver stopped with exit status {completed.returncode}.")

    def ensure_superuser(self) -> tuple[str, str, str]:
        """The demo superuser's login; created if missing, never changed if present."""
        username: str = getattr(settings, "DEMO_ADMIN_USERNAME", "admin")
        password: str = getattr(settings, "DEMO_ADMIN_PASSWORD", "bitbucket-demo")
        user_model = get_user_model()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            user_model._default_manager.db_manager().create_superuser(username, "", password)
            return username, password, " (just created)"
        if user.check_password(password):
            return username, password, ""
        return username, password, " (this user exists with another password: use yours)"
