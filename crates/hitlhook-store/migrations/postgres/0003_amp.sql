-- CrewAI AMP (PostgreSQL flavour): the sources AMP sends from, the resume metadata of each AMP checkpoint, and the
-- AMP executions hitlhook started or heard of (with the webhook URLs every /resume must re-send).

create table amp_sources (
    name             text    primary key,   -- appears in the inbound URLs: /amp/{name}/...
    auth             text    not null,      -- bearer, basic, hmac
    token_hash       text,                  -- bearer: SHA-256 hex (only verified, never re-sent)
    basic_username   text,
    password_hash    text,                  -- basic: SHA-256 hex
    signing_secret   text,                  -- hmac: needed to compute signatures, kept as given
    url_token        text    not null,      -- put into URLs hitlhook hands to AMP, kept as given
    deployment_url   text,                  -- https://<crew>.crewai.com, for /resume, /stop, /kickoff
    deployment_token text,                  -- bearer token for the deployment API, kept as given
    emit_map         text    not null,      -- JSON: which emit option continue/stop/skip send
    created_at       bigint  not null
);

create table amp_checkpoints (
    checkpoint_id text    primary key,
    source        text    not null,
    origin        text    not null,         -- JSON: kind, execution/task ids, callback_url, emit options
    created_at    bigint  not null
);

create table amp_executions (
    kickoff_id       text    primary key,
    source           text    not null,
    hooks            text    not null,      -- JSON: taskWebhookUrl, stepWebhookUrl, crewWebhookUrl
    remote_status    text,                  -- the last status AMP reported (running, completed, error)
    remote_detail    text,                  -- JSON: the last /status answer
    created_at       bigint  not null,
    updated_at       bigint  not null
);
