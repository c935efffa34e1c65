-- Detection at 100,000 tenants in under 5 s (issue 3). docs/SCHEMA.md, section "Detect", and
-- docs/ARCHITECTURE.md, sections "Detect" and "Plan", have the reasons.

-- The planner's cursor for transitions moves onto the alert row. Every statement of the engine
-- that makes a transition also sets planned_seq to the new transition_seq, and its transaction
-- plans that transition's notifications before it commits (engine.planner), so the first
-- detection pass no longer writes a second row (with a foreign-key check) for each alert it
-- opens: that was a quarter of the pass. A row written by anything else keeps planned_seq behind
-- transition_seq, and the periodic plan tick still plans it.
ALTER TABLE notify.alerts ADD COLUMN planned_seq integer NOT NULL DEFAULT 0;

UPDATE notify.alerts a SET planned_seq = p.planned_seq
FROM notify.alert_delivery_plans p
WHERE p.tenant_id = a.tenant_id AND p.alert_id = a.id;

-- What remains of notify.alert_delivery_plans is the reminder cursor: rows exist only for alerts
-- that had a reminder planned (planned_reminder of transition planned_seq).
DELETE FROM notify.alert_delivery_plans WHERE planned_reminder = 0;

-- Detection runs as `detect.parallelism` transactions at once, each over the tenants of one shard
-- (2 cores: about twice as fast). The shard of a tenant is the hash PostgreSQL uses for hash
-- partitioning, which is kept stable across major versions. Inlined by the planner (plain SQL).
CREATE FUNCTION notify.tenant_shard(tenant_id uuid, shards integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT abs(uuid_hash_extended(tenant_id, 0) % shards)::integer $$;
