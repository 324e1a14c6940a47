"""Microsoft Graph app-only credentials."""
