"""Renderers: every committed file that is generated from the contract.

Runs at build and check time (and Alertmanager's configuration at stack start), never per
request. Each module renders one family of files from :mod:`inferwatch.contract` and gives
``committed_files(root) -> {path: text}``; :mod:`inferwatch.render.committed` gathers them behind
one command, ``python -m inferwatch.render --check | --write``.

May import: :mod:`inferwatch.contract` and this package. Never imported by the request path.
"""
