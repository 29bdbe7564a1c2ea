"""Websocket routes. The install and machine consumers register here."""

websocket_urlpatterns: list = []
