"""Install links: build the Bitbucket authorize URL and check every rule it must follow.

Pure protocol code; the Django-facing callers are the template
tags, the ``start`` view and the system checks, which all go through ``InstallLink``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlencode, urlsplit

from bitbucket_install.exceptions import InstallLinkError
from bitbucket_install.identifiers import ADDON_KEY_PATTERN, DEFAULT_PORTS, origin

__all__ = [
    "ADDON_KEY_PATTERN",
    "InstallLink",
    "Problem",
    "host_of",
    "is_loopback",
    "is_plain_origin",
    "is_under",
]

# Whitespace, or a control character (Unicode category Cc: C0, DEL and C1, NUL included).
BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``rule`` is stable (the system checks map it to an id)."""

    rule: str
    message: str
    hint: str
    is_warning: bool = False


@dataclass(frozen=True)
class InstallLink:
    authorize_url: str
    addon_key: str | None = None
    descriptor_uri: str | None = None
    redirect_uri: str | None = None
    base_url: str | None = None
    # Where the authorize page may be (production: Bitbucket's origins); None: anywhere.
    authorize_origins: frozenset[str] | None = None

    def problems(self) -> list[Problem]:
        found = _check_authorize_url(self.authorize_url, self.authorize_origins)
        found += _check_app_identity(self.addon_key, self.descriptor_uri)
        if self.base_url is None and self.redirect_uri is None:
            return found
        # The base URL first: a bad one also spoils the default redirect URI built from it.
        base = None if self.base_url is None else _split(self.base_url)
        found += _check_base_url(self.base_url, base)
        if base is not None and self.descriptor_uri is not None:
            found += _check_descriptor_host(self.descriptor_uri, base)
        if self.redirect_uri is not None:
            found += _check_redirect_uri(self.redirect_uri, self.base_url, base)
        return found

    def url(self) -> str:
        """The authorize URL in the documented format; raises ``InstallLinkError``."""
        for problem in self.problems():
            if not problem.is_warning:
                raise InstallLinkError(problem.rule, problem.message)
        query: list[tuple[str, str]] = []
        if self.addon_key is not None:
            query.append(("addon_key", self.addon_key))
        else:
            query.append(("descriptor_uri", str(self.descriptor_uri)))
        if self.redirect_uri is not None:
            query.append(("redirect_uri", self.redirect_uri))
        separator = "&" if "?" in self.authorize_url else "?"
        return self.authorize_url + separator + urlencode(query, quote_via=quote)


def _split(url: str) -> SplitResult | None:
    """``url`` parsed, or None when it is not an absolute http(s) URL with a host, or has
    whitespace or a control character anywhere (urlsplit keeps a NUL in the host)."""
    if BLANK_OR_CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if "[" in parts.netloc:
        # Python 3.11+ refuses "[not-an-ip]" in urlsplit; 3.10 does not, so check here.
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            return None
    return parts


def host_of(url: str) -> str | None:
    """The (lower-cased) host of an absolute http(s) URL, or None."""
    parts = _split(url)
    return None if parts is None else parts.hostname


def is_plain_origin(value: object) -> bool:
    """Is ``value`` an origin as a setting lists one: ``scheme://host[:port]``, http or
    https, and nothing else (no userinfo, path, query or fragment, not even a bare ``/``)?"""
    if not isinstance(value, str):
        return False
    parts = _split(value)
    return (
        parts is not None
        and "@" not in parts.netloc
        and not parts.path
        and "?" not in value
        and "#" not in value
    )


def is_loopback(parts: SplitResult) -> bool:
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_https(parts: SplitResult, rule: str, what: str) -> list[Problem]:
    if parts.scheme == "https":
        return []
    if is_loopback(parts):
        return [
            Problem(
                rule + "_loopback_http",
                f"{what} uses plain HTTP; Bitbucket refuses it.",
                "Only the development simulator accepts HTTP on a loopback host. "
                "Use an HTTPS URL for real installs.",
                is_warning=True,
            )
        ]
    return [Problem(rule, f"{what} must use HTTPS.", f"Change {what} to an https:// URL.")]


def _check_authorize_url(url: str, allowed_origins: frozenset[str] | None) -> list[Problem]:
    # A fragment would swallow the query that ``url()`` appends.
    if _split(url) is None or "#" in url:
        return [
            Problem(
                "authorize_url_absolute",
                f"The authorize URL {url!r} is not an absolute http(s) URL without a fragment.",
                "Leave BITBUCKET_INSTALL_AUTHORIZE_URL unset to use Bitbucket's, or give an "
                "http(s) URL without a fragment, whitespace or control characters.",
            )
        ]
    url_origin = origin(url) or ""
    if allowed_origins is not None and (
        not url_origin.startswith("https://") or url_origin not in allowed_origins
    ):
        allowed = ", ".join(sorted(allowed_origins)) or "none"
        return [
            Problem(
                "authorize_url_bitbucket",
                f"The authorize URL {url!r} is not an HTTPS URL on one of the Bitbucket "
                f"origins ({allowed}), and DEBUG is off: the button would send users there.",
                "Leave BITBUCKET_INSTALL_AUTHORIZE_URL unset in production. Test doubles and "
                "the simulator need DEBUG on.",
            )
        ]
    return []


