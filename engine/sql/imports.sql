-- name: primary_key_columns
-- The columns of a table's primary key, in key order, with their types (`notifyctl logs import`
-- looks rows of an earlier run up by them).
SELECT a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type_name
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = CAST(:table AS regclass) AND i.indisprimary
ORDER BY k.ord;
