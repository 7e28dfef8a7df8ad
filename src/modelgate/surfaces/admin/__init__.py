"""The admin surface: a Starlette application (app.py) beside the gateway's lean path.

    app.py      the application: routes, master key, errors; the paths the gateway hands it
    core.py     what it needs of the running gateway (AdminCore)
    routes.py   the admin API under /admin: projects, keys, usage, statements (ENDPOINTS)
    health.py   GET /health/deployments
    openapi.py  the OpenAPI document of ENDPOINTS, at GET /admin/openapi.json
    web.py      reading requests and writing answers
    wire.py     the JSON and CSV shapes, shared with the CLI
"""
