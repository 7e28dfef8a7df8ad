"""The ray engine's Ray Serve application: replicas of a GGUF model under llama.cpp, answering
OpenAI's chat completions, scaled by Ray Serve.

The ray engine's child process (``ray_driver.py``) builds the application here and deploys it;
each replica Ray Serve starts on the cluster imports this module again to run ``ChatReplica``,
which serves the same ``ChatService`` the llamacpp engine's worker serves: a GGUF file answers
with the same text and token counts whichever engine runs it. So every node that may hold a
replica needs modelgate and llama-cpp-python installed (``pip install 'modelgate[ray]'``) and the
model file at the same path (shared storage, or the same file copied to each).

Under the application's route prefix a replica answers ``GET /health``,
``POST /v1/chat/completions`` and (an embedding model) ``POST /v1/embeddings``, as the llamacpp
worker does at its root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelgate.engines.llamacpp_service import ChatService, Reply, error_reply

if TYPE_CHECKING:
    from ray.serve import Application

DEPLOYMENT = "chat"  # the application's one deployment


@dataclass(frozen=True, slots=True, kw_only=True)
class AppOptions:
    """What the application is made of: the model, what each replica runs, how Ray scales them."""

    app: str  # the application's name on the cluster, and its route prefix
    model_path: str
    model_name: str
    max_concurrency: int  # requests a replica runs at once (Ray Serve's max_ongoing_requests)
    n_ctx: int  # 0: the model's own context window
    device: str
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float


def deployment_options(options: AppOptions) -> dict[str, Any]:
    """The options of the application's Ray Serve deployment: the autoscaling between
    ``min_replicas`` and ``max_replicas``, and what a replica runs and holds."""
    return {
        "autoscaling_config": {"min_replicas": options.min_replicas, "max_replicas": options.max_replicas,
                               "target_ongoing_requests": options.target_ongoing_requests},
        "max_ongoing_requests": options.max_concurrency,
        # A replica that runs on a GPU holds one; on CPU, Ray Serve's default of one CPU.
        "ray_actor_options": {"num_gpus": 1 if options.device == "cuda" else 0},
    }


def application(options: AppOptions) -> Application:
    """The application, ready for ``serve.run``."""
    from ray import serve

    deployment = serve.deployment(name=DEPLOYMENT, **deployment_options(options))(ChatReplica)
    return deployment.bind(options.model_path, options.model_name, options.max_concurrency, options.n_ctx,
                           options.device)


class ChatReplica:
    """One replica: the model loaded once, its contexts made as concurrency asks for them."""

    def __init__(self, path: str, name: str, max_concurrency: int, n_ctx: int, device: str) -> None:
        # Ray Serve runs the constructor on the replica's event loop, before any request.
        self.service = ChatService(path, name, max_concurrency, n_ctx, device)
        self.service.open()

    async def __call__(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        path = request.url.path[len(root):] if request.url.path.startswith(root) else request.url.path
        if path == "/health" and request.method == "GET":
            return _response(self.service.health())
        if path == "/v1/chat/completions" and request.method == "POST":
            reply = await self.service.reply(await request.body())
            if reply.chunks is not None:
                return StreamingResponse(reply.chunks, media_type=reply.content_type,
                                         headers={"cache-control": "no-cache"})
            return _response(reply)
        if path == "/v1/embeddings" and request.method == "POST":
            return _response(await self.service.embed(await request.body()))
        return _response(error_reply(404, f"no route {request.method} {path}: this model answers "
                                     "POST /v1/chat/completions or POST /v1/embeddings", code="not_found"))


def _response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
