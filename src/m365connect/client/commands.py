"""Typer commands that talk to a running service: `connect` here, `credentials …` in
credential_commands.py (re-exported for the CLI).

Thin: parse options, call ServiceClient / connect_rows, render with `report`. Every ClientError ends as
one message on stderr and exit code 1 (service errors) or 2 (unusable input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from m365connect.client import report
from m365connect.client.bulk import Progress as Counts
from m365connect.client.bulk import RetryPolicy, connect_rows
from m365connect.client.credential_commands import credentials_app
from m365connect.client.csv_io import InputFile, read_input, result_row, write_results
from m365connect.client.errors import ClientError, InputError
from m365connect.client.http import DEFAULT_URL, ItemResult, ServiceClient
from m365connect.client.jobs import JobRun, job_file
from m365connect.client.options import ApiKey, LoginUrl, Url, reported
from m365connect.codes import ErrorCode
from m365connect.explanations import DEFAULT_LOGIN_URL, Context

__all__ = ["connect", "credentials_app"]

T = TypeVar("T")


def connect(
    csv_file: Annotated[Path, typer.Argument(help="CSV: mailbox_email[,display_name] (header row optional)")],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
    credential_id: Annotated[
        int | None, typer.Option("--credential-id", help="Needed when the account has several credentials")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Mailboxes per request (the server's limit)")
    ] = 1000,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Results CSV (default: FILE.results.csv)")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Attempts per mailbox on MICROSOFT_* failures")
    ] = 4,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0.0, help="Seconds before the first retry (then doubled)")
    ] = 2.0,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Follow the job a previous run of this command started (remembered in RESULTS.job) "
            "instead of starting one; without it a re-run sends the same Idempotency-Key, which the "
            "service answers with the same job within 24 hours, so a job is never started twice",
        ),
    ] = False,
    job: Annotated[
        bool,
        typer.Option(
            "--job/--no-job",
            help="A file of more than --batch-size rows goes as one bulk job (default), or as requests of "
            "--batch-size with --no-job",
        ),
    ] = True,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.05, hidden=True)] = 1.0,
) -> None:
    """Connect every mailbox of a CSV file through a running service; write one result per row.

    A file larger than one request (--batch-size) goes as one bulk job that the service runs on its own:
    the command follows it with a progress bar; Ctrl-C stops following (the job goes on) and --resume
    picks it up again."""
    out, err = Console(), Console(stderr=True)
    with reported(err):
        source = read_input(csv_file)
        target = output or csv_file.with_name(f"{csv_file.stem}.results.csv")
        if target.resolve() == csv_file.resolve():
            raise InputError("--output must not be the input file")
        counts = Counts(total=len(source.rows))
        if resume or (job and len(source.rows) > batch_size):
            run = _Job(csv_file, output, source, target, credential_id, poll_interval)
            _connect_as_job(out, err, run, url, api_key, resume=resume, login_url=login_url)
            return
        with ServiceClient(url=url, api_key=api_key, on_wait=_waiting(err)) as client:
            results = _with_progress(
                out,
                counts,
                lambda on_progress: connect_rows(
                    client,
                    source.rows,
                    credential_id=credential_id,
                    batch_size=batch_size,
                    retry=RetryPolicy(max_attempts=max_attempts, first_delay=retry_delay),
                    progress=counts,
                    on_progress=on_progress,
                ),
            )
            base = _credential_context(client, credential_id, results, login_url)
        _write(target, source, results, base)
    report.print_table(out, report.summary_table(results))
    how = report.fixes(results, base)
    if how is not None:
        out.print(how, soft_wrap=True, highlight=False)
    out.print(
        f"{counts.connected} connected, {counts.failed} failed, {counts.retried} retried; "
        f"results in {target}",
        highlight=False,
        soft_wrap=True,
    )


@dataclass(frozen=True)
class _Job:
    csv_file: Path
    output: Path | None
    source: InputFile
    target: Path
    credential_id: int | None
    poll_interval: float


def _connect_as_job(
    out: Console, err: Console, run: _Job, url: str, api_key: str, *, resume: bool, login_url: str
) -> None:
    counts = Counts(total=len(run.source.rows))
    with ServiceClient(url=url, api_key=api_key, on_wait=_waiting(err)) as client:
        job_run = JobRun(
            client=client,
            rows=run.source.rows,
            credential_id=run.credential_id,
            results_path=run.target,
            poll_interval=run.poll_interval,
        )
        started: list[int] = []
        try:
            job_id = job_run.start_or_resume(resume=resume, on_started=started.append)
            out.print(
                f"job {job_id}: {counts.total} mailboxes, run by the service "
                f"(remembered in {job_file(run.target)})",
                highlight=False,
                soft_wrap=True,
            )
            outcome = _with_progress(
                out, counts, lambda on_progress: job_run.follow(job_id, counts, on_progress)
            )
        except KeyboardInterrupt:
            if not started and not resume:
                raise  # no job was started (or its answer was not read)
            again = f"m365connect connect {run.csv_file}" + (f" -o {run.output}" if run.output else "")
            which = f"job {started[0]}" if started else "the job"
            err.print(
                f"interrupted: {which} goes on in the service (not cancelled); "
                f"follow it again with: {again} --resume",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        answered = [item for item in outcome.results if item is not None]
        base = _credential_context(client, run.credential_id, answered, login_url)
    missing = len(outcome.results) - len(answered)
    _write(run.target, run.source, outcome.results, base, job_id=job_id)
    job_file(run.target).unlink(missing_ok=True)
    report.print_table(out, report.summary_table(answered))
    how = report.fixes(answered, base)
    if how is not None:
        out.print(how, soft_wrap=True, highlight=False)
    if outcome.status == "CANCELLED":
        err.print(
            f"job {job_id} was CANCELLED: {missing} rows were not processed (their row has no result); "
            "submit them again in a new file",
            highlight=False,
            soft_wrap=True,
        )
    connected = sum(1 for item in answered if item.success)
    out.print(
        f"{connected} connected, {len(answered) - connected} failed (job {job_id}, {outcome.status}); "
        f"results in {run.target}",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.status == "CANCELLED":
        raise typer.Exit(1)


def _waiting(err: Console) -> Callable[[int, float], None]:
    def on_wait(status: int, seconds: float) -> None:
        err.print(f"service answered {status}: retrying in {seconds:g} s", highlight=False)

    return on_wait


def _with_progress(console: Console, counts: Counts, work: Callable[[Callable[[Counts], None]], T]) -> T:
    columns = (
        TextColumn("connecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("connect", total=counts.total, counts="")

        def on_progress(now: Counts) -> None:
            label = f"connected {now.connected} · failed {now.failed} · retried {now.retried}"
            bar.update(task, completed=now.done, counts=label)

        try:
            return work(on_progress)
        except ClientError:
            if counts.connected:
                console.print(
                    f"{counts.connected} mailboxes were connected before the error; "
                    "running the same command again is safe (re-adding is idempotent)"
                )
            raise


def _credential_context(
    client: ServiceClient, credential_id: int | None, results: list[ItemResult], login_url: str
) -> Context:
    """Tenant and client of the credential used, when a failure's explanation needs them."""
    needs = {ErrorCode.MISSING_PERMISSIONS, ErrorCode.MAILBOX_ACCESS_DENIED}
    if not any(item.error in needs for item in results):
        return Context(login_url=login_url)
    credentials = client.list_credentials()
    if credential_id is not None:
        used = [c for c in credentials if c["credential_id"] == credential_id]
    else:
        used = [c for c in credentials if c["status"] == "VALID"]
    if len(used) != 1:
        return Context(login_url=login_url)
    return Context(
        tenant_id=used[0]["tenant_id"],
        client_id=used[0]["client_id"],
        credential_id=used[0]["credential_id"],
        login_url=login_url,
        cloud=used[0].get("cloud", "global"),
    )


def _write(
    target: Path,
    source: InputFile,
    results: Sequence[ItemResult | None],
    base: Context,
    *,
    job_id: int | None = None,
) -> None:
    rows = [
        result_row(row, item, base, job_id=job_id) for row, item in zip(source.rows, results, strict=True)
    ]
    write_results(target, rows, delimiter=source.delimiter, bom=source.bom)
