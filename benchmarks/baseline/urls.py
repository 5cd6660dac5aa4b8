"""The example project's URLs plus the hand-written views under ``/baseline/``."""

from __future__ import annotations

from django.urls import path

from benchmarks.baseline import views
from example_project.urls import urlpatterns as example_urlpatterns

urlpatterns = [
    path("baseline/callback/", views.callback, name="baseline-callback"),
    path("baseline/bound/", views.bound_callback, name="baseline-bound"),
    path("baseline/connect-view/", views.connect_view, name="baseline-connect-view"),
    path("baseline/open-view/", views.open_view, name="baseline-open-view"),
    path("baseline/bare-view/", views.bare_view, name="baseline-bare-view"),
    path("baseline/webhook", views.webhook, name="baseline-webhook"),
    *example_urlpatterns,
]
