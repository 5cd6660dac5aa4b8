"""Without httpx, importing the client says which extra to install; the rest of the app
never needs it."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_without_httpx_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # "import httpx" raises ImportError
    monkeypatch.delitem(sys.modules, "bitbucket_install.client", raising=False)
    with pytest.raises(ImportError, match=r"django-bitbucket-install\[client\]") as raised:
        importlib.import_module("bitbucket_install.client")
    assert isinstance(raised.value.__cause__, ImportError)


def test_the_rest_of_the_app_imports_without_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    # The client's pure modules, imported afresh (modules that register anything, such as
    # the checks, are not: a second import would register twice).
    for name in ("outgoing", "grant", "ratelimit", "api_errors"):
        monkeypatch.delitem(sys.modules, f"bitbucket_install.{name}", raising=False)
        module = importlib.import_module(f"bitbucket_install.{name}")
        assert module.__name__ == f"bitbucket_install.{name}"
