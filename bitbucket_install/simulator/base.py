"""The simulator's pure part: the install link's parameters, the checks of a descriptor and
of every URL the simulator would connect or redirect to, workspaces and their repositories,
the lifecycle payload and the tokens it signs, and the shapes of its simulated API's answers
(objects, pages, errors, application-property addresses) and webhook deliveries.

No Django here, and no import of the simulator's other modules: they import this one.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from bitbucket_install.authorize import ADDON_KEY_PATTERN, _split, is_loopback, is_under
from bitbucket_install.identifiers import (
    CLIENT_KEY_PATTERN,
    clean_display_text,
    origin,
)
from bitbucket_install.tokens import encode_token

KNOWN_ERRORS = ("access_denied", "invalid_descriptor", "invalid_request", "server_error")
UNKNOWN_ERROR = "simulated_unknown_error"
TRIGGERABLE_ERRORS = (*KNOWN_ERRORS, UNKNOWN_ERROR)
LINK_PARAMETER_NAMES = ("addon_key", "descriptor_uri", "redirect_uri")
DEFAULT_WORKSPACE = "Demo workspace"
MAX_WORKSPACE_NAME = 100
BITBUCKET_BASE_URL = "https://bitbucket.org"
BITBUCKET_API_URL = "https://api.bitbucket.org"
WORKSPACE_NAMESPACE = uuid.UUID("6f1c8a3e-2b57-4d1e-9a0c-5b7e3d2f1a49")
SIMULATED_USER = {
    "uuid": "{" + str(uuid.uuid5(WORKSPACE_NAMESPACE, "user:simulated-user")) + "}",
    "type": "user",
    "display_name": "Simulated user",
    "nickname": "simulated-user",
}
# The repositories every simulated workspace has: enough to list, and to hang properties on.
REPOSITORY_SLUGS = ("website", "api-service")
# Bitbucket's 429, word for word: text/plain, and no Retry-After.
RATE_LIMIT_MESSAGE = "Rate limit for this resource has been exceeded"
# Application properties: Atlassian's rule for a property's (and an app key's) name.
PROPERTY_NAME_PATTERN = re.compile(r"[-_a-zA-Z0-9]{1,255}")
_SEGMENT = r"(?P<{}>[^/]+)"
_PROPERTY_TAIL = "/properties/" + _SEGMENT.format("app_key") + "/" + _SEGMENT.format("name")
_REPOSITORY = "/2.0/repositories/" + _SEGMENT.format("workspace") + "/" + _SEGMENT.format("repo")
PROPERTY_PATHS = (
    ("repository", re.compile(_REPOSITORY + _PROPERTY_TAIL)),
    ("commit", re.compile(_REPOSITORY + "/commit/" + _SEGMENT.format("commit") + _PROPERTY_TAIL)),
    (
        "pullrequest",
        re.compile(_REPOSITORY + "/pullrequests/(?P<pullrequest>[0-9]{1,10})" + _PROPERTY_TAIL),
    ),
    ("user", re.compile("/2.0/users/" + _SEGMENT.format("user") + _PROPERTY_TAIL)),
)
COMMIT_PATTERN = re.compile(r"[0-9a-fA-F]{7,40}")
# The ``user_type`` of a workspace in a ``postInstallRedirect`` URL. Atlassian's page lists
# "team" or "user" (from before workspaces); whether Bitbucket now says "workspace" is not
# documented. The simulator says "team".
WORKSPACE_USER_TYPE = "team"


class SimulatedError(Exception):
    """An answer of Bitbucket's error kind: ``code`` and ``description`` go back to the app.

    ``redirect_to`` is the vetted ``redirect_uri`` to send them to (None: show them on the
    simulator's own page, with ``status``).
    """

    def __init__(
        self,
        code: str,
        description: str,
        *,
        redirect_to: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
        self.redirect_to = redirect_to
        self.status = status


@dataclass(frozen=True)
class LinkParameters:
    """The install link's query as the simulator received it, each parameter checked as
    Bitbucket checks it (``bitbucket_install.authorize.InstallLink`` builds such links)."""

    addon_key: str | None
    descriptor_uri: str | None
    redirect_uri: str | None


@dataclass(frozen=True)
class Descriptor:
    """What the simulator needs of a valid descriptor."""

    key: str
    name: str
    description: str
    vendor_name: str
    base_url: str
    installed_path: str
    scopes: tuple[str, ...]
    # ``modules.postInstallRedirect.url``, absolute (under ``base_url``); "" if none.
    post_install_redirect: str = ""

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    @property
    def installed_url(self) -> str:
        return self.base_url.rstrip("/") + self.installed_path


@dataclass(frozen=True)
class Workspace:
    name: str
    slug: str
    uuid: str

    @classmethod
    def named(cls, name: str) -> Workspace:
        """The workspace called ``name`` (blank: the default); its UUID depends on it only.
        The name is display text typed by a person: what would hide or reorder it goes."""
        name = " ".join(clean_display_text(name).split())[:MAX_WORKSPACE_NAME]
        name = name or DEFAULT_WORKSPACE
        slug = "-".join(_ascii_words(name)) or "workspace"
        workspace_uuid = uuid.uuid5(WORKSPACE_NAMESPACE, "workspace:" + name.casefold())
        return cls(name=name, slug=slug, uuid="{" + str(workspace_uuid) + "}")

    def is_named(self, name: str) -> bool:
        """Does ``name`` (a path segment: the slug, or the UUID in braces) name it?"""
        return name == self.slug or name.lower() == self.uuid

    @property
    def api(self) -> dict[str, Any]:
        """The workspace as the API shows it."""
        return {"type": "workspace", "uuid": self.uuid, "name": self.name, "slug": self.slug}

    def repositories(self) -> list[dict[str, Any]]:
        """Its repositories, as ``GET /2.0/repositories/{workspace}`` lists them."""
        return [self._repository(slug) for slug in REPOSITORY_SLUGS]

    def repository(self, name: str) -> dict[str, Any] | None:
        """Its repository named by ``name`` (slug, or UUID in braces), or None."""
        for repository in self.repositories():
            if name == repository["slug"] or name.lower() == repository["uuid"]:
                return repository
        return None

    def _repository(self, slug: str) -> dict[str, Any]:
        repository_uuid = uuid.uuid5(WORKSPACE_NAMESPACE, f"repository:{self.uuid}/{slug}")
        return {
            "type": "repository",
            "uuid": "{" + str(repository_uuid) + "}",
            "name": slug,
            "slug": slug,
            "full_name": f"{self.slug}/{slug}",
            "is_private": True,
            "workspace": self.api,
        }

    @property
    def account(self) -> dict[str, Any]:
        """The workspace as a lifecycle payload's ``principal``."""
        return {
            "uuid": self.uuid,
            "type": "workspace",
            "display_name": self.name,
            "username": self.slug,
            "slug": self.slug,
        }


def _ascii_words(text: str) -> list[str]:
    cleaned = "".join(char if char.isascii() and char.isalnum() else " " for char in text)
    return cleaned.lower().split()


def _one_value(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name, [])
    if len(values) > 1:
        raise SimulatedError("invalid_request", f"The {name} parameter is repeated.")
    return values[0] if values and values[0] else None


def _is_plain_url(url: str) -> bool:
    return _split(url) is not None and "{" not in url and "}" not in url


def is_loopback_url(url: str) -> bool:
    """Is ``url`` an absolute http(s) URL on 127.0.0.0/8, ::1 or localhost?"""
    parts = _split(url)
    return parts is not None and is_loopback(parts)


def _secure_enough(url: str) -> bool:
    """HTTPS, or (the simulator's one deviation) plain HTTP on a loopback host."""
    parts = _split(url)
    return parts is not None and (parts.scheme == "https" or is_loopback(parts))


def parse_link(query: Mapping[str, Sequence[str]]) -> LinkParameters:
    """The install link in ``query`` (name -> values), or ``SimulatedError``."""
    addon_key, descriptor_uri, redirect_uri = (
        _one_value(query, name) for name in LINK_PARAMETER_NAMES
    )
    if redirect_uri is not None and not _is_plain_url(redirect_uri):
        raise SimulatedError("invalid_request", "The redirect_uri must be an absolute URL.")
    if (addon_key is None) == (descriptor_uri is None):
        raise SimulatedError(
            "invalid_request", "The link must give exactly one of addon_key and descriptor_uri."
        )
    if addon_key is not None and not ADDON_KEY_PATTERN.fullmatch(addon_key):
        raise SimulatedError("invalid_request", "The addon_key is not a valid app key.")
    if descriptor_uri is not None:
        if not _is_plain_url(descriptor_uri):
            raise SimulatedError("invalid_request", "The descriptor_uri must be an absolute URL.")
        if not _secure_enough(descriptor_uri):
            raise SimulatedError("invalid_request", "The descriptor_uri must use HTTPS.")
    return LinkParameters(addon_key, descriptor_uri, redirect_uri)


def _invalid_descriptor(description: str) -> SimulatedError:
    return SimulatedError("invalid_descriptor", description)


def _is_on_site_or_loopback(url: str, site_base_url: str | None) -> bool:
    """Is ``url`` on the origin of ``site_base_url`` (this site), or on a loopback host?"""
    if is_loopback_url(url):
        return True
    site_origin = origin(site_base_url) if site_base_url is not None else None
    return site_origin is not None and origin(url) == site_origin


def is_under_base(url: str, base_url: str) -> bool:
    """Is ``url`` an absolute URL under ``base_url``?"""
    parts, base = _split(url), _split(base_url)
    return parts is not None and base is not None and is_under(parts, base)


def check_descriptor(data: object, addon_key: str | None, site_base_url: str | None) -> Descriptor:
    """``data`` (parsed JSON) as a ``Descriptor``, or ``SimulatedError``.

    For an ``addon_key`` install the descriptor must be that registered app's. The
    simulator will POST a fresh shared secret to its ``installed`` URL, so that URL must
    lie under a ``baseUrl`` on this site (``site_base_url``'s origin) or a loopback host.
    """
    if not isinstance(data, dict):
        raise _invalid_descriptor("The descriptor is not a JSON object.")
    key = data.get("key")
    if not isinstance(key, str) or not ADDON_KEY_PATTERN.fullmatch(key):
        raise _invalid_descriptor("The descriptor has no valid key.")
    if addon_key is not None and key != addon_key:
        raise SimulatedError("invalid_request", f"No app is registered with the key {addon_key}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid_descriptor("The descriptor has no name.")
    base_url = data.get("baseUrl")
    if not isinstance(base_url, str) or not _is_plain_url(base_url):
        raise _invalid_descriptor("The descriptor's baseUrl is not an absolute URL.")
    base = urlsplit(base_url)
    if base.query or base.fragment or not _secure_enough(base_url):
        raise _invalid_descriptor("The descriptor's baseUrl must be a plain HTTPS URL.")
    if not _is_on_site_or_loopback(base_url, site_base_url):
        raise _invalid_descriptor(
            "The descriptor's baseUrl is neither on this site nor on a loopback host; "
            "the simulator sends lifecycle callbacks nowhere else."
        )
    lifecycle = data.get("lifecycle")
    installed = lifecycle.get("installed") if isinstance(lifecycle, dict) else None
    if not isinstance(installed, str) or not installed.startswith("/") or "//" in installed:
        raise _invalid_descriptor("The descriptor has no lifecycle.installed path.")
    if not is_under_base(base_url.rstrip("/") + installed, base_url):
        raise _invalid_descriptor("The descriptor's lifecycle.installed leaves its baseUrl.")
    vendor = data.get("vendor")
    vendor_name = vendor.get("name") if isinstance(vendor, dict) else None
    description = data.get("description")
    scopes = data.get("scopes")
    modules = data.get("modules")
    return Descriptor(
        key=key,
        name=name,
        description=description if isinstance(description, str) else "",
        vendor_name=vendor_name if isinstance(vendor_name, str) else "",
        base_url=base_url,
        installed_path=installed,
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
        post_install_redirect=_post_install_redirect(modules, base_url),
    )


def _post_install_redirect(modules: object, base_url: str) -> str:
    """The descriptor's ``postInstallRedirect`` URL made absolute ("" if it has none). A
    relative URL is relative to the ``baseUrl``; either way it must stay under it, since
    the simulator may sign what it sends there."""
    module = modules.get("postInstallRedirect") if isinstance(modules, dict) else None
    if module is None:
        return ""
    url = module.get("url") if isinstance(module, dict) else None
    if not isinstance(url, str) or not url:
        raise _invalid_descriptor("The descriptor's postInstallRedirect has no url.")
    if url.startswith("/") and not url.startswith("//"):
        url = base_url.rstrip("/") + url
    # Checked with its context parameters as plain text: braces make no URL of their own.
    if not is_under_base(url.replace("{", "").replace("}", ""), base_url):
        raise _invalid_descriptor("The descriptor's postInstallRedirect leaves its baseUrl.")
    return url


def post_install_url(
    descriptor: Descriptor,
    client_key: str,
    shared_secret: str,
    workspace: Workspace,
    *,
    send_jwt: bool,
) -> str:
    """Where Bitbucket sends the browser after an install begun on its side: the
    descriptor's ``postInstallRedirect`` with the context parameters of the account the
    app was installed on filled in (percent-encoded), and with ``send_jwt`` a ``jwt`` over
    exactly that GET (whether Bitbucket appends one is not documented)."""
    values = {
        "user_uuid": workspace.uuid,
        "user_username": workspace.slug,
        "user_type": WORKSPACE_USER_TYPE,
    }
    url = descriptor.post_install_redirect
    for name, value in values.items():
        url = url.replace("{" + name + "}", quote(value, safe=""))
    if not send_jwt:
        return url
    token = request_token(client_key, shared_secret, "GET", url, descriptor.base_path)
    return add_query(url, [("jwt", token)])


def check_redirect(link: LinkParameters, descriptor: Descriptor) -> None:
    """The ``redirect_uri`` must lie under the descriptor's ``baseUrl``."""
    if link.redirect_uri is not None and not is_under_base(link.redirect_uri, descriptor.base_url):
        raise SimulatedError(
            "invalid_request", "The redirect_uri is not under the descriptor's baseUrl."
        )


def error_target(query: Mapping[str, Sequence[str]], base_url: str | None) -> str | None:
    """The ``redirect_uri`` of ``query`` if an error may go back to it: one absolute URL
    under ``base_url``; else None (the error is shown on the simulator's page)."""
    values = query.get("redirect_uri", [])
    if len(values) != 1 or not _is_plain_url(values[0]) or base_url is None:
        return None
    return values[0] if is_under_base(values[0], base_url) else None


def add_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query, percent-encoded (space as %20)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote)) if q)
    return urlunsplit(parts._replace(query=query))


