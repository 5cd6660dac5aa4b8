from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install import views
from bitbucket_install.conf import app_settings
from bitbucket_install.descriptor import DescriptorView
from bitbucket_install.landing import LandingView
from bitbucket_install.lifecycle import InstalledView, UninstalledView
from bitbucket_install.webhooks import WebhookView

app_name = "bitbucket_install"


# Exempt so that a disabled simulator is a 404 to a POST too; its view checks the token.
# Bitbucket's authorize page asks for no login on this site, and neither does its stand-in.
@login_not_required
@csrf_exempt
def simulator(request: HttpRequest) -> HttpResponseBase:
    """The development simulator's page. Its code is imported only here, once it is known
    to be on: a production site never loads it."""
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.views import simulator_view

    return simulator_view(request)


# The simulated Bitbucket's JWT grant and API, and its console: each imported only when on.
# The API and the grant answer calls signed with a token, as Bitbucket's do (no CSRF, no
# login); the console is a page of its own, CSRF-protected in its view.
@login_not_required
@csrf_exempt
def simulator_grant(request: HttpRequest) -> HttpResponseBase:
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.api import simulated_grant_view

    return simulated_grant_view(request)


@login_not_required
@csrf_exempt
def simulator_api(request: HttpRequest, api_path: str = "") -> HttpResponseBase:
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.api import simulated_api_view

    return simulated_api_view(request, api_path=api_path)


@login_not_required
@csrf_exempt
def simulator_console(request: HttpRequest) -> HttpResponseBase:
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.console import console_view

    return console_view(request)


@login_not_required
@csrf_exempt
def simulator_forge(request: HttpRequest) -> HttpResponseBase:
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.forge import forge_page_view

    return forge_page_view(request)


@login_not_required
def simulator_forge_jwks(request: HttpRequest) -> HttpResponseBase:
    if not app_settings.SIMULATOR:
        raise Http404("The Bitbucket simulator is off.")
    from bitbucket_install.simulator.forge import jwks_view

    return jwks_view(request)


# Forge's lifecycle trigger posts here with a Forge Invocation Token, and no CSRF token or
# login. Imported when called: verifying the token needs the forge extra, which a project
# that has not set BITBUCKET_INSTALL_FORGE_APP_ID may not have (a 404 then).
@login_not_required
@csrf_exempt
@transaction.non_atomic_requests
def forge_lifecycle(request: HttpRequest) -> HttpResponseBase:
    if app_settings.FORGE_APP_ID is None:
        raise Http404("No Forge app is configured.")
    from bitbucket_install.forge.lifecycle import forge_lifecycle_view

    return forge_lifecycle_view(request)


urlpatterns = [
    path("install/", views.StartView.as_view(), name="start"),
    path("callback/", views.CallbackView.as_view(), name="callback"),
    # The redirect_uri of a flow started here: its last segment is the flow's id.
    path("callback/<str:flow_id>/", views.CallbackView.as_view(), name="callback_flow"),
    path("result/", views.ResultView.as_view(), name="result"),
    # Where the descriptor's postInstallRedirect sends installs begun on Bitbucket's side.
    path("landing/", LandingView.as_view(), name="landing"),
    path("atlassian-connect.json", DescriptorView.as_view(), name="descriptor"),
    path("installed", InstalledView.as_view(), name="installed"),
    path("uninstalled", UninstalledView.as_view(), name="uninstalled"),
    path("webhook", WebhookView.as_view(), name="webhook"),
    path("forge/lifecycle", forge_lifecycle, name="forge_lifecycle"),
    path("simulator/authorize/", simulator, name="simulator"),
    path("simulator/console/", simulator_console, name="simulator_console"),
    path("simulator/forge/", simulator_forge, name="simulator_forge"),
    path("simulator/forge/jwks.json", simulator_forge_jwks, name="simulator_forge_jwks"),
    path("simulator/site/oauth2/access_token", simulator_grant, name="simulator_grant"),
    # One name, two patterns: reversed without arguments it is the API base (baseApiUrl).
    path("simulator/api/", simulator_api, name="simulator_api"),
    path("simulator/api/<path:api_path>", simulator_api, name="simulator_api"),
]
