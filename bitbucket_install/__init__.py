"""Connect-to-Bitbucket for Django: install button, return trip, installations, signals."""

__version__ = "0.1.0"
