-- Daily rollups of the final (not pending) usage records, by UTC day, user
-- and model. The stores keep the table in step with usage_records in the
-- same transaction as each change of a record's final contribution, so the
-- usage summaries read whole days from here instead of scanning records.

-- +goose Up
CREATE TABLE usage_daily (
    day           DATE NOT NULL, -- in UTC
    user_id       TEXT NOT NULL,
    model         TEXT NOT NULL,
    calls         BIGINT NOT NULL DEFAULT 0,
    cost          BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, model)
);

INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, model,
    COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens)
FROM usage_records WHERE status <> 'pending'
GROUP BY 1, 2, 3;

-- +goose Down
DROP TABLE usage_daily;
