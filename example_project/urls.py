"""URLs of the example project: the site's pages (home, installations, the API page, the
webhooks received), the admin and the app under /bitbucket/."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from example_project.demo import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("installations/", views.InstallationListView.as_view(), name="installations"),
    path("api/", views.APIView.as_view(), name="api"),
    path("webhooks/", views.WebhookListView.as_view(), name="webhooks"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("bitbucket/", include("bitbucket_install.urls")),
]
