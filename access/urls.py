from django.urls import path

from . import views

app_name = "access"
urlpatterns = [path("ssh/run/", views.ssh_run, name="ssh-run")]
