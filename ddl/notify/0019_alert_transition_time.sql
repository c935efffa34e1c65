-- The planner of a transaction (engine.planner.plan_transitions_of_this_transaction) reads the
-- alerts its transaction stamped, `transition_at >= now`: without an index that is a scan of every
-- alert, which grew with the table (50 ms per POST /api/v2/alerts batch at 40,000 alerts, 4 ms
-- with it).
CREATE INDEX not_alert_transition_at ON notify.alerts (transition_at);
