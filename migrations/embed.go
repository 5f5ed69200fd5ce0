// Package migrations embeds the schema migrations of both stores, in goose
// format (-- +goose Up / -- +goose Down). Each dialect has its own files;
// keep them in step: a version added to one is added to the other.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql
var postgresFiles embed.FS

//go:embed sqlite/*.sql
var sqliteFiles embed.FS

// Postgres holds the PostgreSQL migrations at its root.
var Postgres fs.FS = mustSub(postgresFiles, "postgres")

// SQLite holds the SQLite migrations at its root.
var SQLite fs.FS = mustSub(sqliteFiles, "sqlite")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}
