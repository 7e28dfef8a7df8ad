"""OpenAI's Chat Completions and Embeddings wire format, spoken by two surfaces: the OpenAI surface
(``/v1``) and the Azure surface (``/openai``). parse.py (wire → canonical), render.py (events →
bodies, chunks and error objects), operations.py (the operations ``serve_call`` runs)."""
