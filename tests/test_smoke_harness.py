def test_fresh_database_has_every_schema(databases):
    with databases.begin("notify") as conn:
        schemas = {r[0] for r in conn.exec_driver_sql("SELECT nspname FROM pg_namespace")}
    assert {"admin_log", "portal_log", "data_activity", "notify", "partitions"} <= schemas
