-- name: partition_names
-- Unquoted names for the archive path: the parent's schema and table, the partition's own name.
SELECT pn.nspname AS schema_name, pc.relname AS table_name,
       n.nspname AS partition_schema, c.relname AS partition_name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_inherits i ON i.inhrelid = c.oid
JOIN pg_class pc ON pc.oid = i.inhparent
JOIN pg_namespace pn ON pn.oid = pc.relnamespace
WHERE c.oid = CAST(:partition AS regclass);

-- name: partition_columns
-- The partition's columns in order, with what the Parquet schema needs to know about each.
SELECT a.attname AS name,
       CASE WHEN t.typtype = 'e' THEN 'enum' ELSE format_type(a.atttypid, NULL) END AS type_name,
       information_schema._pg_numeric_precision(a.atttypid, a.atttypmod) AS numeric_precision,
       information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) AS numeric_scale,
       a.attnotnull AS not_null
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = CAST(:partition AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;