def client_key_for(
    link: LinkParameters, descriptor: Descriptor, workspace: Workspace, n: int
) -> str:
    """Bitbucket's clientKey shapes: ``ari:...`` for registered apps, ``connection:<n>``."""
    if link.addon_key is not None:
        return f"ari:cloud:bitbucket::app/{workspace.uuid}/{descriptor.key}"
    return f"connection:{n}"


def installed_payload(
    descriptor: Descriptor,
    client_key: str,
    shared_secret: str,
    workspace: Workspace,
    *,
    base_url: str = BITBUCKET_BASE_URL,
    base_api_url: str = BITBUCKET_API_URL,
) -> dict[str, Any]:
    """The body of the ``installed`` lifecycle callback; ``base_url`` and ``base_api_url``
    are where the simulated Bitbucket serves the JWT grant and the API (on this site)."""
    return {
        "key": descriptor.key,
        "clientKey": client_key,
        "publicKey": "simulated-public-key-" + secrets.token_hex(16),
        "sharedSecret": shared_secret,
        "baseUrl": base_url,
        "baseApiUrl": base_api_url,
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": workspace.account,
        "user": dict(SIMULATED_USER),
    }


def lifecycle_token(descriptor: Descriptor, client_key: str, previous_secret: str) -> str:
    """``Authorization: JWT`` of a re-install: the previous secret over POST + the path."""
    return request_token(
        client_key, previous_secret, "POST", descriptor.installed_url, descriptor.base_path
    )


