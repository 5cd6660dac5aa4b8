"""System checks: one ``manage.py check`` names every rule the settings break, each with an id
and a hint (a half-done configuration is reported whole, not one problem per run)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, URLResolver, get_resolver, reverse
from django.utils.module_loading import import_string

from bitbucket_install import replay, task_framework
from bitbucket_install.authorize import ADDON_KEY_PATTERN, host_of, is_plain_origin
from bitbucket_install.conf import (
    CLIENT_LIMITS,
    DURATIONS,
    WEBHOOK_MAX_BYTES_BOUNDS,
    app_settings,
    is_duration,
    is_strong_app_secret,
)
from bitbucket_install.descriptor import APP_OWNED_KEYS, FORGE_KEYS
from bitbucket_install.exceptions import TaskFrameworkMissing
from bitbucket_install.forge.invocation import IC_LABEL_PATTERN, is_ic_label
from bitbucket_install.forge.jwks import is_allowed_jwks_url
from bitbucket_install.identifiers import (
    ALL_EVENTS,
    MAX_EVENT_KEY_LENGTH,
    MIN_APP_SECRET_LENGTH,
    is_forge_app_id,
    is_webhook_subscription,
    origin,
)

# Stable ids; a retired id stays reserved and is never reused.
RULE_IDS = {
    "authorize_url_absolute": "E001",
    "one_app_identity": "E002",
    "addon_key_format": "E003",
    "descriptor_uri_absolute": "E004",
    "descriptor_uri_https": "E005",
    "redirect_uri_absolute": "E006",
    "base_url_absolute": "E007",
    "base_url_https": "E008",
    "plain_url": "E009",
    "redirect_uri_under_base_url": "E010",
    "descriptor_uri_https_loopback_http": "W001",
    "base_url_https_loopback_http": "W002",
    "authorize_url_bitbucket": "E018",
    "descriptor_uri_on_base_host": "E020",
}
REDIRECT_SETTINGS = ("SUCCESS_URL", "FAILURE_URL")
# Read as on only when they are True; anything else (the string "False" from an
# environment variable) is off, and W006 says so.
FLAG_SETTINGS = (
    "SIMULATOR",
    "TRUST_UNSIGNED_RETURNS",
    "WEBHOOK_TASKS",
    "CONFIRM_WITH_BITBUCKET",
    "POST_INSTALL_REDIRECT",
)
# Every URL name the app reverses (its button, install flow, descriptor and callbacks).
APP_URL_NAMES = (
    "start",
    "callback",
    "result",
    "descriptor",
    "installed",
    "uninstalled",
    "webhook",
    "landing",
    "forge_lifecycle",
)
KNOWN_CONTEXTS = {"account"}
UNSET = object()
SHOWN_LENGTH = 80


def _message(id_suffix: str, message: str, hint: str) -> CheckMessage:
    kind = Warning if id_suffix.startswith("W") else Error
    return kind(message, hint=hint, id=f"bitbucket_install.{id_suffix}")


def _raw(name: str) -> Any:
    """The setting as the project wrote it (``UNSET`` when it is not there)."""
    return getattr(settings, f"BITBUCKET_INSTALL_{name}", UNSET)


def _shown(value: object) -> str:
    """``repr(value)`` short enough for one message line (a 5000-character string, or an
    int too long for ``repr`` on Python 3.11+, would drown the report or crash it)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a number of more than 19 digits"
    text = repr(value)
    return text if len(text) <= SHOWN_LENGTH else text[: SHOWN_LENGTH - 3] + "..."


def missing_app_urls() -> list[str]:
    """The app's URL names the project's URLconf cannot reverse."""
    missing = []
    for name in APP_URL_NAMES:
        try:
            reverse(f"bitbucket_install:{name}")
        except NoReverseMatch:
            missing.append(f"bitbucket_install:{name}")
    return missing


