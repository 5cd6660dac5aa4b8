"""The configuration tests' site as the Internet sees it, and a browser and Bitbucket using it.

- ``FrontEnd``: what stands between the Internet and Django: the public origin, a path
  prefix the front end strips (``FORCE_SCRIPT_NAME``), a TLS-terminating proxy that passes
  ``X-Forwarded-Proto`` / ``X-Forwarded-Host``, Apache mod_wsgi dropping ``Authorization``.
- Agents make one HTTP request each and keep a browser's cookies: ``TestClientAgent``
  (Django's WSGI test client), ``AsyncClientAgent`` (Django's ASGI handler through
  ``AsyncClient``) and ``HttpAgent`` (real HTTP to a server on this machine).
- ``Browser``: an agent with a browser's habits (``Origin`` on a form's POST, forms filled
  in from the page, every answer kept in ``answers``).
- ``Site``: a front end and a kind of agent; ``site.browser()`` is a new browser,
  ``site.bitbucket_send`` is the simulator's transport (Bitbucket's server calls: a new
  agent without cookies for each), ``site.url(path)`` a public URL.
- ``install(browser, page_url)``: the whole install from the button on that page: the
  start view, the simulator's consent page, Grant (the descriptor and the ``installed``
  callback are fetched by the simulator through ``bitbucket_send``), the return trip and
  the result page.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlencode, urljoin, urlsplit

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.http.response import HttpResponseBase
from django.test import AsyncClient, Client
from django.test.client import FakePayload
from django.urls import reverse

PUBLIC_ORIGIN = "https://app.example.com"  # BITBUCKET_INSTALL_BASE_URL's origin
BACKEND_HOST = "127.0.0.1:8000"  # where a proxy forwards to
FORM = "application/x-www-form-urlencoded"
CALLBACK_PREFIX = "/bitbucket/callback/"  # in the path of every return (after any prefix)


@dataclass(frozen=True)
class Routed:
    """A public URL as it reaches Django: path (prefix stripped) and query, scheme, headers."""

    target: str
    secure: bool
    headers: dict[str, str]


@dataclass(frozen=True)
class FrontEnd:
    origin: str = PUBLIC_ORIGIN
    script_name: str = ""  # stripped by the front end: Django's FORCE_SCRIPT_NAME
    tls_proxy: bool = False  # TLS ends at a proxy that forwards plain HTTP to Django
    strips_authorization: bool = False  # Apache mod_wsgi without WSGIPassAuthorization

    def route(self, url: str) -> Routed:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == self.origin, f"not this site: {url}"
        path = parts.path
        if self.script_name:
            assert path.startswith(self.script_name + "/"), f"outside {self.script_name}: {url}"
            path = path[len(self.script_name) :]
        target = path + (f"?{parts.query}" if parts.query else "")
        if self.tls_proxy:
            headers = {
                "Host": BACKEND_HOST,
                "X-Forwarded-Proto": parts.scheme,
                "X-Forwarded-Host": parts.netloc,
            }
            return Routed(target, secure=False, headers=headers)
        return Routed(target, secure=parts.scheme == "https", headers={"Host": parts.netloc})

    def forwarded(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """The request's own headers as the front end passes them on."""
        passed = dict(headers or {})
        if self.strips_authorization:
            passed.pop("Authorization", None)
        return passed


@dataclass(frozen=True)
class Answer:
    """One response, as the browser got it."""

    url: str
    status: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def location(self) -> str:
        """The redirect's target, made absolute as a browser does."""
        location = self.header("Location")
        assert location is not None, f"{self.status} from {self.url} is no redirect"
        return urljoin(self.url, location)

    def forms(self) -> list[Form]:
        parser = _FormParser()
        parser.feed(self.text)
        return parser.forms

    def form(self, *, id: str = "", css_class: str = "") -> Form:
        found = [
            form
            for form in self.forms()
            if (not id or form.id == id) and (not css_class or css_class in form.classes)
        ]
        assert len(found) == 1, (
            f"{len(found)} forms (id={id!r}, class={css_class!r}) on {self.url}"
        )
        return found[0]


