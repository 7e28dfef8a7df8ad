"""The small HTTP layer over ASGI that the surfaces stand on: requests, responses, server-sent
events and matching paths to endpoints.

Plain ASGI rather than a framework on the hot path: the request path is the product, and this is
all of the framework it needs. (The admin API, where speed is not the point, is a Starlette app.)
"""
