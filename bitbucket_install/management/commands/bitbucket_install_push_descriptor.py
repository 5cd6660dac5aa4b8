"""``manage.py bitbucket_install_push_descriptor``: ask Bitbucket to read the descriptor
again for every installation (``PUT /2.0/addon`` with ``{}``), so that each picks up
``forgeAppId`` and ``forgeAppLink``; the outcome of each is recorded on its row.

Uninstalled installations are skipped. ``--only-failed`` pushes only to those whose last
push failed or that were never pushed to: run again after a failure or an interruption,
it resumes where the last run stopped. ``--enqueue`` hands one task per installation to
the project's tasks framework instead, whose workers record the outcomes the same way;
``--dry-run`` changes and sends nothing, and says what the recorded outcomes are. The exit
status is 1 when any push of this run failed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from bitbucket_install import push
from bitbucket_install.models import Installation, InstallationQuerySet

DEFAULT_CONCURRENCY = 4
# Bitbucket counts its rate limits per installation, but a vendor's own network and
# workers are shared: beyond this, more threads only wait on each other.
MAX_CONCURRENCY = 32
BAR_WIDTH = 30


class Progress:
    """The tally of this run, and its bar on a terminal: one line, rewritten in place
    with a carriage return (no dependency). Called by ``push_all`` as each outcome is
    recorded, in the command's own thread."""

    def __init__(self, total: int, out: OutputWrapper, bar: bool) -> None:
        self.total = total
        self.pushed = 0
        self.failed = 0
        self._out = out
        self._bar = bar
        self.show()

    @property
    def done(self) -> int:
        return self.pushed + self.failed

    def __call__(self, installation: Installation, error: str | None) -> None:
        if error is None:
            self.pushed += 1
        else:
            self.failed += 1
        self.show()

    def show(self) -> None:
        if not self._bar:
            return
        # An installation made during the run may be pushed too: never past the end.
        filled = min(BAR_WIDTH * self.done // self.total, BAR_WIDTH) if self.total else BAR_WIDTH
        self._out.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total}"
            f"  pushed {self.pushed}, failed {self.failed}",
            ending="",
        )
        self._out.flush()

    def finish(self) -> None:
        if self._bar:
            self._out.write("")


def recorded_line(recorded: push.Recorded) -> str:
    return (
        f"Recorded outcomes of the {recorded.total} installed installations: "
        f"{recorded.pushed} pushed, {recorded.failed} failed, {recorded.never} never pushed."
    )


class Command(BaseCommand):
    help = (
        "Push the descriptor to every installation (PUT /2.0/addon), recording each "
        "outcome, e.g. after setting BITBUCKET_INSTALL_FORGE_APP_ID and _LINK."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Send and change nothing: say how many would be pushed to, and what "
            "the recorded outcomes are.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=DEFAULT_CONCURRENCY,
            help=f"Pushes at a time, 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY}).",
        )
        parser.add_argument(
            "--only-failed",
            action="store_true",
            help="Push only to installations whose last push failed or that were never "
            "pushed to (resumes an interrupted run).",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue one task per installation on the project's tasks framework "
            "instead of pushing here; run the command with --dry-run later to see the "
            "recorded outcomes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency: int = options["concurrency"]
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CommandError(f"--concurrency must be 1 to {MAX_CONCURRENCY}.")
        rows = push.pending(only_failed=options["only_failed"])
        which = "whose last push failed or never happened" if options["only_failed"] else ""
        total = rows.count()
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: would push the descriptor to {total} installed installations"
                + (f" {which}" if which else "")
                + "; nothing sent, nothing changed."
            )
            self.stdout.write(recorded_line(push.recorded()))
            return
        if options["enqueue"]:
            self._enqueue(rows)
            return
        # A bar is for a person watching a terminal; a log or a pipe gets one summary line.
        progress = Progress(total, self.stdout, bar=self.stdout.isatty())
        try:
            push.push_all(push.pages(rows), concurrency=concurrency, on_outcome=progress)
        finally:
            progress.finish()
        self.stdout.write(
            f"Pushed the descriptor to {progress.pushed} of {total} installations; "
            f"{progress.failed} failed."
        )
        if progress.failed:
            raise CommandError(
                f"{progress.failed} pushes failed (their errors are recorded, and shown in "
                "the admin): run again with --only-failed to push only to those."
            )

    def _enqueue(self, rows: InstallationQuerySet) -> None:
        from bitbucket_install.exceptions import TaskFrameworkMissing
        from bitbucket_install.task_framework import enqueue

        try:
            from bitbucket_install.tasks import push_installation_descriptor
        except TaskFrameworkMissing as error:
            raise CommandError(str(error)) from None

        enqueued = 0
        for installation in push.pages(rows):
            enqueue(push_installation_descriptor, installation.pk)
            enqueued += 1
        self.stdout.write(
            f"Enqueued {enqueued} tasks, one per installation; their workers record the "
            "outcomes (run again with --dry-run to see them)."
        )
        self.stdout.write(recorded_line(push.recorded()))
