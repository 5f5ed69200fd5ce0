-- +goose Up
-- One row the ledger rewrites to learn whether the store takes writes
-- again after an outage (Store.Probe).
CREATE TABLE store_probe (
    id     INTEGER PRIMARY KEY,
    writes BIGINT NOT NULL
);

-- +goose Down
DROP TABLE store_probe;
