-- Web console sessions (issue 17): an operator signs in with an API token of scope operate or
-- admin and gets an opaque random session id in a cookie. Only the id's SHA-256 is stored (256
-- random bits: a plain hash suffices, as for the tokens). Each session names the token it came
-- from, and every request joins that token's row, so revoking the token ends its sessions at the
-- next request without touching this table. Expired rows are deleted at the next sign-in.
CREATE TABLE notify.console_sessions (
  session_sha256  bytea PRIMARY KEY CHECK (octet_length(session_sha256) = 32),
  token_name      text NOT NULL REFERENCES notify.api_tokens (name) ON DELETE CASCADE,
  created_at      timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  client_address  text                   -- the address that signed in (for the log, not a check)
);
CREATE INDEX console_sessions_expires ON notify.console_sessions (expires_at);
CREATE INDEX console_sessions_token ON notify.console_sessions (token_name);
