from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BitbucketInstallConfig(AppConfig):
    name = "bitbucket_install"
    verbose_name = _("Bitbucket installations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bitbucket_install import checks  # noqa: F401  (registers the checks)
