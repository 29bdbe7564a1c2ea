"""Content-Security-Policy on every response.

Scripts come only from our own static files: no inline script, no inline event handler, no eval.
An HTML injection that slips past escaping therefore cannot run, which is what protects a
technician's session (it can power off racks). The Django admin keeps inline styles, which its
templates use; our own pages need none.

django-rq's pages under /django-rq/ get the admin's policy and no script allowance of their own, on
purpose. Their bulk actions (select all, delete, requeue, stop) run from the admin's static
actions.js, which initialises itself in current Django (no jQuery), so they work under
script-src 'self'. What the policy blocks there is dead or cosmetic:
- the inline block in their list pages calls jQuery's `$.fn.actions`, which current Django no
  longer has; let through (by its hash, or 'unsafe-inline') it only throws "actions is not a function";
- the job page's clickable result rows use an inline onclick holding each result's URL, which no
  hash fixed at startup can cover; the "View" link in the same row works.
A test pins django-rq's inline scripts and handlers (tests/unit/test_django_rq_csp.py): when an
upgrade changes them, it fails, and this choice is to be made again (docs/design.md, Security).
"""

_BASE = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    # 'self' covers ws:// and wss:// to this host in current browsers; the live updates need it.
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
_ADMIN = {**_BASE, "style-src": "'self' 'unsafe-inline'"}
# A page whose response says ``csp_inline_styles = True`` (the serial console and its replay: xterm.js makes
# <style> elements at run time) may use inline styles; its scripts are held to 'self' like every page's.
_INLINE_STYLES = {**_BASE, "style-src": "'self' 'unsafe-inline'"}
# The SSH session replay (``csp_wasm = True``): asciinema-player's terminal emulator is WebAssembly compiled from
# bytes inside its own script, which browsers allow only under 'wasm-unsafe-eval'. That keyword lets a script
# that already runs compile WebAssembly; it does not allow eval() or new Function(), nor scripts from anywhere
# but 'self'. Inline styles as for xterm.js: the player sizes its terminal through style attributes.
_WASM = {**_INLINE_STYLES, "script-src": "'self' 'wasm-unsafe-eval'"}


def _render(policy: dict[str, str]) -> str:
    return "; ".join(f"{k} {v}" for k, v in policy.items())


POLICY = _render(_BASE)
ADMIN_POLICY = _render(_ADMIN)
INLINE_STYLES_POLICY = _render(_INLINE_STYLES)
WASM_POLICY = _render(_WASM)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.admin_prefixes = ("/admin/", "/django-rq/")

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            admin = request.path.startswith(self.admin_prefixes)
            if getattr(response, "csp_wasm", False):
                response["Content-Security-Policy"] = WASM_POLICY
            elif getattr(response, "csp_inline_styles", False):
                response["Content-Security-Policy"] = INLINE_STYLES_POLICY
            else:
                response["Content-Security-Policy"] = ADMIN_POLICY if admin else POLICY
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Referrer-Policy", "same-origin")
        return response
