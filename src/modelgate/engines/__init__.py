"""Engines: models this installation runs itself, each replica a supervised child process.

Below the providers (``providers/local.py`` sends to a pool's replicas) and above the catalog:
this package knows nothing of the config loader, the pipeline or the surfaces.

    settings.py          what a deployment says about its engine (engine, replicas, queue, ...)
    models.py            a deployment's ``model:`` → the file the engine loads
    admission.py         at most max_concurrency running per replica, at most queue waiting
    replica.py           one child process: start, wait for health, stop
    pool.py              a deployment's replicas, supervised: health-checked, restarted with backoff, drained
    llamacpp_worker.py   the child: a GGUF model under llama.cpp behind OpenAI's chat completions or embeddings
    chat_request.py      a chat completions body read into the job the child runs, checked
    llamacpp_chat.py     one completion: the prompt from the model's chat template, the tokens, the calls
    embedding_request.py an embeddings body read into the job the child runs, checked
    llamacpp_embed.py    one embeddings request: inputs checked against the context, pooled, normalised
    json_schema.py       the JSON Schemas a grammar holds a model to, and the check of an answer
    tool_calls.py        tool calls read from a model's text as it comes; the schema of a valid call
"""
