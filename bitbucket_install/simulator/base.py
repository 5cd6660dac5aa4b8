"""The simulator's pure part: the install link's parameters, the checks of a descriptor and
of every URL the simulator would connect or redirect to, workspaces, the lifecycle payload
and the tokens it signs.

No Django here, and no import of the simulator's other modules: they import this one.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from bitbucket_install.authorize import ADDON_KEY_PATTERN, _split, is_loopback, is_under
from bitbucket_install.identifiers import clean_display_text, origin
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


def _is_under_base(url: str, base_url: str) -> bool:
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
    if not _is_under_base(base_url.rstrip("/") + installed, base_url):
        raise _invalid_descriptor("The descriptor's lifecycle.installed leaves its baseUrl.")
    vendor = data.get("vendor")
    vendor_name = vendor.get("name") if isinstance(vendor, dict) else None
    description = data.get("description")
    scopes = data.get("scopes")
    return Descriptor(
        key=key,
        name=name,
        description=description if isinstance(description, str) else "",
        vendor_name=vendor_name if isinstance(vendor_name, str) else "",
        base_url=base_url,
        installed_path=installed,
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
    )


def check_redirect(link: LinkParameters, descriptor: Descriptor) -> None:
    """The ``redirect_uri`` must lie under the descriptor's ``baseUrl``."""
    if link.redirect_uri is not None and not _is_under_base(
        link.redirect_uri, descriptor.base_url
    ):
        raise SimulatedError(
            "invalid_request", "The redirect_uri is not under the descriptor's baseUrl."
        )


def error_target(query: Mapping[str, Sequence[str]], base_url: str | None) -> str | None:
    """The ``redirect_uri`` of ``query`` if an error may go back to it: one absolute URL
    under ``base_url``; else None (the error is shown on the simulator's page)."""
    values = query.get("redirect_uri", [])
    if len(values) != 1 or not _is_plain_url(values[0]) or base_url is None:
        return None
    return values[0] if _is_under_base(values[0], base_url) else None


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
    descriptor: Descriptor, client_key: str, shared_secret: str, workspace: Workspace
) -> dict[str, Any]:
    """The body of the ``installed`` lifecycle callback."""
    return {
        "key": descriptor.key,
        "clientKey": client_key,
        "publicKey": "simulated-public-key-" + secrets.token_hex(16),
        "sharedSecret": shared_secret,
        "baseUrl": BITBUCKET_BASE_URL,
        "baseApiUrl": BITBUCKET_API_URL,
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": workspace.account,
        "user": dict(SIMULATED_USER),
    }


def lifecycle_token(descriptor: Descriptor, client_key: str, previous_secret: str) -> str:
    """``Authorization: JWT`` of a re-install: the previous secret over POST + the path."""
    url = urlsplit(descriptor.installed_url)
    return encode_token(
        {"iss": client_key},
        previous_secret,
        method="POST",
        path=url.path,
        query_string=url.query,
        base_path=descriptor.base_path,
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
    parts = urlsplit(with_key)
    token = encode_token(
        {"iss": client_key},
        shared_secret,
        method="GET",
        path=parts.path,
        query_string=parts.query,
        base_path=base_path,
    )
    return add_query(with_key, [("jwt", token)])
