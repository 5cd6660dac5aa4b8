"""Which tasks framework runs the app's tasks, and the app's way of using it.

Django's own ``django.tasks`` (Django 6.0+) when it can be imported, else the
``django-tasks`` backport (``django_tasks``, the ``tasks`` extra, for Django 5.2). The app
keeps no queue of its own: the project's ``TASKS`` setting says which backend runs them,
and ``BITBUCKET_INSTALL_TASK_BACKEND`` / ``BITBUCKET_INSTALL_TASK_QUEUE`` which alias and
queue the app's tasks use. Nothing here is imported until a task is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import TaskFrameworkMissing

if TYPE_CHECKING:
    from django.tasks import Task, TaskResult
    from django.tasks.backends.base import BaseTaskBackend
    from django.utils.connection import BaseConnectionHandler

# In the order they are tried: the built-in one wins where both are installed.
FRAMEWORKS = ("django.tasks", "django_tasks")
MISSING = (
    "No tasks framework can be imported: Django 6.0+ has django.tasks built in; on Django "
    '5.2 install the backport with the app\'s "tasks" extra: '
    "pip install 'django-bitbucket-install[tasks]' (django-tasks, import name django_tasks)."
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def framework() -> ModuleType:
    """The module of the tasks framework (``django.tasks`` or ``django_tasks``), or
    ``TaskFrameworkMissing`` naming the extra to install."""
    for name in FRAMEWORKS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise TaskFrameworkMissing(MISSING)


def task_backends() -> BaseConnectionHandler[BaseTaskBackend]:
    """The framework's ``task_backends``: the backends of the project's ``TASKS``."""
    handler: BaseConnectionHandler[BaseTaskBackend] = framework().task_backends
    return handler


def app_task(function: Callable[_P, _R]) -> Task[_P, _R]:
    """``function`` as a task of the framework on the app's backend and queue.

    Used as a decorator at module level, under the function's own name: a worker finds a
    task by that dotted path. The backend validates the task here, so the module is
    imported only where tasks are used (a worker, or a view with tasks on).
    """
    task: Task[_P, _R] = framework().task(
        backend=app_settings.TASK_BACKEND, queue_name=app_settings.TASK_QUEUE
    )(function)
    return task


def enqueue(task: Task[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> TaskResult[_P, _R]:
    """Enqueue ``task`` on the backend and queue the settings name now (they may have
    changed since the task was defined). The arguments must be JSON-serialisable."""
    using: Task[_P, _R] = task.using(
        backend=app_settings.TASK_BACKEND, queue_name=app_settings.TASK_QUEUE
    )
    return using.enqueue(*args, **kwargs)
