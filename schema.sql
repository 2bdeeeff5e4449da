-- vel_tutor schema. Each "-- migration: NNNN name" block is applied once, in order, in its
-- own transaction, and recorded in schema_migrations. Never edit an applied block: add one.
-- Timestamps are RFC 3339 UTC text; ids are UUID text.

-- migration: 0001 initial
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    TEXT,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE integrations (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    sealed_key   BLOB NOT NULL,
    key_id       TEXT NOT NULL,
    key_hint     TEXT NOT NULL,
    base_url     TEXT,
    validated_at TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, provider)
);
CREATE INDEX integrations_key_id ON integrations (key_id);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    provider      TEXT NOT NULL DEFAULT 'auto',
    model         TEXT,
    system_prompt TEXT,
    temperature   REAL,
    max_tokens    INTEGER,
    fallback      INTEGER NOT NULL DEFAULT 1,
    tool          TEXT,
    arguments     TEXT CHECK (arguments IS NULL OR json_valid(arguments)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX agents_user ON agents (user_id, created_at);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind            TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    input           TEXT NOT NULL CHECK (json_valid(input)),
    output          TEXT,
    error           TEXT,
    provider        TEXT,
    model           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    prompt_tokens   INTEGER,
    completion_tokens INTEGER,
    cost_usd        REAL,
    latency_ms      INTEGER,
    idempotency_key TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_claim ON tasks (status, created_at);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE usage_events (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           TEXT,
    agent_id          TEXT,
    task_id           TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    outcome           TEXT NOT NULL,
    key_source        TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX usage_events_user_time ON usage_events (user_id, created_at);
CREATE INDEX usage_events_provider_time ON usage_events (provider, created_at);

CREATE TABLE audit_logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    action      TEXT NOT NULL,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    method      TEXT,
    route       TEXT,
    status      INTEGER,
    duration_ms REAL,
    detail      TEXT CHECK (detail IS NULL OR json_valid(detail))
);
CREATE INDEX audit_logs_time ON audit_logs (created_at);
CREATE INDEX audit_logs_user ON audit_logs (user_id, id);
CREATE INDEX audit_logs_action ON audit_logs (action, id);
-- Audit detail is JSON; the target of a security event (a user id, a provider) is queried.
CREATE INDEX audit_logs_target ON audit_logs (json_extract(detail, '$.target')) WHERE detail IS NOT NULL;
