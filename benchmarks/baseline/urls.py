"""The example project's URLs plus the hand-written view at ``/baseline/callback/``."""

from __future__ import annotations

from django.urls import path

from benchmarks.baseline import views
from example_project.urls import urlpatterns as example_urlpatterns

urlpatterns = [
    path("baseline/callback/", views.callback, name="baseline-callback"),
    *example_urlpatterns,
]
