package sqlstore

// Import: every row replaced by a backup's, in the backend's one write
// transaction.

import (
	"context"
	"fmt"
	"strings"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// Load writes n rows into a table's columns (the backend's fastest way:
// prepared INSERTs, COPY), row(i) giving the i-th row's values.
type Load func(ctx context.Context, table string, cols []string, n int, row func(i int) []any) error

// ImportSteps are the statements of an import that differ by backend.
type ImportSteps struct {
	Lock  []string // before keep: lock out every other writer
	Clear []string // empty the tables (children first)
	After []string // once the rows are in (sequences)
}

// Import replaces every row with the backup's: the rows keep their ids,
// keys, times and statuses, and the rollups are rebuilt. keep, when not
// nil, sees the rows as they are before, with no write in between.
func Import(ctx context.Context, d Dialect, q Querier, steps ImportSteps, load Load, b store.Backup,
	keep func(replaced store.Backup) error) error {
	for _, s := range steps.Lock {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	if keep != nil {
		old, err := Export(ctx, d, q)
		if err != nil {
			return err
		}
		if err := keep(old); err != nil {
			return err
		}
	}
	for _, s := range steps.Clear {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	tables := []struct {
		name string
		cols []string
		n    int
		row  func(i int) []any
	}{
		{"users", []string{"id", "email", "name", "role", "balance", "initial_balance", "deleted", "created_at",
			"updated_at"}, len(b.Users), func(i int) []any {
			u := b.Users[i]
			return []any{u.ID, u.Email, u.Name, u.Role, int64(u.Balance), int64(u.InitialBalance), u.Blocked,
				d.Time(u.CreatedAt), d.Time(u.UpdatedAt)}
		}},
		{"model_prices", []string{"id", "name", "base_model_id", "input_price", "output_price", "per_msg_price",
			"priced", "created_at", "updated_at"}, len(b.ModelPrices), func(i int) []any {
			p := b.ModelPrices[i]
			return []any{p.ID, p.Name, p.BaseModelID, int64(p.Input), int64(p.Output), int64(p.PerMessage), p.Priced,
				d.Time(p.UpdatedAt), d.Time(p.UpdatedAt)}
		}},
		{"usage_records", []string{"id", "user_id", "nickname", "model", "input_tokens", "output_tokens",
			"cached_tokens", "reasoning_tokens", "cost", "balance_after", "source", "status", "estimated", "purpose",
			"chat_id", "message_id", "idem_key", "duration_ms", "created_at", "expires_at"}, len(b.Records),
			func(i int) []any {
				r := b.Records[i]
				return []any{r.ID, r.UserID, r.Nickname, r.Model, r.InputTokens, r.OutputTokens, r.CachedTokens,
					r.ReasoningTokens, int64(r.Cost), int64(r.BalanceAfter), r.Source, r.Status, r.Estimated, r.Purpose,
					r.ChatID, r.MessageID, nullKey(r.Key), r.DurationMS, d.Time(r.CreatedAt), d.timePtr(r.ExpiresAt)}
			}},
		{"balance_changes", []string{"id", "user_id", "actor", "reason", "old_balance", "new_balance", "created_at"},
			len(b.BalanceChanges), func(i int) []any {
				c := b.BalanceChanges[i]
				return []any{c.ID, c.UserID, c.Actor, c.Reason, int64(c.OldBalance), int64(c.NewBalance),
					d.Time(c.CreatedAt)}
			}},
	}
	for _, t := range tables {
		if t.n == 0 {
			continue
		}
		if err := load(ctx, t.name, t.cols, t.n, t.row); err != nil {
			return fmt.Errorf("%s: %w", strings.ReplaceAll(t.name, "_", " "), err)
		}
	}
	if _, err := q.Exec(ctx, rebuildDaily(d)); err != nil {
		return fmt.Errorf("usage rollups: %w", err)
	}
	if _, err := q.Exec(ctx, rebuildMinute(d)); err != nil {
		return fmt.Errorf("usage rollups by minute: %w", err)
	}
	if err := loadBreakdown(ctx, d, load, b.Records); err != nil {
		return fmt.Errorf("usage breakdown: %w", err)
	}
	for _, s := range steps.After {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// InsertSQL is an INSERT of one row into a table's columns.
func InsertSQL(table string, cols []string) string {
	ps := make([]string, len(cols))
	for i := range cols {
		ps[i] = "$" + fmt.Sprint(i+1)
	}
	return `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` + strings.Join(ps, ", ") + `)`
}
