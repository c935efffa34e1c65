-- name: current_role_powers
-- Whether the connecting user may create roles (CONTRACT.md: create them when it may, say so otherwise).
SELECT rolname AS name, rolsuper AS is_superuser, rolsuper OR rolcreaterole AS may_create_roles
FROM pg_roles WHERE rolname = current_user;

-- name: existing_roles
-- Which of the given role names exist in the cluster (roles are cluster-wide, grants per database).
SELECT rolname AS name FROM pg_roles WHERE rolname = ANY (:names);

-- name: grantable_tables
-- Tables whose grants decide access in the given schemas: partitioned parents and plain tables.
-- Partitions are left out on purpose: access goes through the parent, whose grants cover it.
SELECT n.nspname AS schema_name, c.relname AS table_name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (:schemas) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1, 2;

-- name: pgaudit_loaded
-- pgaudit only works when the server preloads it (shared_preload_libraries). That setting is
-- readable by superusers and pg_read_all_settings only; the settings pgaudit defines once loaded
-- are visible to every user, so `db init` run by a role owner that is no superuser can ask too.
SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'pgaudit.log')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgaudit') AS loaded;
