"""Install links (docs/protocol.rst, "The install link"): the exact URL shapes and one test
per rule."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from bitbucket_install.authorize import (
    InstallLink,
    Problem,
    _split,
    host_of,
    is_loopback,
    is_plain_origin,
    is_under,
)
from bitbucket_install.exceptions import (
    BitbucketInstallError,
    ConfigurationError,
    InstallLinkError,
)

AUTHORIZE = "https://bitbucket.org/site/addons/authorize"
BASE = "https://app.example.com"
CALLBACK = "https://app.example.com/bitbucket/callback/"


# --- The two URL shapes, byte for byte ------------------------------------------------


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        pytest.param(
            InstallLink(AUTHORIZE, addon_key="example-app", redirect_uri=CALLBACK, base_url=BASE),
            "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F",
            id="addon_key-redirect",
        ),
        pytest.param(
            InstallLink(AUTHORIZE, addon_key="example-app"),
            "https://bitbucket.org/site/addons/authorize?addon_key=example-app",
            id="addon_key-no-redirect",
        ),
        pytest.param(
            InstallLink(AUTHORIZE, addon_key="com.example.My_App-2"),
            "https://bitbucket.org/site/addons/authorize?addon_key=com.example.My_App-2",
            id="addon_key-dots-underscore",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                addon_key="a123456789b123456789c123456789d123456789e123456789f123456789wxyz",
            ),
            "https://bitbucket.org/site/addons/authorize"
            "?addon_key=a123456789b123456789c123456789d123456789e123456789f123456789wxyz",
            id="addon_key-64-chars",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                addon_key="example-app",
                redirect_uri="https://app.example.com/bitbucket/callback/?next=%2Fa%20b&x=1+2",
                base_url=BASE,
            ),
            "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
            "%3Fnext%3D%252Fa%2520b%26x%3D1%2B2",
            id="redirect-query-percent-space-plus-ampersand",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                addon_key="example-app",
                redirect_uri="https://app.example.com/bitbucket/ünï/callback/",
                base_url="https://app.example.com/bitbucket",
            ),
            "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2F%C3%BCn%C3%AF%2Fcallback%2F",
            id="redirect-unicode-path",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                addon_key="example-app",
                redirect_uri="https://bücher.example/cb/",
                base_url="https://bücher.example",
            ),
            "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
            "&redirect_uri=https%3A%2F%2Fb%C3%BCcher.example%2Fcb%2F",
            id="redirect-unicode-host",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                descriptor_uri="https://app.example.com/bitbucket/atlassian-connect.json",
                redirect_uri=CALLBACK,
                base_url=BASE,
            ),
            "https://bitbucket.org/site/addons/authorize"
            "?descriptor_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fatlassian-connect.json"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F",
            id="descriptor-redirect",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                descriptor_uri="https://app.example.com/bitbucket/atlassian-connect.json",
            ),
            "https://bitbucket.org/site/addons/authorize"
            "?descriptor_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fatlassian-connect.json",
            id="descriptor-no-redirect",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                descriptor_uri="https://app.example.com/d.json?team=a&b=c+d&name=ünï&p=50%25#v2",
            ),
            "https://bitbucket.org/site/addons/authorize"
            "?descriptor_uri=https%3A%2F%2Fapp.example.com%2Fd.json%3Fteam%3Da%26b%3Dc%2Bd"
            "%26name%3D%C3%BCn%C3%AF%26p%3D50%2525%23v2",
            id="descriptor-query-plus-unicode-percent-hash",
        ),
        pytest.param(
            InstallLink(
                AUTHORIZE,
                descriptor_uri="https://app.example.com:8443/apps/my%20app/atlassian-connect.json",
                redirect_uri="https://app.example.com/x?a=b&c=%26",
                base_url=BASE,
            ),
            "https://bitbucket.org/site/addons/authorize"
            "?descriptor_uri=https%3A%2F%2Fapp.example.com%3A8443%2Fapps%2Fmy%2520app"
            "%2Fatlassian-connect.json"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fx%3Fa%3Db%26c%3D%2526",
            id="descriptor-port-encoded-space",
        ),
        pytest.param(
            InstallLink(
                "https://bitbucket.example.test/site/addons/authorize?lang=en",
                addon_key="example-app",
                redirect_uri=CALLBACK,
                base_url=BASE,
            ),
            "https://bitbucket.example.test/site/addons/authorize?lang=en&addon_key=example-app"
            "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F",
            id="authorize-url-with-query",
        ),
        pytest.param(
            InstallLink(
                "http://127.0.0.1:8000/simulator/authorize",
                descriptor_uri="http://localhost:8000/bitbucket/atlassian-connect.json",
                redirect_uri="http://localhost:8000/bitbucket/callback/",
                base_url="http://localhost:8000",
            ),
            "http://127.0.0.1:8000/simulator/authorize"
            "?descriptor_uri=http%3A%2F%2Flocalhost%3A8000%2Fbitbucket%2Fatlassian-connect.json"
            "&redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Fbitbucket%2Fcallback%2F",
            id="loopback-simulator",
        ),
    ],
)
def test_url_shape_byte_for_byte(link: InstallLink, expected: str) -> None:
    assert link.url() == expected


def test_redirect_uri_is_encoded_exactly_once() -> None:
    from urllib.parse import parse_qs, urlsplit

    redirect = "https://app.example.com/cb/?next=%2Fa%20b&x=1+2&u=é"
    url = InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect, base_url=BASE).url()
    assert parse_qs(urlsplit(url).query) == {"addon_key": ["k"], "redirect_uri": [redirect]}


# --- One test per rule violation ------------------------------------------------------


def _raises(link: InstallLink, rule: str) -> InstallLinkError:
    with pytest.raises(InstallLinkError) as caught:
        link.url()
    error = caught.value
    assert error.rule == rule
    assert isinstance(error, ImproperlyConfigured)
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, BitbucketInstallError)
    assert str(error)
    rules = [problem.rule for problem in link.problems()]
    assert rule in rules
    return error


@pytest.mark.parametrize(
    "authorize_url",
    [
        "bitbucket.org/site/addons/authorize",
        "/site/addons/authorize",
        "ftp://bitbucket.org/site/addons/authorize",
        "https:///site/addons/authorize",
        "https://bitbucket.org:99999/site/addons/authorize",
        "https://bitbucket.org:port/site/addons/authorize",
        "https://bitbucket.org/site/addons/authorize ",
        "",
        "https://bitbucket.org/site/addons/authorize#top",
        "https://bitbucket.org/site/addons/authorize#",
    ],
)
def test_rule_authorize_url_absolute(authorize_url: str) -> None:
    _raises(InstallLink(authorize_url, addon_key="example-app"), "authorize_url_absolute")


def test_rule_one_app_identity_both() -> None:
    link = InstallLink(
        AUTHORIZE,
        addon_key="example-app",
        descriptor_uri="https://app.example.com/atlassian-connect.json",
    )
    error = _raises(link, "one_app_identity")
    assert "Both" in str(error)


def test_rule_one_app_identity_neither() -> None:
    error = _raises(InstallLink(AUTHORIZE), "one_app_identity")
    assert "Neither" in str(error)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "my app",
        "my/app",
        "my&app",
        "ünï",
        "a123456789b123456789c123456789d123456789e123456789f123456789wxyz!",
        "a123456789b123456789c123456789d123456789e123456789f123456789wxyz5",
        "app\n",
    ],
)
def test_rule_addon_key_format(key: str) -> None:
    _raises(InstallLink(AUTHORIZE, addon_key=key), "addon_key_format")


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "atlassian-connect.json",
        "/bitbucket/atlassian-connect.json",
        "//app.example.com/atlassian-connect.json",
        "file:///etc/atlassian-connect.json",
        "https://app.example.com/my app/atlassian-connect.json",
        "",
    ],
)
def test_rule_descriptor_uri_absolute(descriptor_uri: str) -> None:
    _raises(InstallLink(AUTHORIZE, descriptor_uri=descriptor_uri), "descriptor_uri_absolute")


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "http://app.example.com/atlassian-connect.json",
        "http://10.0.0.1/atlassian-connect.json",
        "http://localhost.evil.test/atlassian-connect.json",
        "http://127.0.0.1.evil.test/atlassian-connect.json",
    ],
)
def test_rule_descriptor_uri_https(descriptor_uri: str) -> None:
    _raises(InstallLink(AUTHORIZE, descriptor_uri=descriptor_uri), "descriptor_uri_https")


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "http://localhost:8000/atlassian-connect.json",
        "http://127.0.0.1/atlassian-connect.json",
        "http://127.8.9.10:8000/atlassian-connect.json",
        "http://[::1]:8000/atlassian-connect.json",
    ],
)
def test_warning_descriptor_uri_loopback_http(descriptor_uri: str) -> None:
    link = InstallLink(AUTHORIZE, descriptor_uri=descriptor_uri)
    assert link.problems() == [
        Problem(
            "descriptor_uri_https_loopback_http",
            "The descriptor URI uses plain HTTP; Bitbucket refuses it.",
            "Only the development simulator accepts HTTP on a loopback host. "
            "Use an HTTPS URL for real installs.",
            is_warning=True,
        )
    ]
    # A warning does not stop the link from being built.
    assert link.url().startswith(AUTHORIZE + "?descriptor_uri=http%3A%2F%2F")


def test_warning_base_url_loopback_http() -> None:
    link = InstallLink(
        AUTHORIZE,
        addon_key="example-app",
        redirect_uri="http://localhost:8000/bitbucket/callback/",
        base_url="http://localhost:8000",
    )
    problems = link.problems()
    assert [(p.rule, p.is_warning) for p in problems] == [("base_url_https_loopback_http", True)]
    assert problems[0].message == "The base URL uses plain HTTP; Bitbucket refuses it."
    assert link.url() == (
        "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
        "&redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Fbitbucket%2Fcallback%2F"
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "/bitbucket/callback/",
        "app.example.com/bitbucket/callback/",
        "//app.example.com/bitbucket/callback/",
        "ftp://app.example.com/bitbucket/callback/",
        "https:///bitbucket/callback/",
        "https://app.example.com/bitbucket/call back/",
        "https://app.example.com/bitbucket/callback/\n",
        "https://app.example.com:65536/bitbucket/callback/",
        "",
    ],
)
def test_rule_redirect_uri_absolute(redirect_uri: str) -> None:
    _raises(
        InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect_uri, base_url=BASE),
        "redirect_uri_absolute",
    )


@pytest.mark.parametrize(
    "base_url", [None, "", "app.example.com", "/app", "ftp://app.example.com", "https://"]
)
def test_rule_base_url_absolute(base_url: str | None) -> None:
    _raises(
        InstallLink(AUTHORIZE, addon_key="k", redirect_uri=CALLBACK, base_url=base_url),
        "base_url_absolute",
    )


def test_bad_base_url_is_named_even_when_the_redirect_uri_is_bad_too() -> None:
    # With a base URL missing its scheme, the default redirect URI comes out relative as well:
    # the user must be told about the base URL, which is the thing to fix.
    link = InstallLink(
        AUTHORIZE, addon_key="k", redirect_uri=":///bitbucket/callback/", base_url="app.example"
    )
    assert [p.rule for p in link.problems()] == ["base_url_absolute", "redirect_uri_absolute"]
    _raises(link, "base_url_absolute")


@pytest.mark.parametrize(
    ("redirect_uri", "base_url"),
    [
        ("http://app.example.com/bitbucket/callback/", "http://app.example.com"),
        ("http://10.1.2.3/cb/", "http://10.1.2.3"),
    ],
)
def test_rule_base_url_https(redirect_uri: str, base_url: str) -> None:
    _raises(
        InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect_uri, base_url=base_url),
        "base_url_https",
    )


@pytest.mark.parametrize(
    ("redirect_uri", "base_url"),
    [
        ("https://app.example.com/bitbucket/callback/{user}", BASE),
        ("https://app.example.com/bitbucket/callback/?ws={workspace.uuid}", BASE),
        ("https://app.example.com/bitbucket/callback}", BASE),
        ("https://app.example.com/bitbucket/callback/", "https://app.example.com/{path}"),
    ],
)
def test_rule_plain_url(redirect_uri: str, base_url: str) -> None:
    _raises(
        InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect_uri, base_url=base_url),
        "plain_url",
    )


NOT_UNDER = [
    ("https://app.example.com.evil.test/app/cb", "https://app.example.com/app"),
    ("https://evil.test/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app-other/cb", "https://app.example.com/app"),
    ("https://app.example.com/appendix", "https://app.example.com/app"),
    ("https://app.example.com/", "https://app.example.com/app"),
    ("https://app.example.com/App/cb", "https://app.example.com/app"),
    ("https://app.example.com/%61pp/cb", "https://app.example.com/app"),
    ("https://app.example.com:8443/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://app.example.com:8443/app"),
    ("https://app.example.com:80/app/cb", "https://app.example.com/app"),
    ("https://app.example.com:0/app/cb", "https://app.example.com/app"),
    ("http://app.example.com/app/cb", "https://app.example.com/app"),
    ("http://app.example.com:443/app/cb", "https://app.example.com/app"),
    ("https://app.example.com@evil.test/app/cb", "https://app.example.com/app"),
    ("https://app.example.com:443@evil.test/app/cb", "https://app.example.com/app"),
    ("https://user@app.example.com/app/cb", "https://app.example.com/app"),
    ("https://user:pw@app.example.com/app/cb", "https://app.example.com/app"),
    ("https://:pw@app.example.com/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://user@app.example.com/app"),
    ("https://app.example.com/app/../evil", "https://app.example.com/app"),
    ("https://app.example.com/app/./../evil", "https://app.example.com/app"),
    ("https://app.example.com/app/%2e%2e/evil", "https://app.example.com/app"),
    ("https://app.example.com/app/%2E%2E/evil", "https://app.example.com/app"),
    ("https://app.example.com/app/.%2e/evil", "https://app.example.com/app"),
    ("https://app.example.com/app/%2e/cb", "https://app.example.com/app"),
    ("https://app.example.com/app/cb/..", "https://app.example.com/app"),
    ("https://app.example.com/app/x\\..\\..\\evil", "https://app.example.com/app"),
    ("https://app.example.com/app\\..\\evil", "https://app.example.com/app"),
    ("https://app.example.com/app/cb#frag", "https://app.example.com/app"),
    ("https://app.example.com/app/cb#", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://app.example.com/app?x=1"),
    ("https://app.example.com/app/cb", "https://app.example.com/app#x"),
    ("https://app.example.com/app/cb", "https://app.example.com/app#"),
]

UNDER = [
    ("https://app.example.com/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app", "https://app.example.com/app"),
    ("https://app.example.com/app/", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://app.example.com/app/"),
    ("https://app.example.com/app/cb?x=1&y=%2F", "https://app.example.com/app"),
    ("https://app.example.com/anything", "https://app.example.com"),
    ("https://app.example.com", "https://app.example.com/"),
    ("https://app.example.com:443/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://app.example.com:443/app"),
    ("https://APP.Example.COM/app/cb", "https://app.example.com/app"),
    ("https://app.example.com/app/cb", "https://APP.EXAMPLE.COM/app"),
    ("https://app.example.com:8443/app/cb", "https://app.example.com:8443/app"),
    ("http://localhost:80/cb", "http://localhost"),
    ("https://app.example.com/app/..cb/x", "https://app.example.com/app"),
]


@pytest.mark.parametrize(("redirect_uri", "base_url"), NOT_UNDER)
def test_rule_redirect_uri_under_base_url(redirect_uri: str, base_url: str) -> None:
    _raises(
        InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect_uri, base_url=base_url),
        "redirect_uri_under_base_url",
    )


@pytest.mark.parametrize(("redirect_uri", "base_url"), UNDER)
def test_redirect_uri_under_base_url_accepted(redirect_uri: str, base_url: str) -> None:
    link = InstallLink(AUTHORIZE, addon_key="k", redirect_uri=redirect_uri, base_url=base_url)
    assert [p for p in link.problems() if not p.is_warning] == []
    assert link.url().startswith(AUTHORIZE + "?addon_key=k&redirect_uri=http")


@pytest.mark.parametrize(
    ("redirect_uri", "base_url", "expected"),
    [
        *((r, b, False) for r, b in NOT_UNDER if "#" not in r + b),
        *((r, b, True) for r, b in UNDER),
    ],
)
def test_is_under_compares_parts(redirect_uri: str, base_url: str, expected: bool) -> None:
    url, base = _split(redirect_uri), _split(base_url)
    assert url is not None
    assert base is not None
    assert is_under(url, base) is expected


def test_base_url_is_checked_even_without_a_redirect_uri() -> None:
    # A link without redirect_uri (the app's URLs not included yet) still names a bad
    # base URL, so the system checks report it in the same run.
    _raises(
        InstallLink(AUTHORIZE, addon_key="example-app", base_url="not a url"), "base_url_absolute"
    )
    plain = InstallLink(AUTHORIZE, addon_key="example-app", base_url="http://app.example.com")
    _raises(plain, "base_url_https")
    link = InstallLink(AUTHORIZE, addon_key="example-app", base_url=BASE)
    assert link.problems() == []
    assert link.url() == AUTHORIZE + "?addon_key=example-app"


def test_without_base_url_and_redirect_uri_only_the_link_itself_is_checked() -> None:
    link = InstallLink(AUTHORIZE, addon_key="example-app")
    assert link.problems() == []
    assert link.url() == AUTHORIZE + "?addon_key=example-app"


def test_problems_of_a_good_link_are_empty() -> None:
    link = InstallLink(AUTHORIZE, addon_key="example-app", redirect_uri=CALLBACK, base_url=BASE)
    assert link.problems() == []


def test_every_problem_has_message_and_hint() -> None:
    links = [
        InstallLink("x"),
        InstallLink(AUTHORIZE, addon_key="a b"),
        InstallLink(AUTHORIZE, addon_key="a", descriptor_uri="https://x"),
        InstallLink(AUTHORIZE),
        InstallLink(AUTHORIZE, descriptor_uri="x"),
        InstallLink(AUTHORIZE, descriptor_uri="http://x"),
        InstallLink(AUTHORIZE, descriptor_uri="http://localhost"),
        InstallLink(AUTHORIZE, addon_key="a", redirect_uri="x", base_url=BASE),
        InstallLink(AUTHORIZE, addon_key="a", redirect_uri=CALLBACK),
        InstallLink(AUTHORIZE, addon_key="a", redirect_uri="http://x/", base_url="http://x"),
        InstallLink(AUTHORIZE, addon_key="a", redirect_uri=CALLBACK + "{x}", base_url=BASE),
        InstallLink(AUTHORIZE, addon_key="a", redirect_uri="https://e/", base_url=BASE),
        InstallLink(AUTHORIZE, addon_key="a", authorize_origins=frozenset()),
        InstallLink(AUTHORIZE, descriptor_uri="https://e/d.json", base_url=BASE),
    ]
    seen: set[str] = set()
    for link in links:
        for problem in link.problems():
            seen.add(problem.rule)
            assert problem.message.strip()
            assert problem.hint.strip()
    assert seen == {
        "authorize_url_absolute",
        "addon_key_format",
        "one_app_identity",
        "descriptor_uri_absolute",
        "descriptor_uri_https",
        "descriptor_uri_https_loopback_http",
        "redirect_uri_absolute",
        "base_url_absolute",
        "base_url_https",
        "plain_url",
        "redirect_uri_under_base_url",
        "authorize_url_bitbucket",
        "descriptor_uri_on_base_host",
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost/", True),
        ("http://LOCALHOST:8000/", True),
        ("http://127.0.0.1/", True),
        ("http://127.255.0.9/", True),
        ("http://[::1]/", True),
        ("http://localhost.example/", False),
        ("http://10.0.0.1/", False),
        ("http://[::2]/", False),
        ("http://0.0.0.0/", False),
        ("http://example.com/", False),
    ],
)
def test_is_loopback(url: str, expected: bool) -> None:
    parts = _split(url)
    assert parts is not None
    assert is_loopback(parts) is expected


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "https://[not-an-ip]/atlassian-connect.json",
        "https://[::g]/atlassian-connect.json",
        # An IPvFuture literal: urlsplit accepts it on every version, it is no IPv6 host.
        "https://[v1.abc]/atlassian-connect.json",
    ],
)
def test_bracketed_host_that_is_not_an_ipv6_address_is_not_absolute(descriptor_uri: str) -> None:
    """Python 3.10's urlsplit accepts these; the link must refuse them on every version."""
    link = InstallLink(authorize_url=AUTHORIZE, descriptor_uri=descriptor_uri)
    assert [problem.rule for problem in link.problems()] == ["descriptor_uri_absolute"]


