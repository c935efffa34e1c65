-- Messages people want to read (issue 14): each tenant destination's time zone and language, and
-- the alert kinds it unsubscribed from (RFC 8058 one-click, engine/unsubscribe.py).
--
-- timezone: an IANA name (checked by `notifyctl destinations add --timezone`); NULL means
-- messages.timezone from config. locale: a language tag such as `en` or `de`; NULL means
-- messages.locale. opted_out_kinds: kinds this destination no longer wants; the dispatcher skips
-- their notifications with the reason recorded, so nothing is dropped unaccounted for.
ALTER TABLE notify.destinations ADD COLUMN timezone text;
ALTER TABLE notify.destinations ADD COLUMN locale text;
ALTER TABLE notify.destinations ADD COLUMN opted_out_kinds text[] NOT NULL DEFAULT '{}';
