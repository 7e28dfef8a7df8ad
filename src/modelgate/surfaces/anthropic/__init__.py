"""The Anthropic Messages wire format: requests.py (wire → canonical), responses.py (events → stream
events, message and error bodies), routes.py (the handlers)."""
