"""Create the platform schema.

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
CREATE TABLE orders (
    id text PRIMARY KEY,
    env text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    description text,
    status text NOT NULL CHECK (status IN
        ('pending_payment', 'held', 'released', 'refunded', 'expired')),
    held_amount bigint NOT NULL DEFAULT 0 CHECK (held_amount >= 0),
    released_amount bigint NOT NULL DEFAULT 0 CHECK (released_amount >= 0),
    refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    last_sequence integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (held_amount + released_amount + refunded_amount <= amount)
);
CREATE INDEX orders_created_at ON orders (created_at DESC);

CREATE TABLE charges (
    txid text PRIMARY KEY,
    order_id text NOT NULL UNIQUE REFERENCES orders (id),
    br_code text NOT NULL,
    expires_at timestamptz NOT NULL,
    paid_at timestamptz,
    end_to_end_id text UNIQUE
);
CREATE INDEX charges_expires_at ON charges (expires_at) WHERE paid_at IS NULL;

CREATE TABLE events (
    id text PRIMARY KEY,
    type text NOT NULL,
    env text NOT NULL,
    order_id text NOT NULL REFERENCES orders (id),
    sequence integer NOT NULL,
    created_at timestamptz NOT NULL,
    body bytea NOT NULL,
    UNIQUE (order_id, sequence)
);
CREATE INDEX events_created_at ON events (created_at DESC, id DESC);

CREATE TABLE webhook_endpoints (
    env text PRIMARY KEY,
    url text,
    secret text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    updated_at timestamptz NOT NULL
);

CREATE TABLE deliveries (
    id text PRIMARY KEY,
    event_id text NOT NULL UNIQUE REFERENCES events (id),
    env text NOT NULL,
    order_id text NOT NULL,
    sequence integer NOT NULL,
    status text NOT NULL CHECK (status IN
        ('pending', 'in_flight', 'delivered', 'failed', 'cancelled')),
    attempt_count integer NOT NULL DEFAULT 0,
    schedule text NOT NULL,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    last_http_status integer,
    last_error_kind text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_in_flight ON deliveries (lease_until)
    WHERE status = 'in_flight';
CREATE INDEX deliveries_order ON deliveries (order_id, sequence);

CREATE TABLE delivery_attempts (
    id bigserial PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES deliveries (id),
    event_id text NOT NULL,
    number integer NOT NULL,
    trigger text NOT NULL CHECK (trigger IN ('automatic', 'manual')),
    status text NOT NULL CHECK (status IN
        ('in_flight', 'succeeded', 'failed', 'interrupted')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    latency_ms integer,
    http_status integer,
    error_kind text,
    error_message text,
    response_excerpt text,
    location text,
    request_headers jsonb NOT NULL,
    endpoint_url text NOT NULL,
    endpoint_env text NOT NULL,
    secret_fingerprint text NOT NULL,
    UNIQUE (delivery_id, number)
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, number);

CREATE TABLE ledger_accounts (
    code text PRIMARY KEY,
    name text NOT NULL,
    normal_side text NOT NULL CHECK (normal_side IN ('debit', 'credit'))
);
INSERT INTO ledger_accounts (code, name, normal_side) VALUES
    ('pix_settlement', 'Pix settlement (money received)', 'debit'),
    ('escrow_custody', 'Escrow custody (held for orders)', 'credit'),
    ('merchant_payable', 'Merchant payable (released)', 'credit'),
    ('buyer_refunds', 'Buyer refunds (returned)', 'credit');

CREATE TABLE ledger_transactions (
    id text PRIMARY KEY,
    order_id text REFERENCES orders (id),
    kind text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ledger_transactions_order ON ledger_transactions (order_id);

CREATE TABLE ledger_entries (
    id bigserial PRIMARY KEY,
    transaction_id text NOT NULL REFERENCES ledger_transactions (id),
    account_code text NOT NULL REFERENCES ledger_accounts (code),
    direction text NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount bigint NOT NULL CHECK (amount > 0)
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);

-- Entries and transactions are append-only: corrections are new
-- transactions, so any UPDATE or DELETE is an error at the database.
CREATE FUNCTION ledger_reject_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % rejected',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();

-- A transaction must balance when its database transaction commits.
CREATE FUNCTION ledger_check_balance() RETURNS trigger AS $$
DECLARE
    debits bigint;
    credits bigint;
    lines integer;
BEGIN
    SELECT coalesce(sum(amount) FILTER (WHERE direction = 'debit'), 0),
           coalesce(sum(amount) FILTER (WHERE direction = 'credit'), 0),
           count(*)
      INTO debits, credits, lines
      FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF debits <> credits OR lines < 2 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: debits % credits %',
            NEW.transaction_id, debits, credits USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balance();

CREATE TABLE idempotency_keys (
    key text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    request_hash text NOT NULL,
    status integer,
    response_body bytea,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (key, method, path)
);
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(
        "DROP TABLE idempotency_keys, ledger_entries, ledger_transactions, "
        "ledger_accounts, delivery_attempts, deliveries, webhook_endpoints, "
        "events, charges, orders CASCADE;"
        "DROP FUNCTION ledger_reject_change, ledger_check_balance;"
    )
