from django.urls import path

from bitbucket_install import simulator, views
from bitbucket_install.descriptor import DescriptorView
from bitbucket_install.lifecycle import InstalledView, UninstalledView

app_name = "bitbucket_install"

urlpatterns = [
    path("install/", views.StartView.as_view(), name="start"),
    path("callback/", views.CallbackView.as_view(), name="callback"),
    # The redirect_uri of a flow started here: its last segment is the flow's id.
    path("callback/<str:flow_id>/", views.CallbackView.as_view(), name="callback_flow"),
    path("result/", views.ResultView.as_view(), name="result"),
    path("atlassian-connect.json", DescriptorView.as_view(), name="descriptor"),
    path("installed", InstalledView.as_view(), name="installed"),
    path("uninstalled", UninstalledView.as_view(), name="uninstalled"),
    path("simulator/authorize/", simulator.SimulatorView.as_view(), name="simulator"),
]
