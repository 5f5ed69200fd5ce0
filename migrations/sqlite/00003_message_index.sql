-- +goose Up
-- Finds what the provider meter charged for a message, so that the other
-- paths do not charge it again.
CREATE INDEX usage_records_message_idx ON usage_records (message_id, chat_id, source) WHERE message_id <> '';

-- +goose Down
DROP INDEX usage_records_message_idx;
