"""The schema, as versioned SQL files: ddl/<section>/NNNN_name.sql, applied by engine.migrations.

`common/` is applied once to every database before the sections it holds.
"""
