import re

from django.urls import include, path, re_path

from core import edge
from provisioner.pxe import ANSWER_FILES

from . import discovery_api, machine_views
from .api import api

ANSWER_FILE_NAMES = "|".join(re.escape(file.name) for file in ANSWER_FILES)

DISCOVERY_NAMESPACE = "discovery-api-v1"
_ID = r"(?P<pk>[0-9]{1,18})"
discovery_urls = [
    path("register", discovery_api.register, name="register"),
    re_path(rf"^{_ID}/poll$", discovery_api.poll, name="poll"),
    re_path(rf"^{_ID}/facts$", discovery_api.facts, name="facts"),
    re_path(rf"^{_ID}/done$", discovery_api.done, name="done"),
]

urlpatterns = [
    path("boot/ipxe", machine_views.ipxe_script, name="boot-ipxe"),
    re_path(r"^boot/media/(?P<name>[0-9]{1,18}-[0-9a-f]{40}\.iso)$", machine_views.media_iso, name="media-iso"),
    re_path(
        rf"^i/(?P<token>[A-Za-z0-9_-]{{16,128}})/(?P<name>{ANSWER_FILE_NAMES})$",
        machine_views.answer_file,
        name="answer-file",
    ),
    re_path(
        r"^i/(?P<token>[A-Za-z0-9_-]{16,128})/events/(?P<kind>[a-z-]+)$",
        machine_views.installer_callback,
        name="installer-callback",
    ),
    path("api/agent/v1/", api.urls),
    # Before the REST API's api/v1/ (console/urls.py): unknown machines, without a login (docs/agent-api.md).
    path("api/v1/discovery/", include((discovery_urls, DISCOVERY_NAMESPACE))),
]

# The installer callbacks answer in JSON, so what the edge refuses there is a problem document too.
edge.answer_problems_in("installer-callback")
edge.answer_problems_in(DISCOVERY_NAMESPACE)