@register(Tags.urls, "bitbucket_install")
def check_app_urls(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Without the app's URLs nothing works (and reversing them raised a bare
    ``NoReverseMatch`` out of ``check`` and ``migrate``). Checks that need them skip."""
    missing = missing_app_urls()
    if not missing:
        return []
    return [
        _message(
            "E022",
            f"The URLconf {settings.ROOT_URLCONF!r} does not include the app's URLs "
            f"({', '.join(missing)} cannot be reversed).",
            'Add path("bitbucket/", include("bitbucket_install.urls")) to its urlpatterns '
            "(from django.urls import include, path).",
        )
    ]


@register(Tags.security, "bitbucket_install")
def check_install_link(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every rule of the install link, in one run: the base URL, the app's identity and
    the authorize URL are each checked whatever the others are."""
    found = []
    base_missing = app_settings.BASE_URL is None
    if base_missing:
        found.append(
            _message(
                "E007",
                "BITBUCKET_INSTALL_BASE_URL is not set.",
                "Set it to the descriptor's baseUrl, e.g. https://app.example.com.",
            )
        )
    problems = app_settings.install_link().problems()
    base_bad = base_missing or any(p.rule == "base_url_absolute" for p in problems)
    default_redirect = app_settings.redirect_uri_is_default()
    for problem in problems:
        if problem.rule == "base_url_absolute" and base_missing:
            continue  # said above, without "None is not an absolute URL"
        if problem.rule == "redirect_uri_absolute" and default_redirect and base_bad:
            continue  # derived from the bad base URL (":///bitbucket/callback/"): fix that
        message = problem.message
        hint = problem.hint
        if problem.rule == "redirect_uri_under_base_url" and default_redirect:
            message += " It is the default redirect URI: the app's callback URL."
            hint = (
                "Include the app's URLs under the base URL's path (mind FORCE_SCRIPT_NAME "
                "behind a proxy), or set BITBUCKET_INSTALL_REDIRECT_URI to a URL under it "
                "that reaches the callback view."
            )
        found.append(_message(RULE_IDS[problem.rule], message, hint))
    return found


@register("bitbucket_install")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    return [
        *_check_durations(),
        *_check_client_limits(),
        *_check_shared_secret(),
        *_check_origins(),
        *_check_flags(),
        *_check_webhooks(),
        *_check_webhook_max_bytes(),
        *_check_tasks(),
        *_check_confirmation(),
    ]


def _out_of_bounds(
    bounds: dict[str, tuple[int, int, int]],
) -> Iterator[tuple[str, object, int, int, int, str]]:
    """Each setting of ``bounds`` that is set and not a whole number within them: its name,
    value, smallest, largest and default, and how the app reads it instead."""
    for name, (smallest, largest, default) in bounds.items():
        value = _raw(name)
        if value is UNSET or (is_duration(value) and smallest <= value <= largest):
            continue
        if is_duration(value):
            used = f"it is read as {min(max(value, smallest), largest)}"
        else:
            used = f"the default, {default}, is used"
        yield name, value, smallest, largest, default, used


def _check_durations() -> list[CheckMessage]:
    return [
        _message(
            "E011",
            f"BITBUCKET_INSTALL_{name} must be a whole number of seconds from {smallest} "
            f"to {largest}, not {_shown(value)}; {used}.",
            f"Give an int from {smallest} to {largest}, or remove the setting to use the "
            f"default ({default}). More would only weaken verification: the protocol "
            "needs no longer.",
        )
        for name, value, smallest, largest, default, used in _out_of_bounds(DURATIONS)
    ]


def _check_client_limits() -> list[CheckMessage]:
    return [
        _message(
            "E023",
            f"BITBUCKET_INSTALL_{name} must be a whole number from {smallest} to "
            f"{largest}, not {_shown(value)}; {used}.",
            f"Give an int from {smallest} to {largest}, or remove the setting to use the "
            f"default ({default}). Beyond them an API call would hold a worker, or "
            "retry against Bitbucket, for longer than any answer is worth.",
        )
        for name, value, smallest, largest, default, used in _out_of_bounds(CLIENT_LIMITS)
    ]


