"""The HTTP API (issue 16, docs/API.md): its own package, routes in one place (routes.py), thin
over the engine functions the CLI calls. `ApiServer` runs it on `api.listen`."""
