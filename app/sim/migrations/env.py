"""Alembic environment of the sim side."""

from alembic import context

from app.core.migrations import run_online
from app.sim.models import Base

run_online(context.config, Base.metadata)