def _check_shared_secret() -> list[CheckMessage]:
    value = _raw("SHARED_SECRET")
    if value is UNSET or value is None or is_strong_app_secret(value):
        return []
    # Never the value itself: check output ends up in logs.
    if isinstance(value, str):
        what = f"has {len(value.strip())} characters (without surrounding blanks)"
    else:
        what = f"is not a string ({type(value).__name__})"
    return [
        _message(
            "E017",
            f"BITBUCKET_INSTALL_SHARED_SECRET {what}, too weak to use; it is ignored. It "
            "verifies return trips for every clientKey, so a short one can be guessed "
            "online.",
            f"Set it to the app's shared secret (at least {MIN_APP_SECRET_LENGTH} "
            "characters, not counting surrounding blanks), or remove the setting.",
        )
    ]


def _check_origins() -> list[CheckMessage]:
    value = _raw("BITBUCKET_ORIGINS")
    if value is UNSET:
        return []
    if isinstance(value, list | tuple):
        bad = [item for item in value if not is_plain_origin(item)]
        if value and not bad:
            return []
        problem = "is empty" if not value else f"has entries that are not origins: {_shown(bad)}"
    else:
        problem = f"is {_shown(value)}, not a list or tuple"
    return [
        _message(
            "E019",
            f"BITBUCKET_INSTALL_BITBUCKET_ORIGINS {problem}.",
            'Leave it unset for Bitbucket Cloud, or list origins like "https://bitbucket.org": '
            "http or https, a host and an optional port, without a path (not even '/'), "
            "query, fragment, whitespace or control characters.",
        )
    ]


def _check_flags() -> list[CheckMessage]:
    found = []
    for name in FLAG_SETTINGS:
        value = _raw(name)
        if value is not UNSET and not isinstance(value, bool):
            found.append(
                _message(
                    "W006",
                    f"BITBUCKET_INSTALL_{name} is {_shown(value)}, neither True nor False; "
                    "it is treated as False (off).",
                    "Give a bool: read an environment variable with env.bool() "
                    "(django-environ), not as a string.",
                )
            )
    if _raw("SIMULATOR") is True:
        found.append(
            _message(
                "W003",
                "The development simulator is enabled"
                + ("." if settings.DEBUG else ", but it only runs with DEBUG on."),
                "Never enable BITBUCKET_INSTALL_SIMULATOR outside development.",
            )
        )
    if app_settings.TRUST_UNSIGNED_RETURNS and not settings.DEBUG:
        found.append(
            _message(
                "W005",
                "BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS is on and DEBUG is off: a return "
                "trip without a JWT connects the installation it names to the browser's "
                "user, although nothing proves that this browser installed it.",
                "Leave it off in production (such returns are then recorded but connect "
                "nobody), or use a registered app, whose returns carry a JWT.",
            )
        )
    return found


WEBHOOKS_HINT = (
    'List Bitbucket event keys, e.g. ["repo:push", "pullrequest:created"], each once, '
    f'or ["{ALL_EVENTS}"] for every event: a resource, a colon and an action, in lower '
    f"case letters, digits and underscores, at most {MAX_EVENT_KEY_LENGTH} characters."
)


