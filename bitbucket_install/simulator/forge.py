"""The simulator's Forge side: a signing key and its JWKS, and a page that installs (or
upgrades) the project's Forge app on a simulated workspace by posting the lifecycle event
to this site's ``forge_lifecycle`` view, as Forge's ``trigger`` module does.

Each event carries a Forge Invocation Token signed with the simulator's own RS256 key
(kept in Django's default cache, so every process of the site signs with the same key),
whose JWKS the simulator serves; with the simulator on and no
``BITBUCKET_INSTALL_FORGE_JWKS_URL``, the app verifies tokens against it. The token says
what Forge's do: ``iss`` ``forge/invocation-token``, ``aud`` and ``app.id`` the app ARI
(``BITBUCKET_INSTALL_FORGE_APP_ID``), ``app.installationId`` and
``app.installation.contexts`` with the Bitbucket workspace (its UUID without braces), a
25-second lifetime, a ``jti``; the event goes with ``x-b3-traceid`` / ``x-b3-spanid`` and an
app system token in ``x-forge-oauth-system`` (a JWT with an ``exp``, as Forge's are). Events
go only to this site's own lifecycle view, under its base URL.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect

from bitbucket_install.conf import app_settings
from bitbucket_install.simulator import state, transport
from bitbucket_install.simulator.base import Workspace, is_under_base
from bitbucket_install.simulator.transport import TRANSPORT_ERRORS
from bitbucket_install.simulator.views import SimulatorPage
from bitbucket_install.templating import render

KEY_ENTRY = state.CACHE_PREFIX + "forge_signing_key"
INSTALLS = state.CACHE_PREFIX + "forge_installations"
INSTALLED = "avi:forge:installed:app"
UPGRADED = "avi:forge:upgraded:app"
ISSUER = "forge/invocation-token"
TOKEN_LIFETIME = 25  # seconds: what Forge gives the UI timeout
SYSTEM_TOKEN_LIFETIME = 4 * 60 * 60
TEMPLATE = "bitbucket_install/simulator/forge.html"
MAX_LISTED = 50


class ForgeRefusal(Exception):
    """A request of the Forge page the simulator will not carry out; the message says why."""


def signing_key() -> rsa.RSAPrivateKey:
    """The simulator's RS256 key, made once and shared through the cache."""
    pem = cache.get(KEY_ENTRY)
    if not isinstance(pem, str):
        made = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fresh = made.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        # Another process may have made one first: theirs is kept, and used here too.
        cache.add(KEY_ENTRY, fresh, None)
        pem = cache.get(KEY_ENTRY, fresh)
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):  # only this module writes the entry
        raise TypeError("the simulator's Forge key is not an RSA key")
    return key


def key_id(key: rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "simulator-" + hashlib.sha256(public).hexdigest()[:16]


def jwks() -> dict[str, Any]:
    key = signing_key()
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": key_id(key), "use": "sig", "alg": "RS256"}]}


def jwks_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse(jwks())


def api_base_url() -> str:
    return app_settings.absolute_url(reverse("bitbucket_install:simulator_api")).rstrip("/")


def invocation_claims(
    app_id: str, installation_id: str, workspace: Workspace, now: float
) -> dict[str, Any]:
    bitbucket = {
        "name": "bitbucket",
        "apiBaseUrl": api_base_url(),
        "workspaceId": workspace.uuid.strip("{}"),
    }
    environment = f"ari:cloud:ecosystem::environment/{app_id.rsplit('/', 1)[-1]}/development"
    return {
        "iss": ISSUER,
        "aud": app_id,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + TOKEN_LIFETIME,
        "jti": str(uuid.uuid4()),
        "app": {
            "id": app_id,
            "installationId": installation_id,
            "installation": {"id": installation_id, "contexts": [bitbucket]},
            "apiBaseUrl": api_base_url(),
            "appVersion": "1.0.0",
            "environment": {"type": "DEVELOPMENT", "id": environment},
            "module": {"type": "core:endpoint", "key": "lifecycle"},
        },
    }


def sign(claims: dict[str, Any]) -> str:
    key = signing_key()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id(key)})


