"""m365connect: connect Microsoft 365 mailboxes in bulk through Microsoft Graph app-only credentials."""
