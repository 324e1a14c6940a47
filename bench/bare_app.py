"""A bare FastAPI endpoint returning constant JSON, served exactly as `m365connect serve` serves the API.

The reference of the plain-API comparison: `python bench/bare_app.py PORT`.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, list[dict[str, str]]]:
    """A constant body of the size of one credential."""
    return {"credentials": [{"name": "MS Graph app", "status": "VALID", "tenant_id": "x" * 36}]}


if __name__ == "__main__":
    # The same call as cli.serve: uvicorn.run(app, host, port, server_header=False, log_level="info").
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), server_header=False, log_level="info")
