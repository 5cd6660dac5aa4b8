from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The example site's own app: pages, signal receivers and the ``demo`` command."""

    name = "example_project.demo"
    label = "demo"
    verbose_name = "Example site"

    def ready(self) -> None:
        from example_project.demo import receivers  # noqa: F401 (connects the receivers)
