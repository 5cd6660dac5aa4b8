"""The example project's URLs plus the hand-written views under ``/baseline/``."""

from __future__ import annotations

from django.urls import path

from benchmarks.baseline import views
from example_project.urls import urlpatterns as example_urlpatterns

urlpatterns = [
    path("baseline/callback/", views.callback, name="baseline-callback"),
    path("baseline/bound/", views.bound_callback, name="baseline-bound"),
    *example_urlpatterns,
]
