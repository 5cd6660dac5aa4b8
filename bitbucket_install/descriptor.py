"""The app descriptor, ``atlassian-connect.json`` built from settings."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View

from bitbucket_install.conf import DEFAULT_DESCRIPTOR, app_settings

# Keys the descriptor is built from; any other key of the setting is passed through.
BUILT_KEYS = {"key", "name", "description", "vendor", "scopes", "contexts", "modules"}
# Keys the app alone fills in: its URLs and verification depend on them.
APP_OWNED_KEYS = {"baseUrl", "authentication", "lifecycle"}
# The ``postInstallRedirect`` module of ``BITBUCKET_INSTALL_POST_INSTALL_REDIRECT``: its key,
# and the context parameters Bitbucket fills in (those of the account the app was
# installed on, the workspace).
POST_INSTALL_REDIRECT_KEY = "bitbucket-install-landing"
POST_INSTALL_REDIRECT_QUERY = (
    "?user_uuid={user_uuid}&user_username={user_username}&user_type={user_type}"
)
# The descriptor's keys that link it to the Forge app, and the settings that give them.
FORGE_KEYS = {"forgeAppId": "FORGE_APP_ID", "forgeAppLink": "FORGE_APP_LINK"}


def build_descriptor() -> dict[str, Any]:
    configured = app_settings.DESCRIPTOR
    descriptor: dict[str, Any] = {
        "key": configured["key"],
        "name": configured["name"],
        "description": configured.get("description", ""),
        "baseUrl": app_settings.BASE_URL,
        "authentication": {"type": "jwt"},
        "lifecycle": {
            "installed": app_settings.relative_to_base(reverse("bitbucket_install:installed")),
            "uninstalled": app_settings.relative_to_base(reverse("bitbucket_install:uninstalled")),
        },
        # Values of the wrong type (system check E014/E015 reports them) give the defaults.
        "scopes": _list_or_default(configured, "scopes"),
        "contexts": _list_or_default(configured, "contexts"),
        "modules": _modules(configured["modules"]),
    }
    if configured.get("vendor"):
        descriptor["vendor"] = configured["vendor"]
    for name, value in configured.items():
        if name not in BUILT_KEYS | APP_OWNED_KEYS:
            descriptor[name] = value
    descriptor.update(forge_keys(configured))
    return descriptor


def forge_keys(configured: dict[str, Any]) -> dict[str, str]:
    """``forgeAppId`` / ``forgeAppLink`` from ``BITBUCKET_INSTALL_FORGE_APP_ID`` /
    ``_LINK``, each only where the project's ``DESCRIPTOR`` does not already set it: a key
    the project wrote is never rewritten (check W013 says the setting is then unused)."""
    found = {}
    for key, value in FORGE_KEYS.items():
        setting = getattr(app_settings, value)
        if setting is not None and key not in configured:
            found[key] = setting
    return found


def _modules(configured: object) -> dict[str, Any]:
    """The project's modules (a copy: the setting is never changed), with a webhook module
    per event of ``BITBUCKET_INSTALL_WEBHOOKS`` after the project's own webhooks, and the
    landing's ``postInstallRedirect`` unless the project has one of its own."""
    modules = dict(configured) if isinstance(configured, dict) else {}
    if app_settings.POST_INSTALL_REDIRECT and "postInstallRedirect" not in modules:
        modules["postInstallRedirect"] = post_install_redirect()
    events = app_settings.WEBHOOKS
    own = modules.get("webhooks", [])
    # Nothing asked for, or the project's webhooks are no list (check E024 says so):
    # the project's modules are left exactly as they are.
    if not events or not isinstance(own, list | tuple):
        return modules
    url = app_settings.relative_to_base(reverse("bitbucket_install:webhook"))
    webhooks = list(own)
    for event in events:
        entry = {"event": event, "url": url}
        if entry not in webhooks:
            webhooks.append(entry)
    modules["webhooks"] = webhooks
    return modules


def post_install_redirect() -> dict[str, str]:
    """The module that sends installs begun on Bitbucket's side to the ``landing`` view."""
    path = app_settings.relative_to_base(reverse("bitbucket_install:landing"))
    return {"key": POST_INSTALL_REDIRECT_KEY, "url": path + POST_INSTALL_REDIRECT_QUERY}


def _list_or_default(configured: dict[str, Any], name: str) -> list[Any]:
    value = configured[name]
    return list(value if isinstance(value, list | tuple) else DEFAULT_DESCRIPTOR[name])


# Bitbucket fetches it without any login.
@method_decorator(login_not_required, name="dispatch")
class DescriptorView(View):
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> JsonResponse:
        response = JsonResponse(build_descriptor(), json_dumps_params={"indent": 2})
        response["Access-Control-Allow-Origin"] = "*"
        return response
