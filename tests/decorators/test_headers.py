"""The headers every answer of a decorated view gets: ``Vary: Authorization`` always; with
a token in the URL also ``no-store`` and ``no-referrer``; single-use answers ``private``."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils.cache import get_max_age

from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.decorators.conftest import async_request, called_views, token
from tests.lifecycle_helpers import installation_rows

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.decorators.views")]


def vary(response: Any) -> list[str]:
    return [name.strip() for name in response.get("Vary", "").split(",") if name.strip()]


def cache_control(response: Any) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part}


def query_get(client: Client, path: str, jwt: str) -> Any:
    return client.get(f"{path}?jwt={jwt}")


def header_post(client: Client, path: str, jwt: str) -> Any:
    return client.post(path, HTTP_AUTHORIZATION=f"JWT {jwt}")


@pytest.mark.parametrize("path", ["/bare", "/single", "/class-bare"])
def test_a_query_token_answer_is_not_stored_nor_referred(
    client: Client, installation: Installation, path: str
) -> None:
    response = query_get(client, path, token(path, "GET"))
    assert response.status_code == 200
    assert called_views() != []
    assert cache_control(response) == {"no-store", "private"}
    assert response["Referrer-Policy"] == "no-referrer"
    assert "Authorization" in vary(response)


def test_a_header_token_answer_varies_on_authorization_only(
    client: Client, installation: Installation
) -> None:
    response = header_post(client, "/bare", token("/bare"))
    assert response.status_code == 200
    assert "Authorization" in vary(response)
    assert "Cache-Control" not in response
    assert response["Referrer-Policy"] == "same-origin"  # SecurityMiddleware's


def test_a_single_use_answer_is_private(client: Client, installation: Installation) -> None:
    response = header_post(client, "/single", token("/single"))
    assert response.status_code == 200
    assert cache_control(response) == {"private"}
    assert response["Referrer-Policy"] == "same-origin"  # SecurityMiddleware's
    assert "Authorization" in vary(response)


def test_the_views_own_headers_are_merged(client: Client, installation: Installation) -> None:
    """``public`` gives way to ``private``; the view's max-age and Vary are kept (no-store
    already forbids keeping the answer); its Referrer-Policy gives way to no-referrer."""
    response = query_get(client, "/cached", token("/cached", "GET"))
    assert response.status_code == 200
    assert cache_control(response) == {"no-store", "private", "max-age=600"}
    assert get_max_age(response) == 600
    assert {"Cookie", "Authorization"} <= set(vary(response))
    assert response["Referrer-Policy"] == "no-referrer"

    header = header_post(client, "/cached", token("/cached"))
    assert cache_control(header) == {"public", "max-age=600"}
    assert header["Referrer-Policy"] == "origin"
    assert {"Cookie", "Authorization"} <= set(vary(header))

    single = header_post(client, "/single-cached", token("/single-cached"))
    assert cache_control(single) == {"private", "max-age=600"}


def test_a_token_in_the_query_next_to_one_in_the_header_still_gets_no_store(
    client: Client, installation: Installation
) -> None:
    """The header's token is the one verified, but the URL held one too."""
    response = client.post(
        "/bare?jwt=whatever", HTTP_AUTHORIZATION=f"JWT {token('/bare', query_string='')}"
    )
    assert response.status_code == 200
    assert "no-store" in cache_control(response)
    assert response["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("url", "query"),
    [
        pytest.param("/bare?jwt=not.a.token", True, id="query-malformed"),
        pytest.param("/bare?jwt=a&jwt=b", True, id="query-repeated"),
        pytest.param("/single?jwt=not.a.token", True, id="single-use-query"),
        pytest.param("/bare", False, id="no-token"),
        pytest.param("/single", False, id="single-use-no-token"),
    ],
)
def test_a_refusal_gets_the_same_headers(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    url: str,
    query: bool,
) -> None:
    before = installation_rows()
    response = client.get(url)
    assert response.status_code == 401
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert "Authorization" in vary(response)
    if query:
        assert cache_control(response) == {"no-store", "private"}
        assert response["Referrer-Policy"] == "no-referrer"
    else:
        assert response["Referrer-Policy"] == "same-origin"  # SecurityMiddleware's
        assert cache_control(response) == ({"private"} if "single" in url else set())


def test_an_async_views_answers_get_the_headers(
    installation: Installation, sent_signals: SignalRecorder
) -> None:
    ok = async_request("GET", f"/async?jwt={token('/async', 'GET')}")
    assert ok.status_code == 200
    assert cache_control(ok) == {"no-store", "private"}
    assert ok["Referrer-Policy"] == "no-referrer"
    assert "Authorization" in vary(ok)
    before = installation_rows()
    views_before = called_views()

    refused = async_request("GET", "/async?jwt=not.a.token")

    assert refused.status_code == 401
    assert called_views() == views_before
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert cache_control(refused) == {"no-store", "private"}
    assert refused["Referrer-Policy"] == "no-referrer"
    assert "Authorization" in vary(refused)
