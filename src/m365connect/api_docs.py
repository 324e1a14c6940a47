"""Error body schemas and response tables shared by every router's OpenAPI description."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ValidationMessage(BaseModel):
    """A 422 answer: one UPPER_SNAKE code."""

    message: str


class GenericErrorBody(BaseModel):
    """Woodpecker's generic error body."""

    title: str
    status: int
    detail: str
    timestamp: str = Field(examples=["2025-03-05 17:57:00"])


Responses = dict[int | str, dict[str, Any]]

COMMON: Responses = {
    401: {"model": GenericErrorBody, "description": "Missing, unknown or revoked API key"},
    413: {"model": GenericErrorBody, "description": "Request body too large"},
    500: {"model": GenericErrorBody, "description": "Unexpected error"},
}
NOT_FOUND: Responses = {404: {"model": GenericErrorBody, "description": "Unknown id, or another account's"}}
