"""Alembic environment of the ventra side."""

from alembic import context

from app.core.migrations import run_online
from app.ventra.models import Base

run_online(context.config, Base.metadata)
