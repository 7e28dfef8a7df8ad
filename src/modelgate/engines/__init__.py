"""Engines: models this installation runs itself, each replica a supervised child process.

Below the providers (``providers/local.py`` sends to a pool's replicas) and above the catalog:
this package knows nothing of the config loader, the pipeline or the surfaces.

    settings.py          what a deployment says about its engine (engine, replicas, queue, ray, ...)
    models.py            a deployment's ``model:`` → the GGUF file or model folder the engine loads
    replica.py           one child process: start, wait for health, stop
    pool.py              a deployment's replicas, supervised (restarted with backoff, drained) and
                         admitted (at most max_concurrency running per replica, at most queue waiting)
    parent_watch.py      a child's stop when the gateway is gone
    llamacpp_service.py  a GGUF model under llama.cpp answering chat completions, apart from HTTP
    llamacpp_chat.py     one chat completion on llama.cpp: the prompt, the tokens, exact counts
    json_schema.py       what a llama.cpp grammar holds a schema to, and checking answers against it
    llamacpp_worker.py   the llamacpp engine's child: the service behind aiohttp on loopback
    ray_app.py           the ray engine's Ray Serve application: replicas of the same service
    ray_driver.py        the ray engine's child: deploys the application on a cluster and holds it
    vllm_worker.py       the vllm engine's child: vLLM's own OpenAI-compatible server on a folder
"""