def _check_webhooks() -> list[CheckMessage]:
    value = _raw("WEBHOOKS")
    if value is UNSET:
        return []
    if not isinstance(value, list | tuple):
        return [_webhooks_message(f"is {_shown(value)}, not a list or tuple; it is ignored")]
    found = []
    bad = [
        event for event in value if not (isinstance(event, str) and is_webhook_subscription(event))
    ]
    if bad:
        found.append(
            _webhooks_message(
                f"has entries that are not event keys: {_shown(bad)}; they are left out"
            )
        )
    repeated = sorted(
        {event for event in value if isinstance(event, str) and value.count(event) > 1}
    )
    if repeated:
        found.append(
            _webhooks_message(f"lists {_shown(repeated)} more than once; each is subscribed once")
        )
    if ALL_EVENTS in value and any(event != ALL_EVENTS for event in value):
        found.append(
            _webhooks_message(
                f'lists "{ALL_EVENTS}" with other keys, which "{ALL_EVENTS}" already covers '
                "(Bitbucket does not say whether it would deliver those events twice)"
            )
        )
    own = app_settings.DESCRIPTOR.get("modules")
    own_webhooks = own.get("webhooks", []) if isinstance(own, dict) else []
    if app_settings.WEBHOOKS and not isinstance(own_webhooks, list | tuple):
        found.append(
            _message(
                "E024",
                "BITBUCKET_INSTALL_DESCRIPTOR['modules']['webhooks'] is not a list, so the "
                "webhooks of BITBUCKET_INSTALL_WEBHOOKS are not added to the descriptor.",
                'Make it a list of {"event": ..., "url": ...} modules, or remove it and '
                "list the event keys in BITBUCKET_INSTALL_WEBHOOKS.",
            )
        )
    return found


def _webhooks_message(problem: str) -> CheckMessage:
    return _message("E024", f"BITBUCKET_INSTALL_WEBHOOKS {problem}.", WEBHOOKS_HINT)


def _check_webhook_max_bytes() -> list[CheckMessage]:
    smallest, largest, default = WEBHOOK_MAX_BYTES_BOUNDS
    value = _raw("WEBHOOK_MAX_BYTES")
    if value is UNSET or (is_duration(value) and smallest <= value <= largest):
        return []
    if is_duration(value):
        used = f"it is read as {min(max(value, smallest), largest)}"
    else:
        used = f"the default, {default}, is used"
    return [
        _message(
            "E025",
            f"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES must be a whole number of bytes from "
            f"{smallest} to {largest}, not {_shown(value)}; {used}.",
            f"Give an int from {smallest} to {largest}, or remove the setting to use the "
            f"default ({default}, 1 MiB; Bitbucket's webhook payloads are at most 256 KB).",
        )
    ]


TASK_SETTINGS = ("TASK_BACKEND", "TASK_QUEUE")


def _check_tasks() -> list[CheckMessage]:
    """With webhook tasks on, a delivery is handed to the tasks framework: without one, or
    without the backend and queue the settings name, every delivery would be refused."""
    if not app_settings.WEBHOOK_TASKS:
        return []
    found = [
        _message(
            "E026",
            f"BITBUCKET_INSTALL_{name} is {_shown(value)}, not a non-empty string; the "
            f"default, {getattr(app_settings, name)!r}, is used.",
            "Give the name as a string, or remove the setting to use the default.",
        )
        for name in TASK_SETTINGS
        if (value := _raw(name)) is not UNSET and not (isinstance(value, str) and value)
    ]
    try:
        backends = task_framework.task_backends()
    except TaskFrameworkMissing:
        return [
            *found,
            _tasks_message(
                "no tasks framework can be imported (neither django.tasks, built into "
                "Django 6.0+, nor the django-tasks backport, django_tasks)",
                TASKS_HINT,
            ),
        ]
    alias, queue = app_settings.TASK_BACKEND, app_settings.TASK_QUEUE
    configured = backends.settings
    if not isinstance(configured, dict) or alias not in configured:
        aliases = sorted(configured) if isinstance(configured, dict) else []
        return [
            *found,
            _tasks_message(
                f"BITBUCKET_INSTALL_TASK_BACKEND {alias!r} is not an alias of the TASKS "
                f"setting (it has {_shown(aliases)})",
                "Add that backend to TASKS (a worker backend in production, e.g. "
                '"django_tasks_db.DatabaseBackend"), or set BITBUCKET_INSTALL_TASK_BACKEND '
                "to one of its aliases.",
            ),
        ]
    try:
        backend = backends[alias]
    except ImproperlyConfigured as error:  # the framework's InvalidTaskBackend
        return [
            *found,
            _tasks_message(
                f"The TASKS backend {alias!r} cannot be loaded: {_shown(str(error))}",
                "Install the package of that backend, or correct its BACKEND path.",
            ),
        ]
    if backend.queues and queue not in backend.queues:
        found.append(
            _tasks_message(
                f"BITBUCKET_INSTALL_TASK_QUEUE {queue!r} is not a queue of the TASKS "
                f"backend {alias!r} (its QUEUES are {_shown(sorted(backend.queues))})",
                "Add the queue to that backend's QUEUES, or set BITBUCKET_INSTALL_TASK_QUEUE "
                "to one of them.",
            )
        )
    return found


