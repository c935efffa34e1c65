-- Console sessions end after api.console_idle_timeout without a request, as well as at
-- expires_at (api.console_session_ttl after sign-in): a console left open on an unattended screen
-- stops acting for whoever sits down at it. last_seen_at is written at most once a minute
-- (engine/sql/console.sql), so reading pages does not write a row each time.
ALTER TABLE notify.console_sessions ADD COLUMN last_seen_at timestamptz;
UPDATE notify.console_sessions SET last_seen_at = created_at;
ALTER TABLE notify.console_sessions ALTER COLUMN last_seen_at SET NOT NULL;
