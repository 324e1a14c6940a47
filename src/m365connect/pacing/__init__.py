"""Graph budgets shared by every process on one database (docs/graph-client.md, "Pacing")."""