def _check_app_identity(addon_key: str | None, descriptor_uri: str | None) -> list[Problem]:
    if addon_key is not None and descriptor_uri is not None:
        return [
            Problem(
                "one_app_identity",
                "Both an app key and a descriptor URI are set; an install link takes one.",
                "Set BITBUCKET_INSTALL_ADDON_KEY for a registered app, or "
                "BITBUCKET_INSTALL_DESCRIPTOR_URI for an unregistered one, not both.",
            )
        ]
    if addon_key is not None:
        if ADDON_KEY_PATTERN.fullmatch(addon_key) is None:
            return [
                Problem(
                    "addon_key_format",
                    f"The app key {addon_key!r} is not a valid Connect app key.",
                    "Use 1 to 64 letters, digits, '.', '_' or '-', as in the descriptor.",
                )
            ]
        return []
    if descriptor_uri is None:
        return [
            Problem(
                "one_app_identity",
                "Neither an app key nor a descriptor URI is set.",
                "Set BITBUCKET_INSTALL_ADDON_KEY (registered app) or "
                "BITBUCKET_INSTALL_DESCRIPTOR_URI (unregistered app).",
            )
        ]
    parts = _split(descriptor_uri)
    if parts is None:
        return [
            Problem(
                "descriptor_uri_absolute",
                f"The descriptor URI {descriptor_uri!r} is not an absolute URL.",
                "Give the full https:// URL of atlassian-connect.json, without whitespace or "
                "control characters.",
            )
        ]
    return _check_https(parts, "descriptor_uri_https", "The descriptor URI")


def _check_base_url(base_url: str | None, base: SplitResult | None) -> list[Problem]:
    if base is None:
        return [
            Problem(
                "base_url_absolute",
                f"The base URL {base_url!r} is not an absolute URL.",
                "Set BITBUCKET_INSTALL_BASE_URL to the descriptor's baseUrl: an http(s) URL "
                "with a host, without whitespace or control characters.",
            )
        ]
    return _check_https(base, "base_url_https", "The base URL")


def _check_descriptor_host(descriptor_uri: str, base: SplitResult) -> list[Problem]:
    # Bitbucket installs whatever app the descriptor describes: one on another host is
    # another site's app, and its lifecycle callbacks and secrets go there.
    descriptor = _split(descriptor_uri)
    if descriptor is None or descriptor.hostname == base.hostname:
        return []  # not absolute: descriptor_uri_absolute says so
    return [
        Problem(
            "descriptor_uri_on_base_host",
            f"The descriptor URI {descriptor_uri!r} is not on the base URL's host "
            f"({base.hostname!r}): Bitbucket would install the app that descriptor "
            "describes, and send its lifecycle callbacks and secrets to that site.",
            "Serve atlassian-connect.json from this site (the app's descriptor view) and "
            "point BITBUCKET_INSTALL_DESCRIPTOR_URI at it, on the host of "
            "BITBUCKET_INSTALL_BASE_URL.",
        )
    ]


def _check_redirect_uri(
    redirect_uri: str, base_url: str | None, base: SplitResult | None
) -> list[Problem]:
    redirect = _split(redirect_uri)
    if redirect is None:
        return [
            Problem(
                "redirect_uri_absolute",
                f"The redirect URI {redirect_uri!r} is not an absolute URL.",
                "Give the full URL, without whitespace or control characters, or set "
                "BITBUCKET_INSTALL_BASE_URL to get the default.",
            )
        ]
    if base is None:
        return []  # base_url_absolute says so
    if _is_templated(redirect_uri) or _is_templated(str(base_url)):
        return [
            Problem(
                "plain_url",
                "The redirect URI and base URL must be plain URLs, without URI templates.",
                "Remove '{...}' context parameters from both.",
            )
        ]
    if "#" in redirect_uri or "#" in str(base_url) or not is_under(redirect, base):
        # Even an empty fragment ("...#") would hide Bitbucket's appended query.
        return [
            Problem(
                "redirect_uri_under_base_url",
                f"The redirect URI {redirect_uri!r} is not under the base URL {base_url!r}.",
                "Bitbucket answers invalid_request unless the redirect URI starts with the "
                "descriptor's baseUrl (same scheme, host, port and leading path segments).",
            )
        ]
    return []


def _is_templated(url: str) -> bool:
    return "{" in url or "}" in url


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def _port(parts: SplitResult) -> int:
    """The explicit port, or the scheme's default (an explicit ``:0`` stays 0)."""
    return DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port


def is_under(url: SplitResult, base: SplitResult) -> bool:
    """Is ``url`` at or below ``base``? Compared by parts, never as string prefixes."""
    if url.username is not None or url.password is not None or base.username is not None:
        return False
    if url.fragment or base.query or base.fragment:
        return False
    if url.scheme != base.scheme or url.hostname != base.hostname:
        return False
    if _port(url) != _port(base):
        return False
    # Browsers read a backslash as "/" in http(s) paths: "/app/x\..\..\evil" leaves "/app".
    if "\\" in url.path:
        return False
    url_segments = _segments(url.path)
    # A browser resolves dot segments before it asks, so "/app/../evil" leaves "/app".
    if any(unquote(segment) in {".", ".."} for segment in url_segments):
        return False
    base_segments = _segments(base.path)
    return url_segments[: len(base_segments)] == base_segments
