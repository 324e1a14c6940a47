"""Database plumbing: declarative base, portable types, engine and session factory."""
