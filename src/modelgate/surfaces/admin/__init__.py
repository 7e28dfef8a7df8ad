"""The admin surface: /admin (projects, keys, usage, statements) with its own OpenAPI document."""
