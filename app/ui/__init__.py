"""The desktop window: widgets that call the two HTTP APIs, never a database."""
