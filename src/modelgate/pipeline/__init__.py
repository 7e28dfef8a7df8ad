"""The request chain. ``contract.py`` is what every stage and surface speaks (``Call``, ``Handler``,
``Stage``); the server puts the stages in order (``server/chain.py``)."""
