"""The hand-written alternative the callback view is measured against (figure 1).

Twenty lines a project might write instead of using the app: read ``clientKey`` from the
query and ``update_or_create`` the row, with no verification at all. It is served by the
same gunicorn, settings and middleware as the app (``benchmarks.baseline.settings``), on
the same ``Installation`` table, so the only difference measured is the view.
"""
