"""SQL statements of the delivery worker, kept apart from its control flow.

Statements that write many rows take them as one JSON array, read with
``jsonb_to_recordset``, so a batch costs one statement instead of one per
row.
"""

from sqlalchemy import text

# Claims the due deliveries of one environment; each environment's lane of
# senders claims for itself.
CLAIM_SQL = text(
    """
    WITH due AS (
        SELECT d.id
          FROM deliveries d
         WHERE d.status = 'pending'
           AND d.env = :env
           AND d.next_attempt_at <= now()
           AND EXISTS (SELECT 1 FROM webhook_endpoints w
                        WHERE w.env = :env AND w.enabled AND w.url IS NOT NULL)
           AND NOT EXISTS (
               SELECT 1 FROM deliveries older
                WHERE older.order_id = d.order_id
                  AND older.sequence < d.sequence
                  AND older.status IN ('pending', 'in_flight'))
         ORDER BY d.next_attempt_at
         LIMIT :limit
           FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE deliveries
           SET status = 'in_flight',
               attempt_count = deliveries.attempt_count + 1,
               lease_until = now() + :lease,
               updated_at = now()
         WHERE deliveries.id = ANY (ARRAY(SELECT id FROM due))
        RETURNING deliveries.id, deliveries.event_id, deliveries.attempt_count,
                  deliveries.env
    )
    SELECT c.id, c.event_id, c.attempt_count, c.env,
           (SELECT e.body FROM events e WHERE e.id = c.event_id),
           w.url, w.secret
      FROM claimed c
      JOIN webhook_endpoints w ON w.env = c.env
    """
)
# The claimed rows and their bodies are looked up by key, with ANY and a
# subquery, because a hash join would read all of deliveries and events
# on every claim.

# A manual retry waits for the row lock instead of skipping: it must see
# whether another worker holds the delivery. The lock is taken by a
# statement of its own because a statement that waits for a row lock reads
# the other tables as they were when it started. MANUAL_CLAIM_SQL then
# reads the endpoint afresh, so a change committed during the wait is seen.
MANUAL_LOCK_SQL = text(
    """
    SELECT id FROM deliveries WHERE event_id = :event_id FOR UPDATE
    """
)

# FOR SHARE OF w: a change of the endpoint that is being written commits
# first and is seen here, or waits for this claim to commit.
MANUAL_CLAIM_SQL = text(
    """
    SELECT d.id, d.status, d.attempt_count, d.env, e.body,
           w.url, w.secret, w.enabled, w.disabled_reason
      FROM deliveries d
      JOIN events e ON e.id = d.event_id
      JOIN webhook_endpoints w ON w.env = d.env
     WHERE d.id = :id
       FOR SHARE OF w
    """
)

INSERT_ATTEMPTS_SQL = text(
    """
    INSERT INTO delivery_attempts
        (delivery_id, event_id, number, trigger, status, started_at,
         request_headers, endpoint_url, endpoint_env, secret_fingerprint)
    SELECT c.delivery_id, c.event_id, c.number, c.trigger, 'in_flight', :started_at,
           c.request_headers, c.endpoint_url, c.endpoint_env, c.secret_fingerprint
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS c(delivery_id text, event_id text, number integer, trigger text,
                request_headers jsonb, endpoint_url text, endpoint_env text,
                secret_fingerprint text)
    """
)

MANUAL_START_SQL = text(
    """
    UPDATE deliveries
       SET status = 'in_flight',
           attempt_count = attempt_count + 1,
           lease_until = now() + :lease,
           next_attempt_at = CASE WHEN status = 'pending'
                                  THEN next_attempt_at END,
           updated_at = now()
     WHERE id = :id
    RETURNING attempt_count
    """
)

ATTEMPT_DONE_SQL = text(
    """
    UPDATE delivery_attempts a
       SET status = o.status, finished_at = :finished_at, latency_ms = o.latency_ms,
           http_status = o.http_status, error_kind = o.error_kind,
           error_message = o.error_message, response_excerpt = o.excerpt,
           location = o.location
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS o(delivery_id text, number integer, status text, latency_ms integer,
                http_status integer, error_kind text, error_message text,
                excerpt text, location text)
     WHERE a.delivery_id = o.delivery_id AND a.number = o.number
    """
)

