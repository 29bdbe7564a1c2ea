"""Websocket routes: browsers, and scripts driving an SSH terminal with an API token (the agent never uses a
websocket)."""

from django.urls import path

from access.consumers import TerminalConsumer, WatchConsumer
from core.metrics import counted_socket
from installs.consumers import DashboardConsumer, InstallConsumer
from serialconsole.consumers import SerialConsoleConsumer

websocket_urlpatterns: list = [
    path("ws/installs/<int:install_id>/", counted_socket("install", InstallConsumer.as_asgi())),
    path("ws/dashboard/", counted_socket("dashboard", DashboardConsumer.as_asgi())),
    path("ws/machines/<str:hostname>/console/", counted_socket("console", SerialConsoleConsumer.as_asgi())),
    path("ws/machines/<str:hostname>/terminal/", counted_socket("terminal", TerminalConsumer.as_asgi())),
    path("ws/ssh-sessions/<int:session_id>/watch/", counted_socket("watch", WatchConsumer.as_asgi())),
]
