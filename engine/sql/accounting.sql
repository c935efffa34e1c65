-- name: silence_comments
-- The comment and state of the silences named by suppressed rows (`show`, `notifications`: engine/accounting.py).
SELECT id, comment, created_by, coalesce(expired_at, ends_at) AS ended_at FROM notify.silences
WHERE id = ANY (CAST(:ids AS uuid[]));

-- name: message_states
-- The messages that carried grouped rows: whether each went out, and when.
SELECT id, status, sent_at FROM notify.notifications WHERE id = ANY (CAST(:ids AS uuid[]));
