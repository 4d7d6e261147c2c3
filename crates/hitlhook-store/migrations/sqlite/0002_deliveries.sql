-- The delivery outbox (Slack, email, outbound webhooks) and webhook subscribers. Deliveries are
-- written in the same transaction as the state change that causes them; workers claim due rows
-- with a lease (next_at moves to the lease's end, so a crashed worker's rows come due again).

create table subscriptions (
    id          text    primary key,
    url         text    not null,
    secret      text    not null,          -- needed to sign; shown once at creation
    event_types text    not null,          -- comma-separated filters: names, family.*, *
    description text,
    created_at  integer not null,
    disabled_at integer
);

create table deliveries (
    seq           integer primary key autoincrement,  -- listing order and cursor
    id            text    not null unique,            -- also the idempotency key sent on every attempt
    kind          text    not null,                   -- slack.message, slack.update, email, webhook, ...
    checkpoint_id text,
    kickoff_id    text,
    event_type    text    not null,                   -- what caused it
    target        text    not null,                   -- email address, subscription id, slack, response_url
    payload       text    not null,                   -- JSON
    state         text    not null,                   -- pending, delivered, dead, skipped
    attempts      integer not null,
    max_attempts  integer not null,
    next_at       integer not null,                   -- due time; while leased, the lease's end
    lease_owner   text,
    created_at    integer not null,
    updated_at    integer not null,
    delivered_at  integer,
    last_status   integer,
    last_error    text,
    result        text                                -- JSON from the receiver (e.g. Slack message ts)
);
create index deliveries_due on deliveries (next_at) where state = 'pending';
create index deliveries_by_checkpoint on deliveries (checkpoint_id, seq) where checkpoint_id is not null;
create index deliveries_by_state on deliveries (state, seq);
