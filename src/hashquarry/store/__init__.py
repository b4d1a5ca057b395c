"""The store: SQLAlchemy 2 (SQLite WAL by default, PostgreSQL by URL) with Alembic migrations."""