@dataclass
class Form:
    action: str
    method: str
    id: str
    classes: list[str]
    fields: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    """The forms of a page with the values a browser would submit (no button pressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(
                action=attributes.get("action", ""),
                method=attributes.get("method", "get").lower(),
                id=attributes.get("id", ""),
                classes=attributes.get("class", "").split(),
            )
            return
        if self._form is None:
            return
        name = attributes.get("name")
        kind = attributes.get("type", "text").lower()
        if tag == "input" and name and kind not in {"submit", "button", "image", "reset"}:
            if kind not in {"checkbox", "radio"} or "checked" in attributes:
                self._form.fields.append(
                    (name, attributes.get("value", "on" if kind in {"checkbox", "radio"} else ""))
                )
        elif tag == "select" and name:
            self._select, self._option = name, None
        elif tag == "option" and self._select is not None and self._option is None:
            self._option = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._form is not None and self._select is not None:
            self._form.fields.append((self._select, self._option or ""))
            self._select = None
        elif tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None


class Agent(Protocol):
    """One request to the site, with this agent's cookies."""

    def request(
        self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Answer: ...


def _answer(url: str, response: HttpResponseBase) -> Answer:
    headers = {name.lower(): value for name, value in response.items()}
    content = b"" if response.streaming else response.content  # type: ignore[attr-defined]
    return Answer(url, response.status_code, headers, content)


@dataclass
class TestClientAgent:
    """Requests through Django's WSGI test client (which keeps the cookies)."""

    front: FrontEnd
    client: Client = field(default_factory=lambda: Client(enforce_csrf_checks=True))

    def request(
        self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Answer:
        routed = self.front.route(url)
        sent = {**routed.headers, **self.front.forwarded(headers)}
        content_type = sent.pop("Content-Type", "application/octet-stream")
        response = self.client.generic(
            method, routed.target, body, content_type, secure=routed.secure, headers=sent
        )
        return _answer(url, response)


@dataclass
class AsyncClientAgent:
    """Requests through Django's ASGI handler (``AsyncClient``, which keeps the cookies)."""

    front: FrontEnd
    client: AsyncClient = field(default_factory=lambda: AsyncClient(enforce_csrf_checks=True))

    def request(
        self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Answer:
        routed = self.front.route(url)
        sent = {**routed.headers, **self.front.forwarded(headers)}
        if body:
            sent["Content-Length"] = str(len(body))
        target = urlsplit(routed.target)
        # The scope built here rather than by AsyncClient.generic, which sends its own
        # "Host: testserver" besides any other.
        scope = {
            "method": method,
            "path": unquote(target.path),
            "query_string": target.query,
            "server": ("127.0.0.1", "443" if routed.secure else "80"),
            "scheme": "https" if routed.secure else "http",
            "headers": [
                (name.lower().encode("ascii"), value.encode("latin1"))
                for name, value in sent.items()
            ],
            "_body_file": FakePayload(body),
        }

        async def send() -> HttpResponseBase:
            response: HttpResponseBase = await self.client.request(**scope)
            return response

        return _answer(url, async_to_sync(send)())


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _KeepRedirects())


@dataclass
class HttpAgent:
    """Real HTTP to a server on this machine (``http://127.0.0.1:PORT``), with a cookie jar."""

    front: FrontEnd
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Answer:
        assert url.startswith(self.front.origin + "/")
        assert url.startswith("http://127.0.0.1:")
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only, checked above)
            url, data=body if method != "GET" else None, headers=sent, method=method
        )
        try:
            with _opener.open(request, timeout=30) as response:
                status, response_headers, content = (
                    response.status,
                    response.headers,
                    response.read(),
                )
        except urllib.error.HTTPError as error:
            with error:
                status, response_headers, content = error.code, error.headers, error.read()
        jar: SimpleCookie = SimpleCookie()
        for header in response_headers.get_all("Set-Cookie") or []:
            jar.load(header)
        for name, morsel in jar.items():
            if morsel["max-age"] == "0" or not morsel.value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value
        answer_headers = {name.lower(): value for name, value in response_headers.items()}
        return Answer(url, status, answer_headers, content)


