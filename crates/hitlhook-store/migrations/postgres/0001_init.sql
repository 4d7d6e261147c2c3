-- hitlhook schema, PostgreSQL flavour. Times are bigint milliseconds since the Unix epoch (UTC) in
-- both backends, so ordering and arithmetic behave the same everywhere.

-- The audit trail: every event received or produced, in one global order (seq).
create table events (
    seq          bigserial primary key,
    event_key    text    not null unique,   -- idempotency identity (wh:/ev:/sha256:/hitlhook:)
    event_type   text    not null,
    kickoff_id   text,
    checkpoint_id text,
    source       text    not null,          -- who wrote it: signature, key:<name>, hitlhook
    received_at  bigint  not null,
    occurred_at  bigint,                   -- the sender's own timestamp, if any
    payload      text    not null           -- the JSON exactly as received
);
create index events_by_kickoff on events (kickoff_id, seq) where kickoff_id is not null;
create index events_by_checkpoint on events (checkpoint_id, seq) where checkpoint_id is not null;

create table executions (
    kickoff_id          text    primary key,
    status              text    not null,
    events_total        bigint  not null,
    tasks_started       bigint  not null,
    tasks_completed     bigint  not null,
    tasks_failed        bigint  not null,
    steps_completed     bigint  not null,
    checkpoints_total   bigint  not null,
    checkpoints_pending bigint  not null,
    started_at          bigint  not null,
    updated_at          bigint  not null,
    finished_at         bigint,
    created_seq         bigint  not null unique  -- the first event's seq: listing order and cursor
);
create index executions_by_status on executions (status, created_seq);

create table checkpoints (
    id                text    primary key,
    name              text    not null,
    kickoff_id        text,
    context           text    not null,
    allowed_actions   text    not null,          -- comma-separated actions
    status            text    not null,
    created_at        bigint  not null,
    expires_at        bigint,
    on_timeout        text,
    decision_action   text,
    decision_feedback text,
    decided_by        text,
    decision_channel  text,
    decided_at        bigint,
    closed_reason     text,
    created_seq       bigint  not null unique    -- the creating event's seq: listing order and cursor
);
create index checkpoints_by_status on checkpoints (status, created_seq);
create index checkpoints_by_kickoff on checkpoints (kickoff_id, created_seq);
create index checkpoints_due on checkpoints (expires_at) where status = 'pending' and expires_at is not null;

create table api_keys (
    id         text    primary key,
    name       text    not null,
    scope      text    not null,
    key_hash   text    not null unique,  -- SHA-256 hex of the key; the key itself is never stored
    prefix     text    not null,
    created_at bigint  not null,
    revoked_at bigint
);
create unique index api_keys_active_name on api_keys (name) where revoked_at is null;
