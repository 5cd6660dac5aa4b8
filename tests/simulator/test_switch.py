"""The simulator runs only with DEBUG on and ``BITBUCKET_INSTALL_SIMULATOR = True``; no
production module imports it, and with it off its URL is a 404 that loads none of it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.http import Http404
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings

from bitbucket_install.simulator.views import simulator_view
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.simulator.helpers import (
    SIMULATOR_URL,
    Router,
    loopback_link,
    open_link,
    registered_link,
)

PACKAGE = Path(__file__).resolve().parents[2] / "bitbucket_install"
ROOT = PACKAGE.parent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("debug", "enabled"), [(False, True), (True, False), (False, False)], ids=str
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_simulator_is_a_404_unless_debug_and_setting(
    settings: Settings,
    router: Router,
    sent_signals: SignalRecorder,
    debug: bool,
    enabled: bool,
    method: str,
) -> None:
    settings.DEBUG = debug
    settings.BITBUCKET_INSTALL_SIMULATOR = enabled
    before = installation_rows()
    client = Client(enforce_csrf_checks=True)
    response = open_link(client, method, registered_link())
    assert response.status_code == 404
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize("value", ["off", "False", "0", "", "on", "True", 1, [True]], ids=repr)
@pytest.mark.parametrize("method", ["get", "post"])
def test_only_true_turns_it_on(
    settings: Settings,
    router: Router,
    sent_signals: SignalRecorder,
    value: Any,
    method: str,
) -> None:
    """An environment variable read as a string ("off" is truthy) must not switch it on."""
    settings.BITBUCKET_INSTALL_SIMULATOR = value
    before = installation_rows()
    client = Client(enforce_csrf_checks=True)
    for path in (registered_link(), loopback_link()):
        response = open_link(client, method, path)
        assert response.status_code == 404
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_the_install_button_points_at_the_simulator_when_it_is_on(settings: Settings) -> None:
    """No BITBUCKET_INSTALL_AUTHORIZE_URL: with the simulator on, the button goes to it."""
    response = Client().post("/bitbucket/install/")
    assert response.status_code == 303
    assert response["Location"].startswith(SIMULATOR_URL + "?")
    settings.BITBUCKET_INSTALL_SIMULATOR = "True"
    response = Client().post("/bitbucket/install/")
    assert response["Location"].startswith("https://bitbucket.org/site/addons/authorize?")


def test_the_view_refuses_to_run_when_off_even_if_routed_to_directly(
    settings: Settings, router: Router
) -> None:
    settings.DEBUG = False
    with pytest.raises(Http404):
        simulator_view(RequestFactory().get(registered_link()))
    assert router.calls == []


# The simulator's URL with the simulator off, after importing every module of the app
# but the simulator's: nothing of the simulator may be loaded.
IMPORT_EVERYTHING_BUT_THE_SIMULATOR = """
import importlib, json, pkgutil, sys
import django
django.setup()
import bitbucket_install

def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name == "bitbucket_install.simulator":
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            walk(module)

walk(bitbucket_install)
from django.test import Client
for method in ("get", "post"):
    status = getattr(Client(), method)("/bitbucket/simulator/authorize/?addon_key=a").status_code
    assert status == 404, status
print(json.dumps(sorted(name for name in sys.modules if "simulator" in name)))
"""


def test_no_production_module_imports_the_simulator() -> None:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    environment.pop("DATABASE_URL", None)
    finished = subprocess.run(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", IMPORT_EVERYTHING_BUT_THE_SIMULATOR],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(finished.stdout) == []


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def test_the_base_module_imports_none_of_the_others_and_no_django() -> None:
    imported = _imported_modules(PACKAGE / "simulator" / "base.py")
    assert {"bitbucket_install.authorize", "bitbucket_install.tokens"} <= imported
    assert not any(name.startswith("bitbucket_install.simulator") for name in imported)
    assert not any(name.split(".")[0] == "django" for name in imported)


def test_only_the_urls_dispatcher_names_the_simulator_outside_its_package() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "simulator" not in path.relative_to(PACKAGE).parts
        and any(name.startswith("bitbucket_install.simulator") for name in _imported_modules(path))
    )
    assert importers == ["urls.py"]
