"""Background work: durable, retried, scheduled jobs shared by every `serve` and `worker` process."""
