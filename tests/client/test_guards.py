"""What the client refuses before anything leaves the process: a URL outside the allowed
origins (the API base URL's and the grant's), an uninstalled installation or one without a
secret or app key, and paths that are not plainly under the API base URL. Each test also
shows that nothing was sent: the fake Bitbucket saw nothing, or a transport that fails the
test on any request was never called."""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.client import BitbucketClient
from bitbucket_install.exceptions import OriginNotAllowed, RequestNotSent
from bitbucket_install.models import Installation
from tests.client.conftest import make_installation
from tests.client.fake_bitbucket import APP_KEY, FakeBitbucket


def no_request(request: httpx.Request) -> httpx.Response:
    pytest.fail(f"the client sent {request.method} {request.url}")


NOWHERE = httpx.MockTransport(no_request)


@pytest.mark.parametrize(
    "stored",
    [
        "https://api.bitbucket.org.evil.test",
        "https://evil.test",
        "https://api.bitbucket.org@evil.test",
        "http://api.bitbucket.org",  # not https: another origin
        "https://api.bitbucket.org:8443",
        "ftp://api.bitbucket.org",
        "api.bitbucket.org",
        "",
        "http://[::1",
    ],
)
def test_an_api_base_url_elsewhere_is_refused_before_any_connection(
    db: None, stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    installation = make_installation("https://bitbucket.org", base_api_url=stored)
    with (
        BitbucketClient(installation, transport=NOWHERE) as bb,
        pytest.raises(OriginNotAllowed) as raised,
    ):
        bb.get("/2.0/user")
    assert raised.value.reason == "origin_not_allowed"
    assert isinstance(raised.value, RequestNotSent)
    assert "BITBUCKET_INSTALL_BITBUCKET_ORIGINS" in str(raised.value)
    assert "API base URL" in caplog.text


def test_the_real_network_is_not_touched_either(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    # A port nobody listens on: had the client tried, it would be a ConnectError.
    installation.base_api_url = "http://127.0.0.1:9"
    with BitbucketClient(installation) as bb, pytest.raises(OriginNotAllowed):
        bb.get("/2.0/user")
    assert bitbucket.received == []


def test_a_grant_url_elsewhere_is_refused_before_any_connection(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    installation.base_url = "https://bitbucket.org.evil.test"
    with BitbucketClient(installation) as bb:
        with pytest.raises(OriginNotAllowed) as raised:
            bb.access_token()
        assert "base URL" in str(raised.value)
        # The API base URL is still fine: calls go on.
        assert bb.get("/2.0/user").status_code == 200
    assert [r.path for r in bitbucket.received] == ["/2.0/user"]


def test_the_default_origins_are_bitbuckets(db: None, settings: Settings) -> None:
    del settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("access_token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200)

    installation = make_installation(
        "https://bitbucket.org", base_api_url="https://api.bitbucket.org"
    )
    with BitbucketClient(installation, transport=httpx.MockTransport(record)) as bb:
        bb.get("/2.0/user")
        bb.access_token()
    assert seen == [
        "https://api.bitbucket.org/2.0/user",
        "https://bitbucket.org/site/oauth2/access_token",
    ]
    installation.base_api_url = "http://127.0.0.1:8000"
    with BitbucketClient(installation, transport=NOWHERE) as bb, pytest.raises(OriginNotAllowed):
        bb.get("/2.0/user")


@override_settings(
    DEBUG=True,
    BITBUCKET_INSTALL_SIMULATOR=True,
    BITBUCKET_INSTALL_BASE_URL="http://127.0.0.1:8000/app",
    BITBUCKET_INSTALL_BITBUCKET_ORIGINS=["https://bitbucket.org"],
)
def test_with_the_simulator_on_the_sites_own_origin_is_allowed(db: None) -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    installation = make_installation("http://127.0.0.1:8000/app/simulator")
    with BitbucketClient(installation, transport=httpx.MockTransport(record)) as bb:
        assert bb.delete("/2.0/addon").status_code == 204
    assert seen == ["http://127.0.0.1:8000/app/simulator/2.0/addon"]
    with (
        override_settings(DEBUG=False),
        BitbucketClient(installation, transport=NOWHERE) as bb,
        pytest.raises(OriginNotAllowed),
    ):
        bb.delete("/2.0/addon")


@pytest.mark.parametrize("method", ["request", "access_token"])
def test_an_uninstalled_installation_is_refused(
    installation: Installation, bitbucket: FakeBitbucket, method: str
) -> None:
    installation.uninstalled_at = timezone.now()
    with BitbucketClient(installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("/2.0/user") if method == "request" else bb.access_token()
    assert raised.value.reason == "uninstalled"
    assert bitbucket.received == []


@pytest.mark.parametrize("method", ["request", "access_token"])
def test_an_installation_without_a_secret_is_refused(
    installation: Installation, bitbucket: FakeBitbucket, method: str
) -> None:
    installation.shared_secret = ""
    with BitbucketClient(installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("/2.0/user") if method == "request" else bb.access_token()
    assert raised.value.reason == "no_shared_secret"
    assert bitbucket.received == []


def test_without_a_stored_app_key_the_descriptors_is_the_issuer(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    installation.addon_key = ""
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/user")
    assert bitbucket.problems == []
    assert bitbucket.received[0].claims is not None
    assert bitbucket.received[0].claims["iss"] == APP_KEY


def test_without_any_app_key_nothing_is_signed(
    installation: Installation, bitbucket: FakeBitbucket, settings: Settings
) -> None:
    installation.addon_key = ""
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {"name": "No key"}
    with BitbucketClient(installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("/2.0/user")
    assert raised.value.reason == "no_app_key"
    assert bitbucket.received == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("https://evil.test/2.0/user", "path_not_relative"),
        ("http://127.0.0.1:9/2.0/user", "path_not_relative"),
        ("//evil.test/2.0/user", "path_not_relative"),
        ("2.0/user", "path_not_relative"),
        ("", "path_not_relative"),
        ("/2.0/repositories/../../addon", "path_dot_segment"),
        ("/2.0/repositories/w/r/%2e%2E/x", "path_dot_segment"),
        ("/2.0/./user", "path_dot_segment"),
        ("/..", "path_dot_segment"),
        ("/2.0\\..\\addon", "path_malformed"),
        ("/2.0/user#fragment", "path_malformed"),
        ("/2.0/user\r\nX-Injected: 1", "path_malformed"),
        ("/2.0/user\x00", "path_malformed"),
    ],
)
def test_a_path_outside_the_api_base_url_is_refused(
    installation: Installation, bitbucket: FakeBitbucket, path: str, reason: str
) -> None:
    with BitbucketClient(installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get(path)
    assert raised.value.reason == reason
    assert bitbucket.received == []


def test_a_dot_in_a_name_or_query_is_no_dot_segment(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/repositories/w/r/src/main/.gitignore?at=..")
        bb.get("/2.0/repositories/w/r/src/main/my file...txt")
    assert bitbucket.problems == []
    assert [r.target for r in bitbucket.received] == [
        "/2.0/repositories/w/r/src/main/.gitignore?at=..",
        "/2.0/repositories/w/r/src/main/my%20file...txt",
    ]


@override_settings(BITBUCKET_INSTALL_API_TIMEOUT=1)
def test_requests_time_out_as_the_setting_says(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    # The fake holds "/slow" until released: the client gives up after one second.
    with BitbucketClient(installation) as bb, pytest.raises(httpx.ReadTimeout):
        bb.get("/2.0/slow")
    bitbucket.release.set()
    assert [r.path for r in bitbucket.received] == ["/2.0/slow"]
