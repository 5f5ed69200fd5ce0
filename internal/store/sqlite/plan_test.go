package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/store/sqlstore"
)

// TestLimitUsageReadsOneUsersDays: a user's monthly limit reads that
// user's days of usage_daily (usage_daily_user_day_idx), not every day of
// each of the user's models (usage_daily_user_model_idx).
func TestLimitUsageReadsOneUsersDays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	open(t, path)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour).UnixMilli()
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 365)
		INSERT INTO usage_daily (day, user_id, model, calls, cost, input_tokens, output_tokens)
		SELECT $1 - d.i * 86400000, 'u' || u.i, 'm' || m.i, 5, 1000, 100, 100
		FROM n d, n u, n m WHERE u.i <= 20 AND m.i <= 8`, today); err != nil {
		t.Fatal(err)
	}
	query, args := sqlstore.LimitUsageQuery(sqlite.Dialect, "u7",
		[]store.LimitCheck{{Measure: "cost", Amount: 1, From: now.AddDate(0, -1, 0)}}, now)
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "usage_daily USING INDEX usage_daily_user_day_idx") {
		t.Fatalf("a user's limit does not read usage_daily by user and day:\n%s", p)
	}
}
