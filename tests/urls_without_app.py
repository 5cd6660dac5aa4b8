"""A project URLconf that forgot ``include("bitbucket_install.urls")`` (system check E022)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
