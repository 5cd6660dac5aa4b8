"""The URLconf of ``tests/urls.py`` with a 500 handler of the project's own."""

from django.http import HttpRequest, HttpResponse

from tests.urls import urlpatterns

__all__ = ["handler500", "urlpatterns"]

SERVER_ERROR_PAGE = "<h1>The project's own server error page</h1>"


def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponse(SERVER_ERROR_PAGE, status=500)


handler500 = server_error