# --- Production: the authorize page on Bitbucket, the descriptor on this site ---------

BITBUCKET = frozenset({"https://bitbucket.org", "https://api.bitbucket.org"})


@pytest.mark.parametrize(
    "authorize_url",
    [
        "https://bitbucket.org/site/addons/authorize",
        "https://BITBUCKET.org/site/addons/authorize?x=1",
        "https://bitbucket.org:443/site/addons/authorize",
    ],
)
def test_authorize_url_on_a_bitbucket_origin_is_accepted(authorize_url: str) -> None:
    link = InstallLink(authorize_url, addon_key="example-app", authorize_origins=BITBUCKET)
    assert link.problems() == []
    assert link.url().endswith("addon_key=example-app")


@pytest.mark.parametrize(
    "authorize_url",
    [
        "https://evil.test/site/addons/authorize",
        "https://bitbucket.org.evil.test/site/addons/authorize",
        "https://bitbucket.org:8443/site/addons/authorize",
        "http://bitbucket.org/site/addons/authorize",
        "https://user@bitbucket.org/site/addons/authorize",
        "http://127.0.0.1:8000/bitbucket/simulator/authorize/",
    ],
)
def test_rule_authorize_url_bitbucket(authorize_url: str) -> None:
    link = InstallLink(authorize_url, addon_key="example-app", authorize_origins=BITBUCKET)
    error = _raises(link, "authorize_url_bitbucket")
    assert "https://api.bitbucket.org, https://bitbucket.org" in str(error)
    assert [p.rule for p in link.problems()] == ["authorize_url_bitbucket"]


