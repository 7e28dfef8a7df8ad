"""The ASGI server side: app, HTTP helpers, path routing and the services of a running gateway."""
