"""The OpenAI Responses API surface: POST /v1/responses and stored responses."""
