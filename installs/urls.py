from django.urls import path, re_path

from . import machine_views
from .api import api

urlpatterns = [
    path("boot/ipxe", machine_views.ipxe_script, name="boot-ipxe"),
    re_path(
        r"^i/(?P<token>[A-Za-z0-9_-]{16,128})/(?P<name>preseed\.cfg|ks\.cfg|user-data|meta-data)$",
        machine_views.answer_file,
        name="answer-file",
    ),
    re_path(
        r"^i/(?P<token>[A-Za-z0-9_-]{16,128})/events/(?P<kind>[a-z-]+)$",
        machine_views.installer_callback,
        name="installer-callback",
    ),
    path("api/agent/v1/", api.urls),
]
