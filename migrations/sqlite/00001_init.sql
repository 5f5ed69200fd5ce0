-- Initial schema. Money columns are INTEGER nano-units (1e-9 of a currency
-- unit, see internal/money); never REAL. Times are INTEGER unix milliseconds
-- (UTC). Booleans are 0/1.

-- +goose Up
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL DEFAULT '',
    name            TEXT NOT NULL DEFAULT '',
    role            TEXT NOT NULL DEFAULT 'user',
    balance         BIGINT NOT NULL,
    initial_balance BIGINT NOT NULL,
    deleted         BOOLEAN NOT NULL DEFAULT 0, -- blocked by an admin (the old monitor's name)
    created_at      INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at      INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
CREATE INDEX users_email_idx ON users (email);

CREATE TABLE model_prices (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL DEFAULT '',
    base_model_id TEXT NOT NULL DEFAULT '',
    input_price   BIGINT NOT NULL DEFAULT 0,           -- per 1M input tokens
    output_price  BIGINT NOT NULL DEFAULT 0,           -- per 1M output tokens
    per_msg_price BIGINT NOT NULL DEFAULT -1000000000, -- < 0: bill by tokens
    priced        BOOLEAN NOT NULL DEFAULT 0,          -- 0: recorded automatically
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

CREATE TABLE usage_records (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          TEXT NOT NULL REFERENCES users (id),
    nickname         TEXT NOT NULL DEFAULT '',
    model            TEXT NOT NULL DEFAULT '',
    input_tokens     BIGINT NOT NULL DEFAULT 0,
    output_tokens    BIGINT NOT NULL DEFAULT 0,
    cached_tokens    BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost             BIGINT NOT NULL DEFAULT 0,
    balance_after    BIGINT NOT NULL DEFAULT 0,
    source           TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL DEFAULT 'completed',
    estimated        BOOLEAN NOT NULL DEFAULT 0,
    purpose          TEXT NOT NULL DEFAULT '',
    chat_id          TEXT NOT NULL DEFAULT '',
    message_id       TEXT NOT NULL DEFAULT '',
    idem_key         TEXT UNIQUE, -- NULL when the record has no idempotency key
    duration_ms      BIGINT NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    expires_at       INTEGER NULL
);
CREATE INDEX usage_records_created_at_idx ON usage_records (created_at);
CREATE INDEX usage_records_user_created_idx ON usage_records (user_id, created_at);
CREATE INDEX usage_records_model_created_idx ON usage_records (model, created_at);
CREATE INDEX usage_records_pending_expires_idx ON usage_records (expires_at) WHERE status = 'pending';

CREATE TABLE balance_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL REFERENCES users (id),
    actor       TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    old_balance BIGINT NOT NULL,
    new_balance BIGINT NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
CREATE INDEX balance_changes_user_created_idx ON balance_changes (user_id, created_at);

-- +goose Down
DROP TABLE balance_changes;
DROP TABLE usage_records;
DROP TABLE model_prices;
DROP TABLE users;
