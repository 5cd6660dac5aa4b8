"""Forge Remote: the Django site as the remote of a Forge app (docs/forge.rst).

``tokens`` verifies Forge Invocation Tokens (FITs), ``invocation`` gives their claims a
typed view, ``jwks`` chooses and caches the keys, ``system_tokens`` keeps the app system
tokens Forge sends, ``decorators`` guards a project's own remote endpoints. Importing this
package needs nothing beyond the app's own dependencies; verifying a token needs the
``forge`` extra (PyJWT's ``crypto``).
"""
