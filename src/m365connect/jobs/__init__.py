"""Bulk jobs: large imports run in chunks on the background work engine (API.md 7)."""
