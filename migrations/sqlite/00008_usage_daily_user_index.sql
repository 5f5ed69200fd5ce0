-- One user's days in usage_daily, for the usage a budget limit counts over
-- a window (sqlstore.LimitUsageQuery, the condition of every hold under a
-- limit) and for a user's own usage: usage_daily_user_model_idx leads
-- with the user too, but then the model, so a window read every day of
-- each of the user's models.

-- +goose Up
CREATE INDEX usage_daily_user_day_idx ON usage_daily (user_id, day);

-- +goose Down
DROP INDEX usage_daily_user_day_idx;
