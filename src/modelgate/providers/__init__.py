"""Upstream APIs behind one interface (``base.Provider``); one module per API."""
