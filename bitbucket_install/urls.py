from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install import views
from bitbucket_install.conf import app_settings
from bitbucket_install.descriptor import DescriptorView
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


urlpatterns = [
    path("install/", views.StartView.as_view(), name="start"),
    path("callback/", views.CallbackView.as_view(), name="callback"),
    # The redirect_uri of a flow started here: its last segment is the flow's id.
    path("callback/<str:flow_id>/", views.CallbackView.as_view(), name="callback_flow"),
    path("result/", views.ResultView.as_view(), name="result"),
    path("atlassian-connect.json", DescriptorView.as_view(), name="descriptor"),
    path("installed", InstalledView.as_view(), name="installed"),
    path("uninstalled", UninstalledView.as_view(), name="uninstalled"),
    path("webhook", WebhookView.as_view(), name="webhook"),
    path("simulator/authorize/", simulator, name="simulator"),
]
