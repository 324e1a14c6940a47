"""Webhooks: subscriptions, signed deliveries (Standard Webhooks), their log and the outbox (API.md 6)."""
