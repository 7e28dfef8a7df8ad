"""The request chain. Each stage wraps the next handler and passes events through, in the manner
of ASGI middleware; ``build.py`` puts the stages in order, top to bottom, in one place."""
