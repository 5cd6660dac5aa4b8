"""Forge: the Django site as the Forge Remote of a Bitbucket app moving from Connect."""
