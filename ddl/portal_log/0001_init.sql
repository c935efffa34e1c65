-- Tenant Portal Operations Log (seed section 2): end-user actions on the control plane.
-- Same departures as admin_log (docs/SCHEMA.md). Where tenant_id is NOT NULL it leads the
-- primary key, so each table can be distributed by tenant_id (Citus) without a schema change.
CREATE SCHEMA IF NOT EXISTS portal_log;

CREATE TABLE portal_log.auth_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid,
  user_id          uuid,
  ip               inet,
  user_agent       text,
  type             text NOT NULL,               -- USER_LOGIN, USER_LOGOUT, PASSWORD_RESET, INVITE_ACCEPTED, SSO_ASSERTION, ...
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE portal_log.portal_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  user_id          uuid,
  workspace_id     uuid,
  base_id          uuid,
  route            text,                        -- /billing/upgrade, /tokens/create, ...
  action           text NOT NULL,               -- WORKSPACE_CREATE, BASE_CREATE, MEMBER_INVITE, TOKEN_ISSUE, PLAN_CHANGE, ...
  result           text NOT NULL DEFAULT 'ok',  -- ok|error
  context          jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (tenant_id, id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE portal_log.token_events (
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT now(),
  occurred_on      date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
  tenant_id        uuid NOT NULL,
  user_id          uuid,
  base_id          uuid NOT NULL,
  token_id         uuid,                        -- control-plane token id (for correlation)
  action           text NOT NULL,               -- ISSUE, REVOKE, ROTATE
  reason           text,
  context          jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (tenant_id, id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE portal_log.auth_events_default   PARTITION OF portal_log.auth_events DEFAULT;
CREATE TABLE portal_log.portal_events_default PARTITION OF portal_log.portal_events DEFAULT;
CREATE TABLE portal_log.token_events_default  PARTITION OF portal_log.token_events DEFAULT;

CREATE INDEX portal_auth_time_brin   ON portal_log.auth_events USING BRIN (occurred_at);
CREATE INDEX portal_auth_tenant_time ON portal_log.auth_events (tenant_id, occurred_at DESC);

CREATE INDEX portal_evt_time_brin    ON portal_log.portal_events USING BRIN (occurred_at);
CREATE INDEX portal_evt_tenant_time  ON portal_log.portal_events (tenant_id, occurred_at DESC);
CREATE INDEX portal_evt_action_time  ON portal_log.portal_events (action, occurred_at DESC);

CREATE INDEX portal_tok_time_brin    ON portal_log.token_events USING BRIN (occurred_at);
CREATE INDEX portal_tok_tenant_time  ON portal_log.token_events (tenant_id, occurred_at DESC);
CREATE INDEX portal_tok_base_time    ON portal_log.token_events (base_id, occurred_at DESC);
