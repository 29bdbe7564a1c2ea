"""Run a command on machines through their sites' jump hosts, from the browser (technicians)."""

from django import forms
from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.roles import Role, require_role
from audit.service import Actor
from inventory.models import Machine

from .service import run_command


class CommandForm(forms.Form):
    machines = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Hostnames, separated by spaces, commas or lines."
    )
    command = forms.CharField(max_length=4000, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    timeout_s = forms.IntegerField(
        label="Timeout (s)", min_value=1, max_value=3600, initial=int(settings.SSH_COMMAND_TIMEOUT_S)
    )

    def clean_machines(self):
        names = [n.lower() for n in self.cleaned_data["machines"].replace(",", " ").split()]
        found = dict(Machine.objects.filter(hostname__in=names).values_list("hostname", "pk"))
        missing = [n for n in names if n not in found]
        if missing:
            raise forms.ValidationError(f"No machine named {', '.join(missing)}.")
        if not names:
            raise forms.ValidationError("Name at least one machine.")
        return [found[n] for n in dict.fromkeys(names)]


@require_role(Role.TECHNICIAN)
@require_http_methods(["GET", "POST"])
def ssh_run(request):
    """Every run is audited per machine (command, exit status, capped output) by run_command itself."""
    results = None
    if request.method == "POST":
        form = CommandForm(request.POST)
        if form.is_valid():
            results = run_command(
                form.cleaned_data["machines"],
                form.cleaned_data["command"],
                actor=Actor.for_user(request.user),
                timeout_s=form.cleaned_data["timeout_s"],
                max_output=settings.SSH_MAX_OUTPUT_BYTES,
            )
    else:
        form = CommandForm(initial={"machines": " ".join(request.GET.getlist("machine"))})
    return render(request, "access/ssh_run.html", {"form": form, "results": results})