def test_rule_authorize_url_bitbucket_wants_https_even_on_a_listed_http_origin() -> None:
    origins = frozenset({"http://bitbucket.internal"})
    link = InstallLink(
        "http://bitbucket.internal/authorize", addon_key="k", authorize_origins=origins
    )
    _raises(link, "authorize_url_bitbucket")


def test_rule_authorize_url_bitbucket_with_no_origins_says_none() -> None:
    link = InstallLink(AUTHORIZE, addon_key="k", authorize_origins=frozenset())
    assert "(none)" in str(_raises(link, "authorize_url_bitbucket"))


def test_authorize_url_anywhere_without_origins() -> None:
    # What the system checks and the start view use with DEBUG on: test doubles, simulator.
    link = InstallLink("http://127.0.0.1:8000/simulator/", addon_key="k")
    assert link.problems() == []


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "https://cdn.example.net/atlassian-connect.json",
        "https://app.example.com.evil.test/atlassian-connect.json",
        "https://evil.test/app.example.com/atlassian-connect.json",
        "https://example.com/atlassian-connect.json",
    ],
)
def test_rule_descriptor_uri_on_base_host(descriptor_uri: str) -> None:
    link = InstallLink(AUTHORIZE, descriptor_uri=descriptor_uri, base_url=BASE)
    error = _raises(link, "descriptor_uri_on_base_host")
    assert repr(descriptor_uri) in str(error)
    assert [p.rule for p in link.problems()] == ["descriptor_uri_on_base_host"]


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        "https://app.example.com/bitbucket/atlassian-connect.json",
        "https://APP.example.com/d.json",
        "https://app.example.com:8443/d.json",
    ],
)
def test_descriptor_uri_on_the_base_host_is_accepted(descriptor_uri: str) -> None:
    assert InstallLink(AUTHORIZE, descriptor_uri=descriptor_uri, base_url=BASE).problems() == []


