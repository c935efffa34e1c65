"""notify-engine: quota snapshots -> deduplicated alerts -> tracked notifications, on PostgreSQL."""

__version__ = "0.1.0"