@dataclass
class Browser:
    agent: Agent
    origin: str
    answers: list[Answer] = field(default_factory=list)

    def get(self, url: str) -> Answer:
        return self._keep(self.agent.request("GET", url))

    def submit(
        self,
        page: Answer,
        form: Form,
        changes: Mapping[str, str | None] | None = None,
        button: tuple[str, str] | None = None,
    ) -> Answer:
        """Submit ``form`` of ``page`` with ``changes`` (None unticks a field), pressing
        ``button``: a POST with the browser's ``Origin``, as a browser sends it."""
        assert form.method == "post"
        changes = dict(changes or {})
        fields = [(name, value) for name, value in form.fields if name not in changes]
        fields += [(name, value) for name, value in changes.items() if value is not None]
        if button is not None:
            fields.append(button)
        headers = {"Content-Type": FORM, "Origin": self.origin, "Referer": page.url}
        url = urljoin(page.url, form.action or page.url)
        return self._keep(self.agent.request("POST", url, urlencode(fields).encode(), headers))

    def _keep(self, answer: Answer) -> Answer:
        self.answers.append(answer)
        return answer

    def log_in(self, login_page: Answer, username: str, password: str) -> Answer:
        form = login_page.form(id="login-form")
        return self.submit(login_page, form, {"username": username, "password": password})

    def force_login(self, user: User) -> None:
        """Sign ``user`` in on a test client's browser (instead of the login form)."""
        client = getattr(self.agent, "client", None)
        assert isinstance(client, Client | AsyncClient)
        if isinstance(client, AsyncClient):
            async_to_sync(client.aforce_login)(user)
        else:
            client.force_login(user)


AgentFactory = Callable[[FrontEnd], Agent]


@dataclass
class Site:
    front: FrontEnd = field(default_factory=FrontEnd)
    agent: AgentFactory = TestClientAgent

    def url(self, path: str) -> str:
        """The public URL of ``path`` (a path as Django's ``reverse`` gives it)."""
        return self.front.origin + path

    def browser(self) -> Browser:
        return Browser(self.agent(self.front), self.front.origin)

    def bitbucket_send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """The simulator's transport: Bitbucket's server calls (no cookies, no Origin)."""
        answer = self.agent(self.front).request(method, url, body or b"", headers)
        return answer.status, answer.content


@dataclass(frozen=True)
class Install:
    """The steps of one install, from the page with the button to the result page."""

    to_bitbucket: Answer  # the start view's 303
    consent: Answer  # the simulator's page
    back: Answer  # the simulator's 302 to the redirect_uri
    returned: Answer  # the callback's answer
    result: Answer  # the result page (the callback's answer when shown in place)

    @property
    def return_url(self) -> str:
        return self.back.location

    @property
    def client_key(self) -> str:
        [client_key] = parse_qs(urlsplit(self.return_url).query)["clientKey"]
        return client_key

    @property
    def token(self) -> str:
        [token] = parse_qs(urlsplit(self.return_url).query)["jwt"]
        return token


def press_button(browser: Browser, page_url: str) -> tuple[Answer, Answer]:
    """Open ``page_url`` and press its install button: the page and the start view's answer."""
    page = browser.get(page_url)
    assert page.status == 200, (page.status, page.url, page.headers)
    return page, browser.submit(page, page.form(css_class="bbi-form"))


def install(
    browser: Browser, page_url: str, *, workspace: str = "Acme Team", send_jwt: bool = True
) -> Install:
    """The whole install through the simulator, from the button on ``page_url``."""
    _page, to_bitbucket = press_button(browser, page_url)
    assert to_bitbucket.status == 303, (to_bitbucket.status, to_bitbucket.headers)
    return grant(browser, to_bitbucket, workspace=workspace, send_jwt=send_jwt)


