-- name: partitioned_tables
-- Every partitioned parent in the given schemas (each database discovers its own tables).
SELECT format('%I.%I', n.nspname, c.relname) AS parent
FROM pg_partitioned_table p
JOIN pg_class c ON c.oid = p.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (:schemas) AND NOT c.relispartition
ORDER BY 1;

-- name: create_month
-- Creates one month partition (moving that month's rows out of the DEFAULT partition).
-- NULL when the partition already existed, else the number of rows moved.
SELECT partitions.create_month(CAST(:parent AS regclass), CAST(:month AS date)) AS moved;

-- name: stray_months
-- Months that have rows waiting in the DEFAULT partition of :parent.
SELECT m AS month FROM partitions.stray_months(CAST(:parent AS regclass)) AS m;

-- name: list_partitions
-- Every partition with its bounds, decided from PostgreSQL's stored bounds, never from names.
SELECT parent, partition, schema_name, partition_name,
       is_default, lower_bound, upper_bound
FROM partitions.list(:schemas);

