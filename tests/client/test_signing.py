"""Every request the client sends is signed over itself: checked on arrival by atlassian-jwt,
for every method, paths with braces, repeated and encoded query parameters, ``params=``,
bodies (never in the qsh), and an API base URL with a path."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from atlassian_jwt import url_utils

from bitbucket_install import __version__
from bitbucket_install.client import BitbucketClient
from bitbucket_install.models import Installation
from tests.client.conftest import make_installation
from tests.client.fake_bitbucket import APP_KEY, CLIENT_KEY, FakeBitbucket, running

UUID = "{b7ea02c9-0871-4858-a2a6-a190d7de977c}"
ESCAPED_UUID = "%7Bb7ea02c9-0871-4858-a2a6-a190d7de977c%7D"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def only_request(bitbucket: FakeBitbucket) -> tuple[str, str, dict[str, object]]:
    """(method, target, claims) of the one request the server got, which verified."""
    assert bitbucket.problems == []
    (received,) = bitbucket.received
    assert received.claims is not None
    return received.method, received.target, received.claims


def test_a_get_carries_bitbucket_flavoured_claims(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        response = bb.get("/2.0/repositories/my-workspace/my-repo")
    assert response.status_code == 200
    assert response.json()["path"] == "/2.0/repositories/my-workspace/my-repo"
    method, target, claims = only_request(bitbucket)
    assert (method, target) == ("GET", "/2.0/repositories/my-workspace/my-repo")
    assert claims["iss"] == APP_KEY
    assert claims["sub"] == CLIENT_KEY
    assert claims["exp"] - claims["iat"] == 180  # type: ignore[operator]
    assert "aud" not in claims
    assert claims["qsh"] == "9b3bfab498501e1997b7f832cbf5c30d1ca5176cce50c67b41478a6ea45b6bb7"
    received = bitbucket.received[0]
    assert received.headers["authorization"].startswith("JWT ey")
    assert received.headers["user-agent"] == f"django-bitbucket-install/{__version__}"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_every_method_is_signed_as_itself_and_the_body_stays_out(
    installation: Installation, bitbucket: FakeBitbucket, method: str
) -> None:
    path = "/2.0/repositories/my-workspace/my-repo/properties/my-app-key/settings"
    with BitbucketClient(installation) as bb:
        response = bb.request(method.lower(), path, json={"colour": "blue"})
    assert response.json()["method"] == method
    received_method, target, claims = only_request(bitbucket)
    assert (received_method, target) == (method, path)
    assert claims["qsh"] == sha256(f"{method}&{path}&")
    assert bitbucket.received[0].body == b'{"colour":"blue"}'


def test_the_shortcuts_send_their_method(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        answers = [
            bb.get("/2.0/addon").json()["method"],
            bb.post("/2.0/addon", json={}).json()["method"],
            bb.put("/2.0/addon", json={}).json()["method"],
            bb.patch("/2.0/addon", json={}).json()["method"],
            bb.delete("/2.0/addon").json()["method"],
        ]
    assert answers == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    assert bitbucket.problems == []
    assert [r.method for r in bitbucket.received] == answers
    assert [r.claims["qsh"] for r in bitbucket.received if r.claims] == [
        sha256(f"{method}&/2.0/addon&") for method in answers
    ]


def test_braces_go_escaped_and_are_signed_escaped(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get(f"/2.0/repositories/{UUID}/my-repo/")
    _, target, claims = only_request(bitbucket)
    assert target == f"/2.0/repositories/{ESCAPED_UUID}/my-repo/"
    # The trailing slash is sent, and left out of the canonical path.
    assert claims["qsh"] == "5e04e7c69a72f51e5d3d2be6852ec6c386c4f548742b6f2e6f48fe98b9768b24"


def test_a_user_uuid_with_a_colon(installation: Installation, bitbucket: FakeBitbucket) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/users/{557058:6dcdb6c9}/properties/my-app-key/settings")
    _, target, claims = only_request(bitbucket)
    assert target == "/2.0/users/%7B557058:6dcdb6c9%7D/properties/my-app-key/settings"
    assert claims["qsh"] == "39c6cc868ad224f01bbc52c88c918795cfd66163c54d4e777b625bf76a91b9b4"


def test_params_are_signed_as_sent(installation: Installation, bitbucket: FakeBitbucket) -> None:
    with BitbucketClient(installation) as bb:
        bb.get(
            "/2.0/repositories/my-workspace/my-repo/pullrequests",
            params={"state": "OPEN", "pagelen": 50},
        )
    _, target, claims = only_request(bitbucket)
    assert target == "/2.0/repositories/my-workspace/my-repo/pullrequests?state=OPEN&pagelen=50"
    assert claims["qsh"] == "fe3fb080892122ea6b6ec6b45f88808bc3880649912ee63f984fe2a0fec95c11"


def test_a_space_in_params_goes_as_percent_20(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get(
            "/2.0/repositories/my-workspace", params={"q": 'name ~ "api"', "sort": "-updated_on"}
        )
    _, target, claims = only_request(bitbucket)
    assert target == "/2.0/repositories/my-workspace?q=name%20~%20%22api%22&sort=-updated_on"
    assert claims["qsh"] == "a25c4f62c9bf622a8341d801efa1c596da9b965ecde6535777fdce5841e99c43"


def test_a_literal_plus_stays_a_plus(installation: Installation, bitbucket: FakeBitbucket) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/search", params={"q": "a+b c"})
    _, target, claims = only_request(bitbucket)
    assert target == "/2.0/search?q=a%2Bb%20c"
    assert claims["qsh"] == sha256("GET&/2.0/search&q=a%2Bb%20c")


def test_repeated_and_encoded_parameters(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get(
            "/2.0/repositories/my-workspace",
            params=[("role", "member"), ("fields", "values.name"), ("role", "admin"), ("é", "&=")],
        )
    _, target, claims = only_request(bitbucket)
    # httpx groups a repeated name's values where the name first appears.
    assert target == (
        "/2.0/repositories/my-workspace?role=member&role=admin&fields=values.name&%C3%A9=%26%3D"
    )
    canonical = (
        "GET&/2.0/repositories/my-workspace&%C3%A9=%26%3D&fields=values.name&role=admin,member"
    )
    assert url_utils.canonicalize_request("GET", target) == canonical
    assert claims["qsh"] == sha256(canonical)


def test_a_query_in_the_path_is_merged_with_params(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/x?b=2&b=1&keep=yes", params={"b": "3", "page": 2})
    _, target, claims = only_request(bitbucket)
    # httpx's merge: a name in params replaces the path's values of that name.
    assert target == "/2.0/x?b=3&keep=yes&page=2"
    assert claims["qsh"] == sha256("GET&/2.0/x&b=3&keep=yes&page=2")


def test_a_query_in_the_path_alone_is_sent_as_written(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/x?b=2&b=1&q=name%20~%20%22api%22&a=")
    _, target, claims = only_request(bitbucket)
    assert target == "/2.0/x?b=2&b=1&q=name%20~%20%22api%22&a="
    assert claims["qsh"] == sha256("GET&/2.0/x&a=&b=1,2&q=name%20~%20%22api%22")


def test_a_header_of_the_caller_cannot_replace_the_token(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.get("/2.0/user", headers={"Authorization": "Bearer other", "X-Extra": "1"})
    only_request(bitbucket)
    assert bitbucket.received[0].headers["authorization"].startswith("JWT ")
    assert bitbucket.received[0].headers["x-extra"] == "1"


def test_an_api_base_url_with_a_path_is_signed_relative_to_it(db: None) -> None:
    for bitbucket in running("/simulated/api"):
        from django.test import override_settings

        with override_settings(BITBUCKET_INSTALL_BITBUCKET_ORIGINS=[bitbucket.origin]):
            installation = make_installation(bitbucket.url + "/")
            with BitbucketClient(installation) as bb:
                bb.get("/2.0/addon/linkers", params={"page": 1})
        _, target, claims = only_request(bitbucket)
        assert target == "/simulated/api/2.0/addon/linkers?page=1"
        assert claims["qsh"] == sha256("GET&/2.0/addon/linkers&page=1")


def test_requests_share_one_pooled_connection(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        for _ in range(3):
            bb.get("/2.0/user")
    assert bitbucket.problems == []
    assert len({r.client_port for r in bitbucket.received}) == 1


def test_a_3xx_is_returned_not_followed(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    from tests.client.fake_bitbucket import Answer

    bitbucket.script.append(Answer(302, b"", {"Location": "https://elsewhere.test/x"}))
    with BitbucketClient(installation) as bb:
        response = bb.get("/2.0/repositories/w/r/src/main/file")
    assert response.status_code == 302
    assert len(bitbucket.received) == 1


def test_a_mock_transport_sees_the_signed_request(db: None) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    installation = make_installation("https://api.bitbucket.org")
    with BitbucketClient(installation, transport=httpx.MockTransport(handler)) as bb:
        assert bb.get("/2.0/user").json() == {"ok": True}
    (request,) = seen
    assert str(request.url) == "https://api.bitbucket.org/2.0/user"
    token = request.headers["Authorization"].removeprefix("JWT ")
    claims = json.loads(_b64(token.split(".")[1]))
    assert claims["qsh"] == sha256("GET&/2.0/user&")


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
