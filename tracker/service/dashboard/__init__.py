"""The dashboard of `tracker serve`: HTML pages drawn on the server.

Routes (``routes.py``; each named ``dashboard.…``):

- ``GET /``: the overview (counts by status and tracking, schedule lag, daemons,
  deliveries, the archive, two SVG charts); ``GET /fragments/overview`` its live part;
- ``GET /predictions?status=&tracking=&model=&label=KEY=VALUE&q=ID-PREFIX``: the
  list, newest registration first, 50 a page, with ``after=`` / ``before=`` cursors
  (``MICROSECONDS-ID`` of a row: keyset pagination, never a COUNT; "about N" from
  the overview's cached counts);
- ``GET /predictions/{id}``: one prediction; ``GET /fragments/predictions/{id}`` its
  live part (``X-Live: stop`` once it is no longer polled); ``GET
  /predictions/{id}/logs`` the whole logs as text;
- ``POST /predictions/{id}/cancel``, ``POST /predictions/{id}/deliveries/{n}/retry``;
- ``GET /files/{id}/{position}``: an archived output file (``files.py``);
- ``GET /login``, ``POST /login``, ``POST /logout``; ``GET /static/{name}``.

Auth (``auth.py``, ``web.py``): with TRACKER_SERVE_TOKEN every route but the login
form and the static files needs a login or ``Authorization: Bearer TOKEN``. The
login form compares the token in constant time and starts a new session: a cookie
``tracker_session`` (HttpOnly, SameSite=Strict, Secure over https, 12 hours)
holding an HMAC-signed session ID, never the token; the key is derived from the
token, so a new token ends every session. A page without a login redirects to
``/login?next=PATH``; a fragment, a file or a POST is 401. Without a token the
service listens on loopback only and the pages are open (sessions are still made,
for CSRF, under a random key of the process).

CSRF: every form carries ``csrf``, HMAC of the session ID; a POST without the
session's token is 403 and does nothing. A POST answers 303 to the page that shows
its result, with a flash message carried once in the session cookie.

Every dashboard response has a strict Content-Security-Policy (scripts and styles
from this origin only: no inline script, style or event handler), ``nosniff``,
``Referrer-Policy: same-origin`` and ``Cache-Control: no-store`` (the static files
and archived files excepted). Errors are HTML pages with their status, not the JSON
of ``/api/``. Templates autoescape; upstream text is shown as text (control
characters as ``\\x1b``), URLs masked, and only http(s) URLs become links.

Live: ``static/live.js`` (the only script) fetches an element's ``data-live-src``
every ``data-live-seconds`` and swaps the HTML in when it changed, not while the
tab is hidden, a control in it has focus or text in it is selected.

Data: ``tracker.store.dashboard`` (the list's keyset pages; a filter no index serves,
such as a label, searches at most 20,000 rows a page and says so) and
``tracker.store.dashboard_overview`` (the charts' aggregates); the overview's numbers
are cached (``overview.py``: fresh 5 s, then answered stale while a read runs in the
background; the list never waits for them); one prediction is
``AsyncTracker.detail``; cancel is ``AsyncTracker.cancel``, retry
``AsyncTracker.retry_deliveries``. Where a prediction is shown, the words and rules
are those of ``tracker show`` (``tracker.cli.timeline``, ``tracker.text.display``).
"""

from __future__ import annotations

from tracker.service.dashboard.routes import add_routes
from tracker.service.dashboard.web import middleware

__all__ = ["add_routes", "middleware"]