def test_descriptor_host_is_not_compared_with_a_bad_base_url() -> None:
    link = InstallLink(AUTHORIZE, descriptor_uri="https://cdn.example.net/d.json", base_url="x")
    assert [p.rule for p in link.problems()] == ["base_url_absolute"]
    link = InstallLink(AUTHORIZE, descriptor_uri="https://cdn.example.net/d.json")
    assert link.problems() == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://App.Example.com:8443/x", "app.example.com"),
        ("http://[::1]:8000/", "::1"),
        ("app.example.com", None),
        ("https://exa\x00mple.com", None),
        ("", None),
    ],
)
def test_host_of(url: str, expected: str | None) -> None:
    assert host_of(url) == expected


@pytest.mark.parametrize(
    "value",
    [
        "https://bitbucket.org",
        "HTTPS://Bitbucket.org",
        "https://api.bitbucket.org:443",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
    ],
)
def test_plain_origins(value: str) -> None:
    assert is_plain_origin(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://bitbucket.org/",
        "https://bitbucket.org/site",
        "https://bitbucket.org?",
        "https://bitbucket.org?x=1",
        "https://bitbucket.org#",
        "https://user@bitbucket.org",
        "https://:pw@bitbucket.org",
        "bitbucket.org",
        "//bitbucket.org",
        "ftp://bitbucket.org",
        "https://bit bucket.org",
        "https://bitbucket.org\t",
        "https://bitbucket.org:99999",
        "",
        None,
        5,
        b"https://bitbucket.org",
    ],
)
def test_not_plain_origins(value: object) -> None:
    assert not is_plain_origin(value)
