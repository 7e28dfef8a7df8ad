"""Engines: models this installation runs itself, each replica a supervised child process.

Below the providers (``providers/local.py`` sends to a pool's replicas) and above the catalog:
this package knows nothing of the config loader, the pipeline or the surfaces.

    settings.py          what a deployment says about its engine (engine, replicas, queue, ray, ...)
    models.py            a deployment's ``model:`` → the GGUF file or model folder the engine loads
    replica.py           one child process: start, wait for health, stop
    pool.py              a deployment's replicas, supervised (health-checked, restarted with backoff,
                         drained) and admitted (at most max_concurrency running per replica, at
                         most queue waiting)
    parent_watch.py      a child's stop when the gateway is gone
    llamacpp_service.py  a GGUF model under llama.cpp answering chat completions or embeddings, apart
                         from HTTP
    chat_request.py      a chat completions body read into the job the service runs, checked
    llamacpp_chat.py     one chat completion on llama.cpp: the prompt from the model's chat
                         template, the tokens with exact counts, the tool calls
    embedding_request.py an embeddings body read into the job the service runs, checked
    llamacpp_embed.py    one embeddings request on llama.cpp: inputs checked against the context,
                         pooled, normalised
    json_schema.py       what a llama.cpp grammar holds a schema to, and checking answers against it
    tool_calls.py        tool calls read from a model's text as it comes; the schema of a valid call
    llamacpp_worker.py   the llamacpp engine's child: the service behind aiohttp on loopback
    ray_app.py           the ray engine's Ray Serve application: replicas of the same service
    ray_driver.py        the ray engine's child: deploys the application on a cluster and holds it
    vllm_worker.py       the vllm engine's child: vLLM's own OpenAI-compatible server on a folder
"""
