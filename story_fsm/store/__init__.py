"""Persistence: the tables, the SQL store, and the migrations that own the schema."""