def _check_confirmation() -> list[CheckMessage]:
    """With CONFIRM_WITH_BITBUCKET on, Bitbucket is asked through the API client (httpx),
    and each new installation is checked again later by a task."""
    if not app_settings.CONFIRM_WITH_BITBUCKET:
        return []
    try:
        import httpx  # noqa: F401
    except ImportError:
        return [
            _message(
                "E027",
                "BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET is on, but httpx (the API "
                "client's extra) is not installed: no installation can be confirmed or "
                "connected.",
                "pip install 'django-bitbucket-install[client]'",
            )
        ]
    problem = _follow_up_problem()
    if problem is None:
        return []
    return [
        _message(
            "W009",
            "BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET is on, but " + problem + ": made-up "
            "installations are not removed after their callback (they still connect to "
            "nobody, and a genuine install still takes their clientKey back).",
            "Configure a TASKS backend with a worker that can run tasks later (e.g. "
            '"django_tasks_db.DatabaseBackend"; on Django 5.2 with the tasks extra), '
            "or purge never-confirmed installations with bitbucket_install_purge "
            "--never-confirmed-days.",
        )
    ]


def _follow_up_problem() -> str | None:
    """Why the follow-up check of new installations cannot do its work, or None."""
    try:
        backends = task_framework.task_backends()
        backend = backends[app_settings.TASK_BACKEND]
    except TaskFrameworkMissing:
        return "no tasks framework can be imported"
    except (KeyError, ImproperlyConfigured) as error:  # the framework's InvalidTaskBackend
        return (
            f"the TASKS backend {app_settings.TASK_BACKEND!r} cannot be used "
            f"({_shown(str(error))})"
        )
    # In development, a made-up installation left in place harms nobody.
    if not backend.supports_defer and not settings.DEBUG:
        return (
            f"the TASKS backend {app_settings.TASK_BACKEND!r} cannot run a task later, so "
            "the check runs at once, before Bitbucket can answer for the new installation"
        )
    return None


