"""The hand-written alternatives the app's views are measured against (figures 1 and 6).

Twenty lines a project might write instead of using the app: read ``clientKey`` from the
query and ``update_or_create`` the row, with no verification at all; a webhook receiver
that believes the token's ``iss`` without verifying it; and a project's own view with and
without ``connect_jwt_required`` (``views``). They are served by the same gunicorn,
settings and middleware as the app (``benchmarks.baseline.settings``), on the same tables,
so the only difference measured is the view.
"""
