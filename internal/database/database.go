// Package database opens the store an operator configured.
package database

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/openwebui-monitor/owmon/internal/config"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
)

// Open connects to the database, creating and migrating its schema. When
// it adopts the old monitor's PostgreSQL database in place, it says so on
// log (when not nil).
func Open(ctx context.Context, db config.Database, log *slog.Logger) (store.Store, error) {
	switch db.Kind {
	case "sqlite":
		st, err := sqlite.Open(ctx, db.DSN)
		if err != nil {
			return nil, fmt.Errorf("opening SQLite database %s: %w", db.DSN, err)
		}
		return st, nil
	case "postgres":
		st, err := postgres.Open(ctx, db.DSN)
		if err != nil {
			return nil, fmt.Errorf("opening PostgreSQL database: %w", err)
		}
		if a := st.Adopted(); a != nil && log != nil {
			log.Info(a.String(), "schema", a.Schema, "users", a.Users, "prices", a.Prices, "records", a.Records,
				"legacy_tables", a.Tables)
		}
		return st, nil
	}
	return nil, fmt.Errorf("unknown database kind %q", db.Kind)
}
