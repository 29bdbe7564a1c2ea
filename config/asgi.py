"""ASGI entry point: HTTP through Django, but for agent progress reports, which take their one path
through installs/ingest.py (daphne in production and under ``make run``, the tests alike); websockets
through channels consumers."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.ws_auth import TokenOrSessionAuth  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from installs.ingest import AgentProgressRoute  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": AgentProgressRoute(django_asgi_app),  # agent progress in commit groups, the rest to Django
        # a browser's session behind the Origin check, or a script's API token (accounts/ws_auth.py)
        "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
    }
)

# Everything imported so far lives as long as the process: leave it out of the collector's full passes,
# which otherwise walked the whole Django heap every few seconds and stalled the event loop under load
# (bench/live.py at 500 reports/s: the p95 of every fourth second was 260-380 ms, of the others 50-130 ms).
gc.freeze()
