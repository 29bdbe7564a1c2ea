"""A person's own API tokens: make one (its key is shown once), see when each was last used, revoke."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from audit.service import Actor

from .api_tokens import ApiToken, create_token, revoke_token
from .roles import Role, require_role


@require_http_methods(["GET", "POST"])
@require_role(Role.VIEWER)
def token_list(request):
    new_key = None
    if request.method == "POST":
        _, new_key = create_token(request.user, request.POST.get("name", ""), actor=Actor.for_user(request.user))
    tokens = ApiToken.objects.filter(user=request.user).order_by("-id")
    response = render(request, "accounts/token_list.html", {"tokens": tokens, "new_key": new_key})
    response["Cache-Control"] = "no-store"  # the page with a new key must not stay in a cache
    return response


@require_POST
@require_role(Role.VIEWER)
def token_revoke(request, token_id: int):
    try:
        revoke_token(token_id, user=request.user, actor=Actor.for_user(request.user))
    except ApiToken.DoesNotExist:
        raise Http404("No such token of yours.") from None
    messages.success(request, "Token revoked.")
    return redirect("accounts:token-list")
