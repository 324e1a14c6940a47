"""Microsoft identity platform and Graph clients; imports neither FastAPI nor SQLAlchemy."""
