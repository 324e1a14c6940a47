"""Helpers of the console tests: sign in through the real form, read a form's CSRF token."""

from __future__ import annotations

import re

import httpx

SIGN_IN = "/console/sign-in"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    """Fill in and send the sign-in form (the answer is not followed)."""
    form = await client.get(SIGN_IN)
    assert form.status_code == 200, form.text
    return await client.post(SIGN_IN, data={"api_key": api_key, "csrf_token": csrf_of(form.text)})


async def signed_in_csrf(client: httpx.AsyncClient) -> str:
    """The session's CSRF token, read from the credentials page."""
    page = await client.get("/console/credentials")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