# A success also settles a delivery that lease recovery had put back in
# the queue: the receiver has the event, so sending it again is pointless.
DELIVERED_SQL = text(
    """
    UPDATE deliveries d
       SET status = 'delivered', next_attempt_at = NULL, lease_until = NULL,
           last_http_status = o.http_status, last_error_kind = NULL,
           updated_at = :now
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS o(delivery_id text, number integer, http_status integer)
     WHERE d.id = o.delivery_id
       AND (d.status = 'pending'
            OR (d.status = 'in_flight' AND d.attempt_count = o.number))
    """
)

# FOR SHARE OF w: a concurrent disable of the endpoint either commits
# first and is seen here, or waits and then cancels what this leaves pending.
FAILED_STATE_SQL = text(
    """
    SELECT d.id, d.status, d.attempt_count, d.schedule, d.next_attempt_at,
           w.enabled,
           (SELECT count(*) FROM delivery_attempts a
             WHERE a.delivery_id = d.id AND a.trigger = 'automatic'
               AND a.status = 'failed') AS automatic_failures,
           EXISTS (SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
               AS delivered_before
      FROM deliveries d
      JOIN webhook_endpoints w ON w.env = d.env
     WHERE d.id = ANY(:ids)
     ORDER BY d.id
       FOR UPDATE OF d
       FOR SHARE OF w
    """
)

FAILED_SQL = text(
    """
    UPDATE deliveries
       SET status = :status, next_attempt_at = :next_attempt_at, lease_until = NULL,
           last_http_status = :http_status, last_error_kind = :error_kind,
           updated_at = :now
     WHERE id = :delivery_id
    """
)

# Interrupted attempts do not count towards the schedule: the receiver did
# nothing wrong, so a crash never turns a delivery into a failed one.
RECOVER_SQL = text(
    """
    WITH stale AS (
        SELECT id FROM deliveries
         WHERE status = 'in_flight' AND lease_until < now()
         ORDER BY id
           FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE delivery_attempts a
           SET status = 'interrupted', finished_at = now(),
               error_kind = 'interrupted',
               error_message = 'the sending process stopped before the'
                               ' attempt was recorded'
          FROM stale
         WHERE a.delivery_id = stale.id AND a.status = 'in_flight'
        RETURNING a.delivery_id, a.event_id, a.number
    ), reset AS (
        UPDATE deliveries d
           SET status = CASE WHEN EXISTS (
                   SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
                 THEN 'delivered' ELSE 'pending' END,
               next_attempt_at = CASE WHEN EXISTS (
                   SELECT 1 FROM delivery_attempts a
                    WHERE a.delivery_id = d.id AND a.status = 'succeeded')
                 THEN NULL ELSE now() END,
               lease_until = NULL,
               last_error_kind = 'interrupted',
               updated_at = now()
          FROM stale
         WHERE d.id = stale.id
        RETURNING d.id
    )
    SELECT m.delivery_id, m.event_id, m.number,
           (SELECT count(*) FROM reset) AS reset_count
      FROM marked m
    """
)

BULK_RETRY_SQL = text(
    """
    UPDATE deliveries
       SET status = 'pending', next_attempt_at = now(), updated_at = now()
     WHERE env = :env AND status IN ('failed', 'cancelled') AND created_at >= :since
    """
)

# Hands back a claimed attempt that was never sent: the delivery is due
# again with its attempt number, or cancelled if its endpoint has been
# disabled since the claim, and no attempt row is left behind. The endpoint
# rows are locked FOR SHARE, so a concurrent disable either waits for this
# statement or is seen by it.
RELEASE_SQL = text(
    """
    WITH unsent AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS u(delivery_id text, number integer)
    ), endpoint AS (
        SELECT env, enabled FROM webhook_endpoints FOR SHARE
    ), released AS (
        UPDATE deliveries d
           SET status = CASE WHEN w.enabled THEN 'pending' ELSE 'cancelled' END,
               next_attempt_at = CASE WHEN w.enabled THEN d.next_attempt_at END,
               attempt_count = d.attempt_count - 1,
               lease_until = NULL, updated_at = now()
          FROM unsent u, endpoint w
         WHERE d.id = u.delivery_id AND w.env = d.env
           AND d.status = 'in_flight' AND d.attempt_count = u.number
        RETURNING d.id, u.number
    )
    DELETE FROM delivery_attempts a
     USING released r
     WHERE a.delivery_id = r.id AND a.number = r.number AND a.status = 'in_flight'
    """
)
