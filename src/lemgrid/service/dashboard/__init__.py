"""The market in a browser: the dashboard at ``/`` (``docs/dashboard.md``).

Server-rendered pages (Jinja2) plus one small script, every asset served by the package (Plotly's
bundled ``plotly.min.js`` from the ``plotly`` dependency): no CDN, no build step. The public view
and its live feed need no signature and name nobody (:mod:`lemgrid.service.dashboard.views`);
the participant's and the operator's views are signed requests made by the page with the user's
own key, which never leaves the browser (WebCrypto Ed25519).
"""

from lemgrid.service.dashboard.routes import add_routes

__all__ = ["add_routes"]
