"""Security headers on every response: what a browser needs to refuse being misused.

* ``Content-Security-Policy``: scripts, styles, images and connections only from this
  origin (``'self'`` covers the page's own WebSocket in current browsers), no inline
  script or style, no plugins, no ``<base>`` tricks, forms post only here, and no page
  may frame ours (``frame-ancestors 'none'``: clickjacking). The UI, the operator
  console and the API docs are built for it: every script and stylesheet is a file.
* ``X-Content-Type-Options: nosniff``: a JSON body or a static file is never run as
  something else.
* ``Referrer-Policy: no-referrer``: order ids are capabilities and live in URLs
  (``#order=...``, ``/api/v1/orders/<id>``); no other site should learn them.
* ``X-Frame-Options: DENY``: the same as ``frame-ancestors`` for old browsers.
* ``Cross-Origin-Opener-Policy: same-origin``: another window cannot script ours.

Set in a response middleware, so answers from every route, Sanic's own errors and the
problem handler all carry them; a handler that sets one of them keeps its own.
``Strict-Transport-Security`` is left to the TLS terminator (the Ingress), which knows
whether the site is served over HTTPS.
"""

from __future__ import annotations

from sanic import HTTPResponse, Request, Sanic

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def add_security_headers(request: Request, response: HTTPResponse) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        if name not in headers:
            headers[name] = value


def install(app: Sanic) -> None:
    app.register_middleware(add_security_headers, "response")  # type: ignore[arg-type]
