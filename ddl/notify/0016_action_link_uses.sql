-- Ack and resolve links in messages (issue 17): the nonces of the links already used.
--
-- A link is a signed token (engine/action_links.py: alert id, action, expiry, nonce, recipient),
-- so making one needs no row. Its POST inserts the nonce here in the transaction that acks or
-- resolves the alert; a second POST of the same link finds the row and changes nothing. A row is
-- needed only until the link expires (an expired link is refused by its signed expiry alone), so
-- rows past expires_at are deleted as new links are used.
CREATE TABLE notify.action_link_uses (
  nonce       text PRIMARY KEY CHECK (length(nonce) BETWEEN 16 AND 64),
  alert_id    uuid NOT NULL,
  action      text NOT NULL CHECK (action IN ('ack', 'resolve')),
  used_by     text NOT NULL,           -- the link's recipient, as audited
  used_at     timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX action_link_uses_expires_at ON notify.action_link_uses (expires_at);
