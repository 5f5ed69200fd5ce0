-- +goose Up
-- Finds the oldest pending hold of a user's chat that the provider meter
-- adopts (AdoptHold).
CREATE INDEX usage_records_pending_chat_idx ON usage_records (user_id, chat_id, id) WHERE status = 'pending';

-- +goose Down
DROP INDEX usage_records_pending_chat_idx;
