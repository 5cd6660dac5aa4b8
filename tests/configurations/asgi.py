"""The test site as an ASGI application (for a real ASGI server: uvicorn)."""

from django.core.asgi import get_asgi_application

application = get_asgi_application()
