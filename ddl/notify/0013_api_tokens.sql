-- API tokens (issue 16): bearer tokens of the HTTP API, each with a name and scopes.
-- Only the SHA-256 of a token is stored: tokens are 256 random bits, so a plain hash is enough
-- (no salt or slow hash needed against guessing), and a lookup by hash is one index probe.
-- A revoked token keeps its row (revoked_at set) so its name in old audit rows still means one
-- token; a name is never reused.
CREATE TABLE notify.api_tokens (
  name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
  token_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
  scopes        text[] NOT NULL
                CHECK (cardinality(scopes) > 0
                       AND scopes <@ ARRAY['events', 'snapshots', 'read', 'operate', 'admin']::text[]),
  created_at    timestamptz NOT NULL,
  created_by    text,
  last_used_at  timestamptz,           -- updated at most once a minute
  revoked_at    timestamptz
);
