"""`tracker serve`: the HTTP service (a JSON API, health, metrics) and its life.

``app.build_app`` builds the aiohttp application (see its docstring for the
middlewares and for how a route module is added), ``run.serve`` runs it with the
daemon in the same event loop.
"""