def success_url(
    redirect_uri: str, client_key: str, shared_secret: str, base_path: str, *, send_jwt: bool
) -> str:
    """``redirect_uri`` (whatever its path: the app may put a per-flow segment in it) with
    ``clientKey`` and a ``jwt`` over exactly that GET request, its path relative to
    ``base_path``."""
    with_key = add_query(redirect_uri, [("clientKey", client_key)])
    if not send_jwt:
        return with_key
    token = request_token(client_key, shared_secret, "GET", with_key, base_path)
    return add_query(with_key, [("jwt", token)])


# --- the simulated API ---------------------------------------------------------------------


def api_error(message: str, detail: str | None = None) -> dict[str, Any]:
    """Bitbucket's 2.0 error body: ``{"type": "error", "error": {"message", "detail"}}``."""
    error: dict[str, Any] = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return {"type": "error", "error": error}


def page_of(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One page of a paginated list, as Bitbucket writes them (all on the first page)."""
    return {"pagelen": max(10, len(values)), "size": len(values), "page": 1, "values": values}


def is_simulated_user(name: str) -> bool:
    """Does ``name`` (a ``{selected_user}`` segment) name the simulated user?"""
    return name == SIMULATED_USER["nickname"] or name.lower() == SIMULATED_USER["uuid"]


@dataclass(frozen=True)
class PropertyAddress:
    """Where an application property lives: its target (one of ``PROPERTY_PATHS``' kinds,
    with the workspace and repository it is in, if any), the app and the property's name.
    ``target`` is the path's own identification of it (slug or UUID, as written)."""

    kind: str
    app_key: str
    name: str
    workspace: str | None = None
    repository: str | None = None
    target: str | None = None


def property_address(path: str) -> PropertyAddress | None:
    """The application property ``path`` (``/2.0/...``, decoded) addresses, or None if it
    addresses none (or with malformed names)."""
    for kind, pattern in PROPERTY_PATHS:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        groups = match.groupdict()
        if not (
            PROPERTY_NAME_PATTERN.fullmatch(groups["app_key"])
            and PROPERTY_NAME_PATTERN.fullmatch(groups["name"])
        ):
            return None
        target = groups.get("commit") or groups.get("pullrequest") or groups.get("user")
        if kind == "commit" and not COMMIT_PATTERN.fullmatch(str(target)):
            return None
        return PropertyAddress(
            kind=kind,
            app_key=groups["app_key"],
            name=groups["name"],
            workspace=groups.get("workspace"),
            repository=groups.get("repo"),
            target=target,
        )
    return None


def addon_update_scopes(body: object, current: Sequence[str]) -> tuple[str, ...] | None:
    """The scopes after ``PUT /2.0/addon`` with ``body`` (parsed JSON): ``current`` for
    ``{}`` or ``{"descriptor_url": ...}`` alone, the new descriptor's for ``{"descriptor":
    ...}``; ``ValueError`` (with Bitbucket's reason) for any other body, or for scopes
    that grow or shrink to none. None: nothing changes."""
    if not isinstance(body, dict):
        raise ValueError("The body must be a JSON object.")
    if not body:
        return None
    if set(body) == {"descriptor_url"}:
        if not isinstance(body["descriptor_url"], str) or not _is_plain_url(
            body["descriptor_url"]
        ):
            raise ValueError("descriptor_url must be an absolute URL.")
        return None
    if set(body) != {"descriptor"} or not isinstance(body["descriptor"], dict):
        raise ValueError("Give nothing, a descriptor, or a descriptor_url alone.")
    scopes = body["descriptor"].get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise ValueError("The descriptor's scopes must be a list of scopes.")
    if not scopes:
        raise ValueError("Scopes have decreased to none.")
    if not set(scopes) <= set(current):
        raise ValueError("Scopes have increased.")
    return tuple(dict.fromkeys(scopes))


def grant_scopes(requested: str | None, installed: Sequence[str]) -> tuple[str, ...] | None:
    """The scopes of a JWT grant's token: the installation's (``requested`` None or blank)
    or the ``requested`` ones (space- or comma-separated), each of which it must have; None
    when it asks for one it does not have."""
    if requested is None or not requested.strip():
        return tuple(installed)
    asked = tuple(dict.fromkeys(requested.replace(",", " ").split()))
    return asked if set(asked) <= set(installed) else None


def is_subject(value: object) -> bool:
    """May ``value`` (a token's ``sub``) be a clientKey?"""
    return isinstance(value, str) and CLIENT_KEY_PATTERN.fullmatch(value) is not None


def webhook_payload(event: str, workspace: Workspace) -> dict[str, Any]:
    """A delivery's body in Connect's envelope: the event, and who did it where."""
    return {
        "event": event,
        "data": {
            "actor": dict(SIMULATED_USER),
            "repository": workspace.repositories()[0],
            "workspace": workspace.api,
        },
    }


def request_token(
    client_key: str, shared_secret: str, method: str, url: str, base_path: str
) -> str:
    """A token as Bitbucket signs its requests to the app (the return trip, a lifecycle
    callback, a webhook delivery): ``iss`` the clientKey, qsh over ``method`` on ``url``
    relative to the app's ``base_path``."""
    parts = urlsplit(url)
    return encode_token(
        {"iss": client_key},
        shared_secret,
        method=method,
        path=parts.path,
        query_string=parts.query,
        base_path=base_path,
    )
