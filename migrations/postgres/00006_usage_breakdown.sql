-- The breakdown rollups of the final (not pending) usage records: by UTC
-- day, user, purpose and path (source), with every token kind. Like
-- usage_daily (00002) they are kept in step with usage_records in the same
-- transaction as each change of a record's final contribution, so the
-- overview and a user's page read what OpenWebUI used calls for, and by
-- which path they came, without scanning records.
--
-- usage_breakdown is per user (a user's page reads one contiguous range of
-- its primary key). usage_breakdown_all is the same summed over users, in
-- a few shards (a shard is chosen from the user id, so concurrent charges
-- of different users seldom wait for one row), and is what the overview
-- reads: its rows grow with days, purposes and paths, not with users.
-- Both saturate at the ends of the int64 range rather than refuse a charge.
-- day is the UTC date.

-- +goose Up
CREATE TABLE usage_breakdown (
    user_id          TEXT NOT NULL,
    day              DATE NOT NULL, -- in UTC
    purpose          TEXT NOT NULL,
    source           TEXT NOT NULL,
    calls            BIGINT NOT NULL DEFAULT 0,
    cost             BIGINT NOT NULL DEFAULT 0,
    input_tokens     BIGINT NOT NULL DEFAULT 0,
    output_tokens    BIGINT NOT NULL DEFAULT 0,
    cached_tokens    BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, purpose, source)
);

CREATE TABLE usage_breakdown_all (
    day              DATE NOT NULL, -- in UTC
    shard            INTEGER NOT NULL,
    purpose          TEXT NOT NULL,
    source           TEXT NOT NULL,
    calls            BIGINT NOT NULL DEFAULT 0,
    cost             BIGINT NOT NULL DEFAULT 0,
    input_tokens     BIGINT NOT NULL DEFAULT 0,
    output_tokens    BIGINT NOT NULL DEFAULT 0,
    cached_tokens    BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, shard, purpose, source)
);

INSERT INTO usage_breakdown (user_id, day, purpose, source, calls, cost, input_tokens, output_tokens,
    cached_tokens, reasoning_tokens)
SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, purpose, source,
    COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens)
FROM usage_records WHERE status <> 'pending'
GROUP BY 1, 2, 3, 4;

-- The backfill goes to shard 0, later charges spread over the shards.
INSERT INTO usage_breakdown_all (day, shard, purpose, source, calls, cost, input_tokens, output_tokens,
    cached_tokens, reasoning_tokens)
SELECT day, 0, purpose, source,
    SUM(calls), SUM(cost), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens)
FROM usage_breakdown
GROUP BY day, purpose, source;

-- +goose Down
DROP TABLE usage_breakdown_all;
DROP TABLE usage_breakdown;
