"""The operator console at /console (API.md 8): server-rendered pages over the same services as the API."""
