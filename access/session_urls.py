"""The SSH terminal's pages (not namespaced: ShellSession.get_absolute_url uses ssh-session)."""

from django.urls import path

from . import session_views

urlpatterns = [
    path("machines/<str:hostname>/terminal/", session_views.terminal_page, name="machine-terminal"),
    path("ssh-sessions/", session_views.session_list, name="ssh-sessions"),
    path("ssh-sessions/<int:session_id>/", session_views.session_detail, name="ssh-session"),
    path("ssh-sessions/<int:session_id>/cast", session_views.session_cast, name="ssh-session-cast"),
    path("ssh-sessions/<int:session_id>/watch", session_views.session_watch, name="ssh-session-watch"),
    path("ssh-sessions/<int:session_id>/end", session_views.session_end, name="ssh-session-end"),
]
