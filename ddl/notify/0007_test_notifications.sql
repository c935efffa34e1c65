-- Test sends (issue 13, item 2): `notifyctl destinations test ID` records its one attempt as a
-- notification row like any other (same dispatcher path, same result statement, same listing),
-- with transition 'test'. It notifies about no alert, so such a row carries no alert_id.
--
-- Chosen over a per-tenant sample alert: an alert row would be read by the planner, detection,
-- every alert listing, the API and the console, and each would need to learn to hide it. A NULL
-- alert_id hides nothing: the foreign key skips NULLs (MATCH SIMPLE), the unique planning key
-- treats NULLs as distinct, and `show ALERT_ID` never lists a test row. Every other row still
-- names its alert: the CHECK allows a NULL only on a test row.
ALTER TABLE notify.notifications ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE notify.notifications
  ADD CONSTRAINT not_note_alert_unless_test CHECK (alert_id IS NOT NULL OR transition = 'test');
