-- name: unresolved_alerts
-- Every open or acked alert for Alertmanager's GET /api/v2/alerts, with what became of its
-- latest notifications (those of its highest transition_seq and reminder number, one row per
-- destination or route): the alert counts as suppressed while every one of them was suppressed
-- (notifications.suppressed_by names the silence or the inhibiting alert), and as unprocessed
-- while its current transition is not planned yet. receivers: every route_key it was planned for.
SELECT a.id, a.tenant_id, a.base_id, a.kind, a.severity::text AS severity, a.status, a.dedupe_key,
       a.first_seen_at, a.last_seen_at, a.context, a.planned_seq < a.transition_seq AS unplanned,
       coalesce(r.receivers, '{}') AS receivers,
       coalesce(l.total, 0) AS latest_total, coalesce(l.suppressed, 0) AS latest_suppressed,
       coalesce(l.suppressed_by, '{}') AS suppressed_by
FROM notify.alerts a
LEFT JOIN LATERAL (
  SELECT array_agg(DISTINCT n.route_key ORDER BY n.route_key) AS receivers
  FROM notify.notifications n
  WHERE n.tenant_id = a.tenant_id AND n.alert_id = a.id AND n.route_key IS NOT NULL
) r ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS total, count(*) FILTER (WHERE n.status = 'suppressed') AS suppressed,
         array_agg(DISTINCT n.suppressed_by ORDER BY n.suppressed_by)
           FILTER (WHERE n.status = 'suppressed' AND n.suppressed_by IS NOT NULL) AS suppressed_by
  FROM notify.notifications n
  WHERE n.tenant_id = a.tenant_id AND n.alert_id = a.id
    AND (n.transition_seq, n.reminder_no) = (
      SELECT m.transition_seq, m.reminder_no FROM notify.notifications m
      WHERE m.tenant_id = a.tenant_id AND m.alert_id = a.id AND m.transition_seq IS NOT NULL
      ORDER BY m.transition_seq DESC, m.reminder_no DESC LIMIT 1)
) l ON true
WHERE a.status IN ('open', 'ack')
ORDER BY a.tenant_id, a.id;
