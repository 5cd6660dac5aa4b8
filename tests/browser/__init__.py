"""Browser tests: the example project served as ``make demo`` serves it, driven in Chromium."""
