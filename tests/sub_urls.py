"""The site of ``tests/urls.py`` under a path prefix, as behind a base URL such as
``https://app.example.com/sub/``."""

from django.urls import include, path

urlpatterns = [
    path("sub/bitbucket/", include("bitbucket_install.urls")),
]
