"""Benchmarks and load tests: the example project served by gunicorn, driven over loopback.

Not part of the distribution (setup.cfg packages only ``bitbucket_install``). The
``bench`` extra installs what they need: ``pip install -e '.[bench]'``.
"""
