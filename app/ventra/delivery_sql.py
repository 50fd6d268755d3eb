"""SQL statements of the delivery worker, kept apart from its control flow."""

from sqlalchemy import text

CLAIM_SQL = text(
    """
    WITH due AS (
        SELECT d.id
          FROM deliveries d
          JOIN webhook_endpoints w ON w.env = d.env
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND w.enabled AND w.url IS NOT NULL
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
          FROM due
         WHERE deliveries.id = due.id
        RETURNING deliveries.id, deliveries.event_id, deliveries.attempt_count,
                  deliveries.env
    )
    SELECT c.id, c.event_id, c.attempt_count, c.env, e.body, w.url, w.secret
      FROM claimed c
      JOIN events e ON e.id = c.event_id
      JOIN webhook_endpoints w ON w.env = c.env
    """
)

# A manual retry waits for the row lock instead of skipping: it must see
# whether another worker holds the delivery.
MANUAL_CLAIM_SQL = text(
    """
    SELECT d.id, d.status, d.attempt_count, d.env, e.body,
           w.url, w.secret, w.enabled, w.disabled_reason
      FROM deliveries d
      JOIN events e ON e.id = d.event_id
      JOIN webhook_endpoints w ON w.env = d.env
     WHERE d.event_id = :event_id
       FOR UPDATE OF d
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
    UPDATE delivery_attempts
       SET status = :status, finished_at = :finished_at, latency_ms = :latency_ms,
           http_status = :http_status, error_kind = :error_kind,
           error_message = :error_message, response_excerpt = :excerpt,
           location = :location
     WHERE delivery_id = :delivery_id AND number = :number
    """
)

# A success also settles a delivery that lease recovery had put back in
# the queue: the receiver has the event, so sending it again is pointless.
DELIVERED_SQL = text(
    """
    UPDATE deliveries
       SET status = 'delivered', next_attempt_at = NULL, lease_until = NULL,
           last_http_status = :http_status, last_error_kind = NULL,
           updated_at = :now
     WHERE id = :delivery_id
       AND (status = 'pending' OR (status = 'in_flight' AND attempt_count = :number))
    """
)

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
