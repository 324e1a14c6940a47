"""Microsoft mailboxes connected through a Graph credential."""
