-- Applied once to every database that holds one or more sections.
-- The seed's "common bootstrap", plus the partition helpers the seed only sketched.

CREATE EXTENSION IF NOT EXISTS pgcrypto;  -- gen_random_uuid(), as the seed asks (core has it since 13)

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE t.typname = 'sev_level' AND n.nspname = 'public') THEN
    CREATE TYPE public.sev_level AS ENUM ('info', 'warn', 'critical');
  END IF;
END$$;

-- Partition helpers, shared by every partitioned table of every section.
-- Seed defect 7: the seed formatted 'schema.table_yyyymm' into ONE identifier (so the partition
-- landed in public as "admin_log.admin_events_202511") and computed month bounds in the session
-- time zone. Here the schema and the name are quoted separately and bounds are UTC instants.
CREATE SCHEMA IF NOT EXISTS partitions;

-- The partition key column of a partitioned table (always a timestamptz here).
CREATE OR REPLACE FUNCTION partitions.key_column(parent regclass) RETURNS name
LANGUAGE sql STABLE AS $$
  SELECT a.attname
  FROM pg_partitioned_table p
  JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
  WHERE p.partrelid = parent
$$;

-- Column list without generated columns: rows moved between partitions must let
-- PostgreSQL recompute occurred_on & co.
CREATE OR REPLACE FUNCTION partitions.insertable_columns(parent regclass) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
  FROM pg_attribute
  WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
$$;

CREATE OR REPLACE FUNCTION partitions.default_partition(parent regclass) RETURNS regclass
LANGUAGE sql STABLE AS $$
  SELECT i.inhrelid::regclass
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
$$;

-- [lower, upper) of a month partition as UTC instants; NULLs for the default partition.
-- Decided from the bound PostgreSQL stores, never from the partition's name.
CREATE OR REPLACE FUNCTION partitions.bounds(part regclass, OUT lower_bound timestamptz, OUT upper_bound timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  expr text := (SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = part);
BEGIN
  -- pg_get_expr renders timestamptz bounds with their UTC offset, so the cast is exact
  -- whatever the session TimeZone.
  lower_bound := substring(expr FROM $re$FROM \('([^']+)'\)$re$)::timestamptz;
  upper_bound := substring(expr FROM $re$TO \('([^']+)'\)$re$)::timestamptz;
END$$;

-- Every partition of every partitioned table in the given schemas, with its bounds.
-- Names come schema-qualified and quoted (regclass::text drops the schema when it is on the
-- search_path, which would make output depend on the session).
CREATE OR REPLACE FUNCTION partitions.list(schemas text[])
RETURNS TABLE (parent text, partition text, schema_name name, partition_name name,
               is_default boolean, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT format('%I.%I', pn.nspname, pc.relname), format('%I.%I', n.nspname, c.relname),
         n.nspname, c.relname,
         pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', b.lower_bound, b.upper_bound
  FROM pg_inherits i
  JOIN pg_class pc ON pc.oid = i.inhparent AND pc.relkind = 'p'
  JOIN pg_namespace pn ON pn.oid = pc.relnamespace
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL partitions.bounds(i.inhrelid::regclass) b
  WHERE n.nspname = ANY (schemas)
  ORDER BY 1, b.lower_bound NULLS FIRST
$$;

-- Creates the month partition of `parent` that holds `month_start` (the first day of a UTC month),
-- named <table>_YYYYMM in the parent's schema. Rows of that month already sitting in the DEFAULT
-- partition are moved into it: PostgreSQL refuses to create the month while the default holds
-- such rows, so detach the default, create the month, move the rows, re-attach, all in the
-- caller's transaction. Returns the number of rows moved, or NULL when the month existed.
CREATE OR REPLACE FUNCTION partitions.create_month(parent regclass, month_start date)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  parent_schema name;
  parent_name   name;
  part_name     text;
  key_col       name := partitions.key_column(parent);
  cols          text := partitions.insertable_columns(parent);
  lo            timestamptz := (date_trunc('month', month_start)::timestamp AT TIME ZONE 'UTC');
  hi            timestamptz := ((date_trunc('month', month_start) + interval '1 month')::timestamp AT TIME ZONE 'UTC');
  dflt          regclass := partitions.default_partition(parent);
  stray         boolean := false;
  moved         bigint := 0;
BEGIN
  IF key_col IS NULL THEN
    RAISE EXCEPTION 'partitions.create_month: % is not a partitioned table', parent;
  END IF;
  SELECT n.nspname, c.relname INTO parent_schema, parent_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
  part_name := parent_name || '_' || to_char(month_start, 'YYYYMM');

  -- Serialise creators of the same parent (two daemons, or a CLI beside a daemon).
  PERFORM pg_advisory_xact_lock(hashtext('partitions.create_month'), parent::oid::int);
  IF to_regclass(format('%I.%I', parent_schema, part_name)) IS NOT NULL THEN
    RETURN NULL;
  END IF;

  IF dflt IS NOT NULL THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= %L AND %I < %L)', dflt, key_col, lo, key_col, hi)
      INTO stray;
  END IF;

  IF stray THEN
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, dflt);
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   parent_schema, part_name, parent, lo, hi);
    EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING %s) '
                   'INSERT INTO %I.%I (%s) SELECT %s FROM moved',
                   dflt, key_col, lo, key_col, hi, cols, parent_schema, part_name, cols, cols);
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s DEFAULT', parent, dflt);
  ELSE
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   parent_schema, part_name, parent, lo, hi);
  END IF;
  RETURN moved;
END$$;

-- Months (first days, UTC) that have rows waiting in the default partition of `parent`.
CREATE OR REPLACE FUNCTION partitions.stray_months(parent regclass) RETURNS SETOF date
LANGUAGE plpgsql STABLE AS $$
DECLARE
  dflt regclass := partitions.default_partition(parent);
BEGIN
  IF dflt IS NULL THEN RETURN; END IF;
  RETURN QUERY EXECUTE format(
    'SELECT DISTINCT date_trunc(''month'', %I AT TIME ZONE ''UTC'')::date FROM %s ORDER BY 1',
    partitions.key_column(parent), dflt);
END$$;
