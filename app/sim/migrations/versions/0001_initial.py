"""Create the merchant schema.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE endpoint_settings (
    env text PRIMARY KEY,
    secret text,
    mode text NOT NULL DEFAULT 'normal',
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL
);

CREATE TABLE received_events (
    event_id text PRIMARY KEY,
    type text,
    env text NOT NULL,
    order_id text,
    sequence bigint,
    payload jsonb NOT NULL,
    payload_verified boolean NOT NULL,
    attempt_count integer NOT NULL,
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    last_signature_valid boolean NOT NULL
);
CREATE INDEX received_events_first ON received_events (first_received_at DESC, event_id DESC);
CREATE INDEX received_events_order ON received_events (order_id);

CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    method text NOT NULL,
    env text NOT NULL,
    known_env boolean NOT NULL,
    -- json, not jsonb: kept as received, and never queried inside.
    headers json NOT NULL,
    body bytea NOT NULL,
    body_size integer NOT NULL,
    event_id text,
    event_type text,
    order_id text,
    delivery_attempt integer,
    signature_valid boolean NOT NULL,
    signature_error text,
    standard_signature_valid boolean,
    standard_signature_error text,
    parse_error text,
    mode text NOT NULL,
    mode_options json NOT NULL,
    status_code integer,
    held_ms integer NOT NULL,
    outcome text NOT NULL
);
CREATE INDEX attempts_event ON attempts (event_id, id);
CREATE INDEX attempts_order ON attempts (order_id, id);

CREATE TABLE merchant_orders (
    order_id text PRIMARY KEY,
    env text NOT NULL,
    status text NOT NULL,
    amount bigint NOT NULL,
    held_amount bigint NOT NULL,
    released_amount bigint NOT NULL,
    refunded_amount bigint NOT NULL,
    sequence bigint NOT NULL,
    last_event_id text NOT NULL,
    last_event_type text NOT NULL,
    snapshot jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX merchant_orders_first ON merchant_orders (first_seen_at DESC, order_id DESC);

CREATE TABLE settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(
        "DROP TABLE settings, merchant_orders, attempts, received_events,"
        " endpoint_settings"
    )
