-- Budgets (internal/budget): limits over windows, periodic grants, and
-- OpenWebUI's user groups as last synced. held_tokens is what a pending
-- record (a hold) counts against a token limit until its charge replaces
-- it with the answer's real tokens. Times are INTEGER unix milliseconds.

-- +goose Up
CREATE TABLE budget_limits (
    id          INTEGER PRIMARY KEY,
    scope       TEXT NOT NULL,    -- user:<id>, group:<id>, role:<role>, all
    measure     TEXT NOT NULL,    -- cost (nano-units), tokens, messages
    amount      BIGINT NOT NULL,
    window_spec TEXT NOT NULL,    -- day, week, month, or a rolling duration (5h, 7d)
    models      TEXT NOT NULL DEFAULT '', -- patterns, one per line; '': every model
    shared      BOOLEAN NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

CREATE TABLE budget_grants (
    id          INTEGER PRIMARY KEY,
    scope       TEXT NOT NULL,
    mode        TEXT NOT NULL,    -- reset, add
    amount      BIGINT NOT NULL,
    cap         BIGINT NOT NULL DEFAULT 0,
    window_spec TEXT NOT NULL,    -- day, week, month
    last_window INTEGER NULL,     -- the start of the last window applied
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

CREATE TABLE openwebui_groups (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL DEFAULT '',
    synced_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

CREATE TABLE openwebui_group_members (
    group_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX openwebui_group_members_user_idx ON openwebui_group_members (user_id);

ALTER TABLE usage_records ADD COLUMN held_tokens BIGINT NOT NULL DEFAULT 0;

-- usage_minute: the final records by user, UTC minute (unix milliseconds
-- of its start) and model, kept in step with usage_records in the same
-- transaction as each charge (like usage_daily, which it refines), so a
-- limit's window reads the partial days at its edges from here, not from
-- the records. Sums saturate at the ends of the int64 range, as the
-- breakdowns do.
CREATE TABLE usage_minute (
    user_id       TEXT NOT NULL,
    minute        INTEGER NOT NULL,
    model         TEXT NOT NULL,
    calls         BIGINT NOT NULL DEFAULT 0,
    cost          BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, minute, model)
) WITHOUT ROWID;
CREATE INDEX usage_minute_minute_idx ON usage_minute (minute);

INSERT INTO usage_minute (user_id, minute, model, calls, cost, input_tokens, output_tokens)
SELECT user_id, created_at - (((created_at % 60000) + 60000) % 60000), model,
    COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
FROM usage_records WHERE status <> 'pending'
GROUP BY 1, 2, 3;

-- A limit counts a user's holds in flight (pending records) in its window.
CREATE INDEX usage_records_pending_user_idx ON usage_records (user_id, created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX usage_records_pending_user_idx;
DROP TABLE usage_minute;
ALTER TABLE usage_records DROP COLUMN held_tokens;
DROP TABLE openwebui_group_members;
DROP TABLE openwebui_groups;
DROP TABLE budget_grants;
DROP TABLE budget_limits;
