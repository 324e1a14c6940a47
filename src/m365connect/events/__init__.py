"""Events: every state change of a credential or a mailbox, kept per account (API.md 6)."""
