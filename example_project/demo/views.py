"""The example site's pages: the landing page with the button, and the user's installations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import QuerySet
from django.views.generic import ListView, TemplateView

from bitbucket_install.models import Installation

if TYPE_CHECKING:
    InstallationList = ListView[Installation]
else:
    InstallationList = ListView


class HomeView(TemplateView):
    template_name = "demo/home.html"


class InstallationListView(LoginRequiredMixin, InstallationList):
    """The signed-in user's installations, and only theirs."""

    template_name = "demo/installations.html"
    context_object_name = "installations"

    def get_queryset(self) -> QuerySet[Installation]:
        mine: QuerySet[Installation] = Installation.objects.filter(
            user=self.request.user
        ).order_by("-created_at", "-pk")
        return mine