@register(Tags.security, "bitbucket_install", deploy=True)
def check_deploy_confirmation(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if app_settings.CONFIRM_WITH_BITBUCKET:
        return []
    return [
        _message(
            "W008",
            "BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET is off: an installation is trusted on "
            "first use, so whoever sends the first (unsigned) installed callback for a "
            "clientKey chooses its secret, and can have it connected to their account.",
            "Set BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True (with the client extra "
            "installed): the app then asks Bitbucket whether an installation is genuine "
            "before it confirms or connects it.",
        )
    ]


TASKS_HINT = (
    "Use Django 6.0 or newer, or install the app's tasks extra: pip install "
    "'django-bitbucket-install[tasks]'; or set BITBUCKET_INSTALL_WEBHOOK_TASKS = False to "
    "signal deliveries in the request."
)


def _tasks_message(problem: str, hint: str) -> CheckMessage:
    return _message(
        "E026",
        f"BITBUCKET_INSTALL_WEBHOOK_TASKS is on, but {problem}: every webhook delivery "
        "would be refused (503) until that is fixed.",
        hint,
    )


@register(Tags.urls, "bitbucket_install")
def check_redirect_targets(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The views send the browser to ``resolve_url(SUCCESS_URL / FAILURE_URL)``: a value
    that is no URL and no URL name would raise ``NoReverseMatch`` there, a 500; a URL on
    another site would send users who just installed the app away from it."""
    found = []
    app_urls_missing = bool(missing_app_urls())
    base_host = host_of(app_settings.BASE_URL or "")
    for name in REDIRECT_SETTINGS:
        value = getattr(app_settings, name)
        if value is None:
            continue
        try:
            target = resolve_url(value)
        except NoReverseMatch:
            if app_urls_missing and value.startswith("bitbucket_install:"):
                continue  # E022 says why
            found.append(
                _message(
                    "E016",
                    f"BITBUCKET_INSTALL_{name} {_shown(value)} is neither a URL nor the name "
                    "of a URL pattern.",
                    "Give a URL or path (with '/' or '.'), or the name of a URL pattern "
                    "that takes no arguments (e.g. 'home' or 'accounts:profile').",
                )
            )
            continue
        if base_host is not None and not app_settings.is_on_this_site(target):
            found.append(
                _message(
                    "E021",
                    f"BITBUCKET_INSTALL_{name} {_shown(value)} is not on this site: its host "
                    f"is not the base URL's ({base_host!r}).",
                    "Give a path (e.g. '/welcome/'), the name of a URL pattern, or a URL on "
                    "the host of BITBUCKET_INSTALL_BASE_URL.",
                )
            )
    return found


# Cache backends whose entries other processes do not see: what each keeps, and who
# accepts a token again because of it.
UNSHARED_CACHES = {
    "django.core.cache.backends.dummy.DummyCache": ("keeps nothing at all", "every request"),
    "django.core.cache.backends.locmem.LocMemCache": (
        "keeps its entries inside one process",
        "another process",
    ),
    "django.core.cache.backends.filebased.FileBasedCache": (
        "shares its entries only between the processes of one machine",
        "another machine",
    ),
}


@register(Tags.caches, Tags.urls, "bitbucket_install")
def check_replay_cache(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Single-use views remember the tokens they accepted in the replay cache: a cache
    that is not there refuses them all (503), one that other processes do not see lets a
    token through once per process. Reported only where it matters: when a view of the
    URLconf is single-use, or the project named the alias itself."""
    if _raw("REPLAY_CACHE") is UNSET and not _serves_single_use_views(get_resolver().url_patterns):
        return []
    alias = app_settings.REPLAY_CACHE
    configured = settings.CACHES.get(alias)
    if configured is None:
        return [
            _message(
                "W007",
                f"The replay cache {alias!r} (BITBUCKET_INSTALL_REPLAY_CACHE) is not an alias "
                f"of the CACHES setting (it has {_shown(sorted(settings.CACHES))}): every "
                "request to a connect_jwt_required(single_use=True) view is refused (503).",
                "Add that cache to CACHES, one that every process of the site shares (e.g. "
                "django.core.cache.backends.redis.RedisCache), or set "
                "BITBUCKET_INSTALL_REPLAY_CACHE to one of its aliases.",
            )
        ]
    unshared = None if settings.DEBUG else _unshared(configured.get("BACKEND"))
    if unshared is None:
        return []
    backend, (keeps, again) = unshared
    return [
        _message(
            "W007",
            f"The replay cache {alias!r} (BITBUCKET_INSTALL_REPLAY_CACHE) is {backend}, "
            f"which {keeps}: a token that a connect_jwt_required(single_use=True) view "
            f"accepted is accepted again by {again}.",
            "Point BITBUCKET_INSTALL_REPLAY_CACHE at a cache that every process and machine "
            "of the site shares: RedisCache, PyMemcacheCache or DatabaseCache. (With DEBUG "
            "on, one process is fine: this is not reported.)",
        )
    ]


def _unshared(backend_path: object) -> tuple[str, tuple[str, str]] | None:
    """The class name of the unshared backend that ``backend_path`` is or extends, with
    what it keeps and who accepts a token again; None for any other backend, or one that
    cannot be imported (Django reports that when the cache is used)."""
    try:
        backend = import_string(str(backend_path))
    except ImportError:
        return None
    for path, consequences in UNSHARED_CACHES.items():
        if isinstance(backend, type) and issubclass(backend, import_string(path)):
            return path.rpartition(".")[2], consequences
    return None


def _serves_single_use_views(patterns: Iterable[Any]) -> bool:
    """Does a URL pattern among ``patterns`` (included ones too) lead to a single-use view?"""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if _serves_single_use_views(entry.url_patterns):
                return True
        elif _is_single_use(entry.callback):
            return True
    return False


def _is_single_use(view: object) -> bool:
    """A view decorated with ``single_use=True``: a function, or a class-based view one of
    whose methods (``dispatch`` or a handler) was, through ``method_decorator``."""
    if getattr(view, replay.SINGLE_USE_ATTRIBUTE, False) is True:
        return True
    view_class = getattr(view, "view_class", None)
    methods = ("dispatch", *getattr(view_class, "http_method_names", ()))
    return any(
        getattr(getattr(view_class, name, None), replay.SINGLE_USE_ATTRIBUTE, False) is True
        for name in methods
    )


@register("bitbucket_install")
def check_descriptor(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    descriptor = app_settings.DESCRIPTOR
    found = []
    key = descriptor.get("key")
    if not isinstance(key, str) or ADDON_KEY_PATTERN.fullmatch(key) is None:
        found.append(
            _message(
                "E012",
                f"The descriptor has no valid key ({key!r}).",
                "Set BITBUCKET_INSTALL_ADDON_KEY, or BITBUCKET_INSTALL_DESCRIPTOR['key'] for "
                "an unregistered app: 1 to 64 letters, digits, '.', '_' or '-'.",
            )
        )
    for field in ("name", "description"):
        if not isinstance(descriptor.get(field), str) or not descriptor.get(field):
            found.append(
                _message(
                    "E013",
                    f"The descriptor has no {field}.",
                    f"Set BITBUCKET_INSTALL_DESCRIPTOR['{field}'].",
                )
            )
    contexts = descriptor.get("contexts")
    if (
        not isinstance(contexts, (list, tuple))
        or not contexts
        or not all(isinstance(context, str) and context in KNOWN_CONTEXTS for context in contexts)
    ):
        found.append(
            _message(
                "E014",
                f"The descriptor's contexts {descriptor.get('contexts')!r} are not valid.",
                'Use ["account"]; Bitbucket removed the "personal" context in 2023.',
            )
        )
    configured = getattr(settings, "BITBUCKET_INSTALL_DESCRIPTOR", {})
    if (
        not isinstance(configured, dict)
        or not isinstance(descriptor.get("modules"), dict)
        or not isinstance(descriptor.get("scopes"), list)
    ):
        found.append(
            _message(
                "E015",
                "BITBUCKET_INSTALL_DESCRIPTOR must be a dict, its modules a dict and its "
                "scopes a list.",
                "Check BITBUCKET_INSTALL_DESCRIPTOR, ['modules'] and ['scopes'].",
            )
        )
    app_owned = sorted(APP_OWNED_KEYS & set(descriptor))
    if app_owned:
        found.append(
            _message(
                "W004",
                f"BITBUCKET_INSTALL_DESCRIPTOR sets {', '.join(app_owned)}, which the app "
                "fills in itself; the setting's values are ignored.",
                "Remove them: baseUrl comes from BITBUCKET_INSTALL_BASE_URL, lifecycle "
                "points at the app's views, authentication is jwt.",
            )
        )
    return found


@register(Tags.security, "bitbucket_install")
def check_forge(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """What verifying Forge Invocation Tokens needs of the settings (the app ARI itself is
    checked with the descriptor's settings)."""
    found = []
    url = _raw("FORGE_JWKS_URL")
    if url not in (UNSET, None, "") and not is_allowed_jwks_url(url):
        found.append(
            _message(
                "E028",
                f"BITBUCKET_INSTALL_FORGE_JWKS_URL {_shown(url)} is neither an https URL nor "
                "an http URL on a loopback host: every Forge Invocation Token is refused "
                "(401), since its keys would come over a connection anyone could tamper with.",
                "Remove the setting to use Atlassian's production JWKS "
                "(https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json), or give "
                "an https URL (http only on 127.0.0.1, ::1 or localhost, for tests).",
            )
        )
    labels = _raw("FORGE_IC_LABELS")
    if labels is not UNSET:
        if isinstance(labels, str) or not isinstance(labels, list | tuple):
            problem = f"is {_shown(labels)}, not a list or tuple; no label is allowed"
        else:
            bad = [label for label in labels if not is_ic_label(label)]
            problem = f"has entries that are not labels: {_shown(bad)}; they are left out"
            if not bad:
                problem = ""
        if problem:
            found.append(
                _message(
                    "E029",
                    f"BITBUCKET_INSTALL_FORGE_IC_LABELS {problem}.",
                    "List the Isolated Cloud labels whose tokens are accepted, each "
                    f"matching {IC_LABEL_PATTERN.pattern} (lower-case letters, digits, '_' "
                    "and '-', at most 50), or leave it unset for the commercial cloud only.",
                )
            )
    return found


# Atlassian's announced end of support for Connect on Bitbucket Cloud.
CONNECT_END_OF_SUPPORT = "31 January 2027"


@register("bitbucket_install")
def check_forge_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The settings that link the descriptor to the Forge app (``forgeAppId``,
    ``forgeAppLink``): a wrong one would be pushed to every installation."""
    found = []
    app_id = _raw("FORGE_APP_ID")
    if app_id not in (UNSET, None, "") and not is_forge_app_id(app_id):
        found.append(
            _message(
                "E030",
                f"BITBUCKET_INSTALL_FORGE_APP_ID ({_shown(app_id)}) is not a Forge app's ARI.",
                "Copy app.id from the Forge app's manifest.yml: "
                "ari:cloud:ecosystem::app/<uuid>, in lower case.",
            )
        )
    link = _raw("FORGE_APP_LINK")
    if link not in (UNSET, None, "") and not _is_https_url(link):
        found.append(
            _message(
                "E031",
                f"BITBUCKET_INSTALL_FORGE_APP_LINK ({_shown(link)}) is not an https URL.",
                "Use the Forge app's install link from the developer console "
                "(https://developer.atlassian.com/console/install/...).",
            )
        )
    configured = _raw("DESCRIPTOR")
    if isinstance(configured, dict):
        for key, name in FORGE_KEYS.items():
            if key in configured and getattr(app_settings, name) is not None:
                found.append(
                    _message(
                        "W013",
                        f"BITBUCKET_INSTALL_DESCRIPTOR sets {key}, so "
                        f"BITBUCKET_INSTALL_{name} is not used: the descriptor keeps the "
                        "DESCRIPTOR setting's value.",
                        f"Remove {key} from BITBUCKET_INSTALL_DESCRIPTOR, or unset "
                        f"BITBUCKET_INSTALL_{name}.",
                    )
                )
    return found


def _is_https_url(value: object) -> bool:
    found = origin(value) if isinstance(value, str) else None
    return found is not None and found.startswith("https://")


@register("bitbucket_install", deploy=True)
def check_deploy_forge_app(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A deployment check only: in development the reminder would be noise on every run."""
    configured = _raw("DESCRIPTOR")
    if app_settings.FORGE_APP_ID is not None or (
        isinstance(configured, dict) and "forgeAppId" in configured
    ):
        return []
    return [
        _message(
            "W012",
            "This Connect app names no Forge app (BITBUCKET_INSTALL_FORGE_APP_ID is not "
            f"set): Atlassian ends support for Connect on Bitbucket Cloud on "
            f"{CONNECT_END_OF_SUPPORT}.",
            "Build the Forge app, set BITBUCKET_INSTALL_FORGE_APP_ID and "
            "BITBUCKET_INSTALL_FORGE_APP_LINK, then push the descriptor with manage.py "
            "bitbucket_install_push_descriptor (docs: Migrating to Forge). To silence this "
            'until then, add "bitbucket_install.W012" to SILENCED_SYSTEM_CHECKS.',
        )
    ]
