-- Daily rollups of the final (not pending) usage records, by UTC day, user
-- and model. day is the unix milliseconds of the UTC midnight starting the
-- day. The stores keep the table in step with usage_records in the same
-- transaction as each change of a record's final contribution, so the
-- usage summaries read whole days from here instead of scanning records.
-- WITHOUT ROWID: the rows are stored in primary key order (day first), so a
-- range of days is one contiguous read.

-- +goose Up
CREATE TABLE usage_daily (
    day           INTEGER NOT NULL,
    user_id       TEXT NOT NULL,
    model         TEXT NOT NULL,
    calls         BIGINT NOT NULL DEFAULT 0,
    cost          BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, model)
) WITHOUT ROWID;
-- The sums by user and model stream from this covering index in its order,
-- with no sort; it also serves deleting a user's rows.
CREATE INDEX usage_daily_user_model_idx ON usage_daily (user_id, model, day, calls, cost, input_tokens, output_tokens);

INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
SELECT created_at - (((created_at % 86400000) + 86400000) % 86400000), user_id, model,
    COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
FROM usage_records WHERE status <> 'pending'
GROUP BY 1, 2, 3;

-- +goose Down
DROP TABLE usage_daily;
