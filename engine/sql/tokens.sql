-- name: add_token
-- A new API token; the name is unique for ever (a revoked token keeps its row).
INSERT INTO notify.api_tokens (name, token_sha256, scopes, created_at, created_by)
VALUES (:name, :token_sha256, CAST(:scopes AS text[]), :now, :created_by)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: list_tokens
-- Every token without its hash, oldest first.
SELECT name, scopes, created_at, created_by, last_used_at, revoked_at,
       (revoked_at IS NULL) AS active
FROM notify.api_tokens
ORDER BY created_at, name;

-- name: token_by_hash
-- The token a request presented, found by its hash (one index probe).
SELECT name, token_sha256, scopes, last_used_at, revoked_at
FROM notify.api_tokens WHERE token_sha256 = :token_sha256;

-- name: touch_token
-- last_used_at for `tokens list`, written at most once a minute per token, not on every request.
UPDATE notify.api_tokens SET last_used_at = :now
WHERE name = :name AND (last_used_at IS NULL OR last_used_at < CAST(:now AS timestamptz) - interval '1 minute');

-- name: revoke_token
-- Revokes by name; already revoked or unknown names return nothing.
UPDATE notify.api_tokens SET revoked_at = :now
WHERE name = :name AND revoked_at IS NULL
RETURNING name;

-- name: token_state
-- Whether a name exists and is revoked (to say which when revoke changed nothing).
SELECT name, revoked_at FROM notify.api_tokens WHERE name = :name;
