"""The simulator's pure helpers (bitbucket_install/simulator/base.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from bitbucket_install.simulator.base import (
    Descriptor,
    LinkParameters,
    SimulatedError,
    Workspace,
    add_query,
    check_descriptor,
    error_target,
    is_loopback_url,
    parse_link,
    success_url,
)
from bitbucket_install.tokens import query_string_hash, verify_token
from tests.simulator.helpers import APP_KEY, BASE_URL, CALLBACK_URL, DESCRIPTOR_URL, OTHER_APP


@pytest.mark.parametrize(
    ("name", "expected_name", "expected_slug"),
    [
        ("", "Demo workspace", "demo-workspace"),
        ("  Acme   Team ", "Acme Team", "acme-team"),
        ("日本", "日本", "workspace"),
        ("x" * 150, "x" * 100, "x" * 100),
        ("Acme\u00a0\u2003Team", "Acme Team", "acme-team"),
        ("\u202egnp.exe", "gnp.exe", "gnp-exe"),
        ("Ac\u200bme\u200d", "Acme", "acme"),
        ("Acme\x00\x1b[2J\r\nTeam\x7f", "Acme[2JTeam", "acme-2jteam"),
        ("\u2066\u2069\ufeff", "Demo workspace", "demo-workspace"),
    ],
)
def test_workspace_names(name: str, expected_name: str, expected_slug: str) -> None:
    workspace = Workspace.named(name)
    assert workspace.name == expected_name
    assert workspace.slug == expected_slug
    assert workspace.uuid.startswith("{")
    assert workspace.uuid.endswith("}")
    assert Workspace.named(expected_name.upper()).uuid == workspace.uuid


def test_add_query_keeps_the_existing_query() -> None:
    assert add_query("https://a.example/cb?x=1", [("k", "a b/c")]) == (
        "https://a.example/cb?x=1&k=a%20b%2Fc"
    )
    assert add_query("https://a.example/cb", [("k", "v")]) == "https://a.example/cb?k=v"


def test_success_url_signs_the_query_it_sends_over_the_path_it_was_given() -> None:
    url = success_url(
        "https://a.example/app/cb/per-flow-value/?next=%2Fhome",
        "connection:7",
        "s3cret",
        "/app",
        send_jwt=True,
    )
    parts = urlsplit(url)
    assert parts.path == "/app/cb/per-flow-value/"
    assert parts.query.startswith("next=%2Fhome&clientKey=connection%3A7&jwt=")
    token = parts.query.rsplit("&jwt=", 1)[1]
    verify_token(
        token,
        "s3cret",
        qsh=query_string_hash(
            "GET", "/cb/per-flow-value/", "next=%2Fhome&clientKey=connection%3A7"
        ),
        issuer="connection:7",
    )
    unsigned = success_url("https://a.example/cb", "connection:7", "s", "", send_jwt=False)
    assert unsigned == "https://a.example/cb?clientKey=connection%3A7"


def test_error_target_needs_one_url_under_the_base() -> None:
    assert error_target({"redirect_uri": [CALLBACK_URL]}, BASE_URL) == CALLBACK_URL
    assert error_target({"redirect_uri": [CALLBACK_URL]}, None) is None
    assert error_target({"redirect_uri": [CALLBACK_URL]}, "not a url") is None
    assert error_target({"redirect_uri": [CALLBACK_URL, CALLBACK_URL]}, BASE_URL) is None
    assert error_target({}, BASE_URL) is None
    assert error_target({"redirect_uri": ["https://evil.example.org/"]}, BASE_URL) is None


def test_parse_link_reads_each_parameter_once() -> None:
    assert parse_link({"addon_key": [APP_KEY], "redirect_uri": [CALLBACK_URL]}) == (
        LinkParameters(APP_KEY, None, CALLBACK_URL)
    )
    with pytest.raises(SimulatedError) as raised:
        parse_link({"descriptor_uri": [DESCRIPTOR_URL, DESCRIPTOR_URL]})
    assert raised.value.code == "invalid_request"
    assert raised.value.description == "The descriptor_uri parameter is repeated."


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("https://127.8.9.10/x", True),
        ("http://[::1]:8000/x", True),
        ("http://localhost/x", True),
        ("http://localhost.example.com/x", False),
        ("http://127.0.0.1.nip.io/x", False),
        ("http://10.0.0.1/x", False),
        ("ftp://127.0.0.1/x", False),
        ("/x", False),
    ],
)
def test_is_loopback_url(url: str, expected: bool) -> None:
    assert is_loopback_url(url) is expected


def test_check_descriptor_tolerates_odd_optional_fields() -> None:
    descriptor = check_descriptor(
        {**OTHER_APP, "description": 3, "vendor": "Acme", "scopes": "account"}, None, BASE_URL
    )
    assert descriptor == Descriptor(
        key="other-app",
        name="Other app",
        description="",
        vendor_name="",
        base_url=BASE_URL,
        installed_path="/bitbucket/installed",
        scopes=(),
    )
    with_vendor = check_descriptor(
        {**OTHER_APP, "vendor": {"name": 7}, "scopes": ["a", 1]}, None, BASE_URL
    )
    assert with_vendor.vendor_name == ""
    assert with_vendor.scopes == ("a",)


@pytest.mark.parametrize(
    ("base_url", "site_base_url", "accepted"),
    [
        ("https://app.example.com/app", "https://app.example.com", True),
        ("https://app.example.com:443", "https://app.example.com/bitbucket", True),
        ("https://APP.example.com", "https://app.example.com", True),
        ("https://app.example.com", "https://app.example.com:8443", False),
        ("https://app.example.com", None, False),
        ("https://app.example.com", "not a url", False),
        ("http://127.0.0.1:9", None, True),
        ("https://evil.example.org", "https://app.example.com", False),
    ],
)
def test_check_descriptor_wants_a_base_url_on_the_site_or_loopback(
    base_url: str, site_base_url: str | None, accepted: bool
) -> None:
    data = {**OTHER_APP, "baseUrl": base_url}
    if accepted:
        assert check_descriptor(data, None, site_base_url).base_url == base_url
    else:
        with pytest.raises(SimulatedError) as raised:
            check_descriptor(data, None, site_base_url)
        assert raised.value.code == "invalid_descriptor"
