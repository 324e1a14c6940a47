"""Wire shapes of bulk jobs (API.md 7)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from m365connect.mailboxes.schemas import PaginationData

JobStatus = Literal["QUEUED", "RUNNING", "DONE", "CANCELLED"]


class BulkJobRead(BaseModel):
    """A bulk job: its status, counts and times."""

    job_id: int
    status: JobStatus
    credential_id: int
    total: int = Field(description="Items submitted")
    processed: int = Field(description="Items whose result is written")
    connected: int = Field(description="Processed items that succeeded (already connected ones included)")
    failed: int = Field(description="Processed items that failed")
    created_at: str
    started_at: str | None
    finished_at: str | None


class BulkJobPage(BaseModel):
    """One page of the account's jobs, newest first."""

    content: list[BulkJobRead]
    pagination_data: PaginationData


class BulkJobResultPage(BaseModel):
    """One page of a job's results: positions page*500 to page*500+499, those processed, in request order."""

    content: list[dict[str, Any]] = Field(
        description="POST /bulk's result items plus `index`, the 0-based position in the request"
    )
    pagination_data: PaginationData
