"""Background verification of credentials and connected mailboxes (API.md 6, issue 11 item 2)."""