def grant(
    browser: Browser, to_bitbucket: Answer, *, workspace: str = "Acme Team", send_jwt: bool = True
) -> Install:
    """From the start view's redirect on: Grant on the simulator, and the return trip."""
    consent = browser.get(to_bitbucket.location)
    assert consent.status == 200, (consent.status, consent.headers, consent.text[:2000])
    changes = {"workspace": workspace, "send_jwt": "on" if send_jwt else None}
    back = browser.submit(
        consent, consent.form(id="consent-form"), changes, button=("action", "grant")
    )
    assert back.status == 302, (back.status, back.text[:2000])
    returned = browser.get(back.location)
    result = browser.get(returned.location) if returned.status == 303 else returned
    return Install(to_bitbucket, consent, back, returned, result)


def token_only_sent_back_by_bitbucket(browser: Browser, token: str) -> bool:
    """Did ``token`` ride in no redirect but Bitbucket's own to the ``redirect_uri`` (none to
    a login page's ``next``, none from the app)?"""
    return all(
        token not in (answer.header("Location") or "")
        or (
            CALLBACK_PREFIX in urlsplit(answer.location).path
            and "/simulator/" in urlsplit(answer.url).path
        )
        for answer in browser.answers
    )


CSRF_INPUT = re.compile(r'(<input type="hidden" name="csrfmiddlewaretoken" value=")[^"]*(">)')


def without_csrf_token(html: str) -> str:
    """``html`` with the value of its CSRF input blanked (masked anew at each render)."""
    return CSRF_INPUT.sub(r"\1\2", html)


def admin_lists_installations(site: Site, principal_name: str) -> None:
    """A superuser signs in on the admin's login page and finds ``principal_name`` in the
    installations' list (the user is made here; the installation must exist)."""
    User.objects.create_superuser("admin", password="admin-password-0123")
    browser = site.browser()
    changelist = site.url(reverse("admin:bitbucket_install_installation_changelist"))
    to_login = browser.get(changelist)
    assert to_login.status == 302, to_login.status
    login_page = browser.get(to_login.location)
    assert login_page.status == 200
    signed_in = browser.submit(
        login_page,
        login_page.form(id="login-form"),
        {"username": "admin", "password": "admin-password-0123"},
    )
    assert signed_in.status == 302, signed_in.text[:2000]
    assert signed_in.location == changelist
    listed = browser.get(changelist)
    assert listed.status == 200
    assert principal_name in listed.text


@dataclass(frozen=True)
class Landing:
    """The steps of one install begun on Bitbucket's side, from the simulator's console to
    the app's clean landing page."""

    consent: Answer  # the simulator's page, opened from the console's link
    back: Answer  # the simulator's 302 to the descriptor's postInstallRedirect
    landed: Answer  # the landing's 303 to its clean URL
    page: Answer  # the clean landing page


CONSOLE_INSTALL_LINK = re.compile(r'href="([^"]+)" id="install-from-bitbucket"')


def install_from_bitbucket(
    browser: Browser, console_url: str, *, workspace: str = "Acme Team", send_jwt: bool = True
) -> Landing:
    """Install from the simulator console's "Install from Bitbucket", then land."""
    console = browser.get(console_url)
    assert console.status == 200, (console.status, console.text[:2000])
    [href] = CONSOLE_INSTALL_LINK.findall(console.text)
    consent = browser.get(urljoin(console.url, unescape(href)))
    assert consent.status == 200, (consent.status, consent.text[:2000])
    changes = {"workspace": workspace, "send_jwt": "on" if send_jwt else None}
    back = browser.submit(
        consent, consent.form(id="consent-form"), changes, button=("action", "grant")
    )
    assert back.status == 302, (back.status, back.text[:2000])
    landed = browser.get(back.location)
    assert landed.status == 303, (landed.status, landed.text[:2000])
    page = browser.get(landed.location)
    return Landing(consent, back, landed, page)


def connect_on_landing(browser: Browser, page: Answer) -> Answer:
    """Press "Connect <workspace>" on the landing page."""
    return browser.submit(page, page.form(id="connect-form"))
