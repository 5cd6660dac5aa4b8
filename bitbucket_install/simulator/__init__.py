"""The development simulator: a stand-in for Bitbucket's authorize page, and for as much
of Bitbucket as the installations it makes need (the JWT grant and part of the API), with a
console that sends the site signed webhooks.

It runs only when ``DEBUG`` is on *and* ``BITBUCKET_INSTALL_SIMULATOR`` is ``True``
(``app_settings.SIMULATOR``); otherwise its URLs answer 404. No production module imports
this package: each of its URLs goes to a small dispatcher in ``bitbucket_install.urls``
that imports :mod:`.views`, :mod:`.api` or :mod:`.console` only once it knows the
simulator is on. With the simulator on and no ``BITBUCKET_INSTALL_AUTHORIZE_URL``, the
install button points at it.

What it does, as Bitbucket does:

- checks the install link (exactly one of ``addon_key`` / ``descriptor_uri``, an HTTPS
  descriptor, an absolute ``redirect_uri`` under the descriptor's ``baseUrl``) and shows
  a consent page (app, scopes, workspace, Grant / Deny, and a way to send back each
  documented error code and an unknown one);
- on Grant, fetches the descriptor over HTTP and checks it, POSTs the ``installed``
  lifecycle callback to the app over HTTP -- the first install of a workspace unsigned, a
  re-install signed with the secret of the preceding one, each with a fresh shared secret
  -- then redirects (302) to the ``redirect_uri`` with ``clientKey`` and a ``jwt`` signed
  with the new secret over exactly that GET request.

It runs on a developer's machine, inside the network a browser can reach, so it talks to
nothing it is merely told to: a web page could otherwise make it a port scanner, or have it
post a fresh shared secret to an address of its choosing.

- It fetches only this site's configured descriptor (``BITBUCKET_INSTALL_DESCRIPTOR_URI``,
  or for an ``addon_key`` link this site's own descriptor URL) or one on a loopback host,
  and only while handling a POST that carries Django's CSRF token. The consent page of
  this site's own app is built from its settings without any HTTP; another (loopback)
  descriptor is fetched when the user asks for it on the page; any other descriptor is
  refused with ``invalid_request`` before any connection.
- The descriptor's ``baseUrl`` must be on this site's ``BITBUCKET_INSTALL_BASE_URL`` origin
  or a loopback host, and the ``installed`` callback goes only to a URL under it. Every
  URL is checked before any connection is made.
- It never follows a redirect: a 3xx answer is an error (``invalid_descriptor`` for the
  descriptor, ``server_error`` for the lifecycle callback).
- Its pages may not be framed, and are not cached.

Errors go back to the ``redirect_uri`` as ``error`` and ``error_description``. When there
is no usable ``redirect_uri`` (missing, malformed, or not under the ``baseUrl``) the
simulator shows the error on its own page, as Bitbucket does. Before a descriptor is
known, an error goes back only to a ``redirect_uri`` under this site's own base URL.

The one deliberate deviation from Bitbucket: ``descriptor_uri`` and ``baseUrl`` may use
plain HTTP on a loopback host (127.0.0.1, ::1, localhost), because Django's development
server does not speak HTTPS.

The simulator remembers each (app key, workspace) it installed -- the clientKey and the
current shared secret, which signs the next install's callback -- in Django's default
cache (:mod:`.state`). LocMemCache is enough for ``runserver`` but forgets on restart; a
persistent cache keeps re-installs signed across restarts, in step with the app's own
database.

The installations it makes get ``baseUrl`` and ``baseApiUrl`` on this site, where
:mod:`.api` serves the JWT grant and ``/2.0/...``, verifying every token as Bitbucket does
(against the secrets the simulator handed out, not the app's database); :mod:`.console`
sends webhooks only to this site's own ``webhook`` view and sets the 429 switch.

Modules: :mod:`.base` (pure: link parameters, descriptor and URL checks, workspaces and
repositories, payloads, signing, the API's answer shapes; it imports none of the others),
:mod:`.transport` (the one HTTP function, which tests replace), :mod:`.state` (the cache),
:mod:`.views` (the authorize page), :mod:`.api` (the simulated API), :mod:`.console`.
"""