def lifecycle_url() -> str:
    """Where events may go: this site's ``forge_lifecycle`` view, under its base URL."""
    base_url = app_settings.BASE_URL
    url = app_settings.absolute_url(reverse("bitbucket_install:forge_lifecycle"))
    if base_url is None or not is_under_base(url, base_url):
        raise ForgeRefusal(
            "The Forge lifecycle view is not under BITBUCKET_INSTALL_BASE_URL: the simulator "
            "sends events nowhere else."
        )
    return url


def installations() -> list[dict[str, str]]:
    listed = cache.get(INSTALLS)
    return [item for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []


def _installation_of(workspace: Workspace, app_id: str) -> dict[str, str]:
    """The simulated Forge installation of the app on ``workspace``: the one made before,
    else a new one (Forge gives a reinstall a new id; the page upgrades, it does not
    reinstall)."""
    for item in installations():
        if item.get("workspace") == workspace.name and item.get("app_id") == app_id:
            return item
    made = {
        "id": f"ari:cloud:ecosystem::installation/{uuid.uuid4()}",
        "workspace": workspace.name,
        "app_id": app_id,
    }
    cache.set(INSTALLS, [made, *installations()][:MAX_LISTED], None)
    return made


def send_event(data: dict[str, str]) -> dict[str, Any]:
    """Post the lifecycle event ``data`` asks for; what was sent and how the site answered."""
    app_id = app_settings.FORGE_APP_ID
    if app_id is None:
        raise ForgeRefusal("Set BITBUCKET_INSTALL_FORGE_APP_ID to the Forge app's ARI first.")
    event_type = INSTALLED if data.get("action") == "install" else UPGRADED
    workspace_name = data.get("workspace", "").strip()
    if not workspace_name:
        raise ForgeRefusal("Name the workspace to install the Forge app on.")
    workspace = Workspace.named(workspace_name)
    url = lifecycle_url()
    installation = _installation_of(workspace, app_id)
    now = time.time()
    token = sign(invocation_claims(app_id, installation["id"], workspace, now))
    system_token = sign(
        {
            "sub": installation["id"],
            "iat": int(now),
            "exp": int(now) + SYSTEM_TOKEN_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
    )
    body = {
        "eventType": event_type,
        "id": installation["id"].rsplit("/", 1)[-1],
        "app": {"id": app_id, "version": "1.0.0" if event_type == INSTALLED else "2.0.0"},
    }
    headers = {
        "Authorization": "Bearer " + token,
        "Content-Type": "application/json",
        "x-b3-traceid": secrets.token_hex(8),
        "x-b3-spanid": secrets.token_hex(8),
        "x-forge-oauth-system": system_token,
    }
    sent = {"event": event_type, "installation_id": installation["id"], "url": url}
    try:
        status, _answer = transport.send("POST", url, json.dumps(body).encode(), headers)
    except TRANSPORT_ERRORS:
        return {**sent, "status": None}
    return {**sent, "status": status, "ok": 200 <= status < 300}


class ForgePageView(SimulatorPage):
    """The Forge page. ``bitbucket_install.urls`` routes to it only while the simulator is
    on (so only with ``DEBUG``)."""

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> HttpResponse:
        data = {key: request.POST.get(key, "") for key in request.POST}
        try:
            if data.get("action") not in ("install", "upgrade"):
                raise ForgeRefusal("Unknown action.")
            return self.page(request, event=send_event(data))
        except ForgeRefusal as refusal:
            return self.page(request, status=400, refusal=str(refusal))

    def page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        context.update(
            app_id=app_settings.FORGE_APP_ID,
            installations=installations(),
            workspaces=[item.workspace for item in state.installations()],
            action=reverse("bitbucket_install:simulator_forge"),
        )
        return render(request, TEMPLATE, context, status=status)


forge_page_view = ForgePageView.as_view()
