"""The HTTP plumbing every router uses: dependencies, error rendering, edge middleware, OpenAPI helpers,
the rate limiter and the liveness/readiness probes.

Arrows point one way (tests/test_layering.py keeps it so): routers, wire schemas and app.py import
`m365connect.api`; `api` imports services and the application state, never a router or `m365connect.app`;
services, repositories and models never import `api`.
"""
