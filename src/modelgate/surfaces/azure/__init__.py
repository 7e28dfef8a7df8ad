"""The Azure OpenAI surface: ``/openai/deployments/{deployment}/...`` and ``/openai/v1/...``, so that
``AzureOpenAI`` and Foundry clients move over unchanged. versions.py (the api-versions served),
render.py (Azure's error envelopes), routes.py (the routes, in OpenAI's wire format)."""
