package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/testpg"
	"github.com/openwebui-monitor/owmon/migrations"
)

// legacySchema is the old monitor's schema as it creates it: the CREATE
// TABLEs of ensureTablesExist in lib/db/client.ts, then what
// ensureUserTableExists in lib/db/users.ts does to users (balance to
// DECIMAL(16,4); users_email_idx when it creates the table), in
// github.com/VariantConst/OpenWebUI-Monitor at a04acdd (2026-03-11).
const legacySchema = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT 'user',
  balance DECIMAL(16, 6) NOT NULL DEFAULT 0,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
  deleted BOOLEAN DEFAULT FALSE
);
ALTER TABLE users ALTER COLUMN balance TYPE DECIMAL(16,4);
CREATE INDEX IF NOT EXISTS users_email_idx ON users(email);

CREATE TABLE IF NOT EXISTS model_prices (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  base_model_id TEXT,
  input_price NUMERIC(10, 6) DEFAULT 60,
  output_price NUMERIC(10, 6) DEFAULT 60,
  per_msg_price NUMERIC(10, 6) DEFAULT -1,
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS user_usage_records (
  id SERIAL PRIMARY KEY,
  user_id TEXT NOT NULL,
  nickname VARCHAR(255) NOT NULL,
  use_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
  model_name VARCHAR(255) NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cost DECIMAL(10, 4) NOT NULL,
  balance_after DECIMAL(10, 4) NOT NULL,
  FOREIGN KEY (user_id) REFERENCES users(id)
);
`

// legacyData is what a year of the old monitor leaves: fractional and
// negative balances (a charge may take a balance below zero), a deleted
// (blocked) user, users from before created_at and deleted existed (NULL),
// token and per-message prices (per_msg_price < 0 bills by tokens, 0 is a
// free message), a derived model, costs of 0.0001, records at the edges of
// UTC days, and a few hundred generated records over 60 days.
const legacyData = `
INSERT INTO users (id, email, name, role, balance, created_at, deleted) VALUES
  ('u-alice', 'alice@example.com', 'Alice', 'admin', 12.3456, '2025-01-02 03:04:05+00', false),
  ('u-bob', 'bob@example.com', 'Bob', 'user', -0.5, '2025-01-03 10:00:00+08', false),
  ('u-carol', 'carol@example.com', 'Carol', 'user', 100.0001, '2025-02-01 00:00:00+00', true),
  ('u-dave', 'dave@example.com', 'Dave', 'user', 0, NULL, NULL),
  ('u-erin', 'erin@example.com', '艾琳', 'pending', 999999.9999, '2025-03-01 12:00:00+00', false);

INSERT INTO model_prices (id, name, base_model_id, input_price, output_price, per_msg_price, updated_at) VALUES
  ('gpt-4o', 'GPT-4o', NULL, 2.5, 10, -1, '2025-01-01 00:00:00+00'),
  ('gpt-4o-mini', 'GPT-4o mini', '', 0.15, 0.6, -1, '2025-01-01 00:00:00+00'),
  ('claude-msg', 'Claude per message', NULL, 60, 60, 0.05, '2025-01-05 00:00:00+00'),
  ('my-assistant', 'My Assistant', 'gpt-4o', 60, 60, -1, NULL),
  ('cheap', 'Cheap', NULL, 0.000001, 0.000002, -1, '2025-01-01 00:00:00+00'),
  ('free-msg', 'Free per message', NULL, 60, 60, 0, '2025-01-01 00:00:00+00');

INSERT INTO user_usage_records (user_id, nickname, use_time, model_name, input_tokens, output_tokens, cost, balance_after) VALUES
  ('u-alice', 'Alice', '2025-01-10 23:59:59.999999+00', 'gpt-4o', 1200, 350, 0.0065, 20.0000),
  ('u-alice', 'Alice', '2025-01-11 00:00:00+00', 'gpt-4o-mini', 10, 5, 0.0001, 19.9999),
  ('u-alice', 'Alice W.', '2025-01-11 08:30:00+08', 'claude-msg', 0, 1, 0.05, 19.9499),
  ('u-bob', 'Bob', '2025-01-12 12:00:00+00', 'gpt-4o', 100000, 20000, 0.45, -0.4000),
  ('u-bob', 'Bob', '2025-01-12 12:00:01+00', 'free-msg', 50, 60, 0, -0.4000),
  ('u-bob', 'Bob', '2025-01-13 00:00:00+00', 'unknown-model', 0, 0, 0, -0.4000),
  ('u-carol', 'Carol', '2025-02-02 09:00:00+00', 'my-assistant', 5000, 700, 0.342, 99.6581),
  ('u-carol', 'Carol', '2025-02-02 09:00:00+00', 'cheap', 999999, 999999, 0.0001, 99.6580);

INSERT INTO user_usage_records (user_id, nickname, use_time, model_name, input_tokens, output_tokens, cost, balance_after)
SELECT (ARRAY['u-alice', 'u-bob', 'u-carol', 'u-erin'])[1 + i % 4], 'gen ' || (i % 4),
  TIMESTAMPTZ '2025-03-01 00:00:00+00' + (i * INTERVAL '3 hours 17 minutes'),
  (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-msg', 'my-assistant'])[1 + i % 4],
  i * 13 % 5000, i * 7 % 2000, (i % 97) * 0.0001 + (i % 5), 1000 - i * 0.0123
FROM generate_series(1, 400) AS i;
`

// legacyDSN is a new database holding the old monitor's schema and data.
func legacyDSN(t testing.TB) string {
	t.Helper()
	dsn := testpg.DSN(t)
	execSQL(t, dsn, legacySchema+legacyData)
	return dsn
}

func execSQL(t testing.TB, dsn, sqlText string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sqlText); err != nil {
		t.Fatalf("%v\n%s", err, sqlText)
	}
}

// queryRows runs a query and returns its rows as text, one string a row.
func queryRows(t testing.TB, dsn, q string, args ...any) []string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// catalog is a snapshot of everything in the database's public schema:
// relations, columns, indexes, constraints, sequences and every table's
// rows. Two equal snapshots mean an unchanged schema.
func catalog(t testing.TB, dsn string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' ORDER BY 1`,
		`SELECT table_name, column_name, data_type, is_nullable, COALESCE(column_default, ''), ordinal_position
			FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 6`,
		`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`,
		`SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
			WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`,
		`SELECT sequencename, COALESCE(last_value, 0) FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1`,
	} {
		b.WriteString(strings.Join(queryRows(t, dsn, q), "\n"))
		b.WriteString("\n--\n")
	}
	for _, table := range queryRows(t, dsn, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`) {
		id := pgx.Identifier{table}.Sanitize()
		rows := queryRows(t, dsn, `SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), ''))
			FROM `+id+` t`)
		fmt.Fprintf(&b, "%s: %s\n", table, rows[0])
	}
	return b.String()
}

func tables(t testing.TB, dsn string) []string {
	return queryRows(t, dsn, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
}

func amount(t testing.TB, s string) money.Amount {
	t.Helper()
	a, err := money.Parse(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return a
}

// TestAdoptLegacyDatabase points owmon at the old monitor's database: it
// is adopted in place, exactly, and a second start changes nothing. (Before
// adoption existed, Open failed with `relation "users" already exists` and
// left a goose_db_version behind.)
func TestAdoptLegacyDatabase(t *testing.T) {
	ctx := t.Context()
	dsn := legacyDSN(t)

	// What the old monitor holds, read before owmon touches it.
	oldUsers := queryRows(t, dsn, `SELECT id, email, name, role, balance::text, COALESCE(deleted, false),
		(balance + COALESCE((SELECT SUM(cost) FROM user_usage_records r WHERE r.user_id = u.id), 0))::text,
		COALESCE((SELECT count(*) FROM user_usage_records r WHERE r.user_id = u.id), 0)
		FROM users u ORDER BY id`)
	oldPrices := queryRows(t, dsn, `SELECT id, name, COALESCE(base_model_id, ''), input_price::text,
		output_price::text, CASE WHEN per_msg_price < 0 THEN '-1' ELSE per_msg_price::text END FROM model_prices ORDER BY id`)
	oldRecords := queryRows(t, dsn, `SELECT id, user_id, nickname, model_name, input_tokens, output_tokens,
		cost::text, balance_after::text, extract(epoch FROM use_time)::numeric(20,6)::text FROM user_usage_records ORDER BY id`)
	oldByModel := queryRows(t, dsn, `SELECT model_name, count(*), SUM(cost)::text, SUM(input_tokens), SUM(output_tokens)
		FROM user_usage_records GROUP BY 1 ORDER BY 1`)
	oldByUser := queryRows(t, dsn, `SELECT user_id, count(*), SUM(cost)::text, SUM(input_tokens), SUM(output_tokens)
		FROM user_usage_records GROUP BY 1 ORDER BY 1`)
	oldByDay := queryRows(t, dsn, `SELECT (use_time AT TIME ZONE 'UTC')::date::text, count(*), SUM(cost)::text
		FROM user_usage_records GROUP BY 1 ORDER BY 1`)
	oldTotal := queryRows(t, dsn, `SELECT count(*), SUM(cost)::text, SUM(input_tokens), SUM(output_tokens)
		FROM user_usage_records`)[0]
	// A range with partial days at both ends: read from records and rollups.
	from, to := time.Date(2025, 1, 11, 0, 0, 0, 1000, time.UTC), time.Date(2025, 3, 20, 7, 30, 0, 0, time.UTC)
	oldRange := queryRows(t, dsn, `SELECT count(*), SUM(cost)::text, SUM(input_tokens), SUM(output_tokens)
		FROM user_usage_records WHERE use_time >= $1 AND use_time < $2`, from, to)[0]
	oldLegacyTables := catalogOfLegacy(t, dsn, "")

	start := time.Now()
	st := open(t, dsn)
	t.Logf("adopted %s in %v", oldTotal, time.Since(start))

	a := st.Adopted()
	if a == nil {
		t.Fatal("Adopted() = nil after opening the old monitor's database")
	}
	wantTables := []string{"legacy_users", "legacy_model_prices", "legacy_user_usage_records"}
	if a.Users != 5 || a.Prices != 6 || a.Records != int64(len(oldRecords)) || a.Schema != "public" ||
		!slices.Equal(sorted(a.Tables), sorted(wantTables)) {
		t.Fatalf("adoption = %+v", *a)
	}
	if got, want := a.String(), fmt.Sprintf("adopted the old monitor's database: 5 users, 6 prices, %d records; old tables kept as ", len(oldRecords)); !strings.HasPrefix(got, want) {
		t.Fatalf("String() = %q", got)
	}

	// The old tables are kept, whole, under their new names.
	if got := catalogOfLegacy(t, dsn, "legacy_"); got != oldLegacyTables {
		t.Fatalf("the old tables changed:\n%s\nwant\n%s", got, oldLegacyTables)
	}

	// Users: exact balances, blocked, and an initial balance that makes the
	// ledger add up.
	for _, row := range oldUsers {
		f := strings.Split(row, "|")
		u, err := st.User(ctx, f[0])
		if err != nil {
			t.Fatal(err)
		}
		if u.Email != f[1] || u.Name != f[2] || u.Role != f[3] || u.Balance != amount(t, f[4]) ||
			fmt.Sprint(u.Blocked) != f[5] || u.InitialBalance != amount(t, f[6]) {
			t.Errorf("user %s = %+v, want %s", f[0], u, row)
		}
		l, err := st.Ledger(ctx, f[0])
		if err != nil {
			t.Fatal(err)
		}
		if l.Initial-l.Charges+l.Adjustments != l.Balance || l.Balance != amount(t, f[4]) || fmt.Sprint(l.Records) != f[7] {
			t.Errorf("ledger of %s = %+v", f[0], l)
		}
	}
	if u, _ := st.User(ctx, "u-alice"); u.Balance != 12_345_600_000 {
		t.Errorf("alice's balance = %d nano-units, want 12345600000", u.Balance)
	}
	if u, _ := st.User(ctx, "u-bob"); u.Balance != -500_000_000 {
		t.Errorf("bob's balance = %d nano-units, want -500000000", u.Balance)
	}

	// Prices: per 1M tokens in both, priced, per-message prices kept.
	prices, err := st.ListModelPrices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(prices) != len(oldPrices) {
		t.Fatalf("%d prices, want %d", len(prices), len(oldPrices))
	}
	for i, row := range oldPrices {
		f := strings.Split(row, "|")
		p := prices[i]
		if p.ID != f[0] || p.Name != f[1] || p.BaseModelID != f[2] || p.Input != amount(t, f[3]) ||
			p.Output != amount(t, f[4]) || p.PerMessage != amount(t, f[5]) || !p.Priced {
			t.Errorf("price %+v, want %s", p, row)
		}
	}
	if p, _ := st.ModelPrice(ctx, "cheap"); p.Input != 1000 || p.Output != 2000 {
		t.Errorf("cheap = %+v, want 1000 and 2000 nano-units per 1M tokens", p)
	}
	if p, _ := st.ModelPrice(ctx, "claude-msg"); p.PerMessage != 50_000_000 {
		t.Errorf("claude-msg = %+v", p)
	}

	// Records: each one, exactly.
	var recs []store.Record
	if err := st.EachRecord(ctx, store.RecordQuery{}, func(r store.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(recs, func(a, b store.Record) int { return int(a.ID - b.ID) })
	if len(recs) != len(oldRecords) {
		t.Fatalf("%d records, want %d", len(recs), len(oldRecords))
	}
	for i, row := range oldRecords {
		f := strings.Split(row, "|")
		r := recs[i]
		at := fmt.Sprintf("%d.%06d", r.CreatedAt.Unix(), r.CreatedAt.Nanosecond()/1000)
		if fmt.Sprint(r.ID) != f[0] || r.UserID != f[1] || r.Nickname != f[2] || r.Model != f[3] ||
			fmt.Sprint(r.InputTokens) != f[4] || fmt.Sprint(r.OutputTokens) != f[5] || r.Cost != amount(t, f[6]) ||
			r.BalanceAfter != amount(t, f[7]) || at != f[8] || r.Source != store.SourceFunction ||
			r.Status != store.StatusCompleted || r.Key != "" {
			t.Errorf("record %+v (at %s), want %s", r, at, row)
		}
	}

	// The dashboard: the overview and a user's page show the history.
	totals := func(u store.UsageTotals) string {
		return fmt.Sprintf("%d|%s|%d|%d", u.Calls, u.Cost, u.InputTokens, u.OutputTokens)
	}
	usage, err := st.UsageBetween(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := totals(usage.Total), decimalRow(t, oldTotal, 1); got != want {
		t.Errorf("all-time total %s, want %s", got, want)
	}
	var byModel, byUser, byDay []string
	for _, m := range usage.ByModel {
		byModel = append(byModel, m.Model+"|"+totals(m.UsageTotals))
	}
	for _, u := range usage.ByUser {
		byUser = append(byUser, u.UserID+"|"+totals(u.UsageTotals))
	}
	for _, d := range usage.ByDay {
		byDay = append(byDay, fmt.Sprintf("%s|%d|%s", d.Day.Format("2006-01-02"), d.Calls, d.Cost))
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"by model", sorted(byModel), decimalRows(t, oldByModel, 2)},
		{"by user", sorted(byUser), decimalRows(t, oldByUser, 2)},
		{"by day", byDay, decimalRows(t, oldByDay, 2)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s:\n%v\nwant\n%v", c.name, c.got, c.want)
		}
	}
	if usage.ActiveUsers != int64(len(oldByUser)) || usage.Models != int64(len(oldByModel)) {
		t.Errorf("active users %d, models %d", usage.ActiveUsers, usage.Models)
	}
	if len(usage.BySource) != 1 || usage.BySource[0].Key != store.SourceFunction ||
		totals(usage.BySource[0].UsageTotals) != totals(usage.Total) {
		t.Errorf("by source %+v", usage.BySource)
	}
	if len(usage.ByPurpose) != 1 || totals(usage.ByPurpose[0].UsageTotals) != totals(usage.Total) {
		t.Errorf("by purpose %+v", usage.ByPurpose)
	}
	ranged, err := st.UsageBetween(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := totals(ranged.Total), decimalRow(t, oldRange, 1); got != want {
		t.Errorf("total in [%v, %v) %s, want %s", from, to, got, want)
	}
	alice, err := st.UserUsageBetween(ctx, "u-alice", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range oldByUser {
		if strings.HasPrefix(row, "u-alice|") {
			if got, want := totals(alice.Total), decimalRow(t, strings.TrimPrefix(row, "u-alice|"), 1); got != want {
				t.Errorf("alice's total %s, want %s", got, want)
			}
		}
	}

	// goose sees a database at the latest version, as a fresh one.
	fresh := testpg.DSN(t)
	open(t, fresh)
	versions := `SELECT version_id, is_applied FROM goose_db_version ORDER BY id`
	if got, want := queryRows(t, dsn, versions), queryRows(t, fresh, versions); !slices.Equal(got, want) {
		t.Errorf("goose_db_version %v, want %v", got, want)
	}
	assertGooseCurrent(t, dsn)
	// Our schema is the same as a fresh database's.
	if got, want := ourSchema(t, dsn), ourSchema(t, fresh); got != want {
		t.Errorf("schema after adoption:\n%s\nfresh:\n%s", got, want)
	}

	// Charges continue after the old ids.
	maxID, _ := strconv.ParseInt(queryRows(t, dsn, `SELECT MAX(id) FROM legacy_user_usage_records`)[0], 10, 64)
	res, err := st.Charge(ctx, store.Record{UserID: "u-alice", Key: "c1/m1", Model: "gpt-4o", Cost: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.ID != maxID+1 {
		t.Errorf("new record id %d, want %d", res.Record.ID, maxID+1)
	}
	if res.Record.BalanceAfter != 12_345_600_000-1 {
		t.Errorf("balance after %s", res.Record.BalanceAfter)
	}

	// A second start adopts nothing and changes nothing.
	st.Close()
	before := catalog(t, dsn)
	again := open(t, dsn)
	if again.Adopted() != nil {
		t.Errorf("second Open adopted %+v", *again.Adopted())
	}
	if after := catalog(t, dsn); after != before {
		t.Errorf("a second Open changed the database:\n%s\nwas\n%s", after, before)
	}
}

// catalogOfLegacy snapshots the old monitor's tables (named prefix+name)
// with their columns, indexes, constraints (names without the prefix) and
// rows.
func catalogOfLegacy(t testing.TB, dsn, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range []string{"users", "model_prices", "user_usage_records"} {
		id := pgx.Identifier{prefix + n}.Sanitize()
		cols := queryRows(t, dsn, `SELECT column_name, data_type, is_nullable, replace(COALESCE(column_default, ''), $2, '')
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`,
			prefix+n, prefix)
		idx := queryRows(t, dsn, `SELECT replace(indexname, $2, ''), replace(indexdef, $2, '') FROM pg_indexes
			WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1`, prefix+n, prefix)
		cons := queryRows(t, dsn, `SELECT replace(conname, $2, ''), replace(pg_get_constraintdef(oid), $2, '')
			FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY 1`, id, prefix)
		rows := queryRows(t, dsn, `SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) FROM `+id+` t`)
		fmt.Fprintf(&b, "%s\n%v\n%v\n%v\n%v\n", n, cols, idx, cons, rows)
	}
	seq := queryRows(t, dsn, `SELECT pg_get_serial_sequence($1, 'id')`, prefix+"user_usage_records")[0]
	b.WriteString(strings.Join(queryRows(t, dsn, `SELECT last_value FROM `+seq), ""))
	return b.String()
}

// ourSchema is the catalog of owmon's tables (all but legacy_*), without
// rows.
func ourSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relname NOT LIKE 'legacy\_%' ORDER BY 1`,
		`SELECT table_name, column_name, data_type, is_nullable, COALESCE(column_default, ''), ordinal_position
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE 'legacy\_%' ORDER BY 1, 6`,
		`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'legacy\_%' ORDER BY 1`,
		`SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
			WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE 'legacy\_%' ORDER BY 1, 2`,
	} {
		b.WriteString(strings.Join(queryRows(t, dsn, q), "\n"))
		b.WriteString("\n--\n")
	}
	return b.String()
}

// assertGooseCurrent checks with goose itself that every migration is
// applied and none is pending.
func assertGooseCurrent(t *testing.T, dsn string) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	pending, err := p.HasPending(t.Context())
	if err != nil || pending {
		t.Fatalf("goose: pending %v, %v", pending, err)
	}
	status, err := p.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.State != goose.StateApplied {
			t.Errorf("goose: migration %d is %s", s.Source.Version, s.State)
		}
	}
	cur, err := p.GetDBVersion(t.Context())
	if err != nil || cur != p.ListSources()[len(p.ListSources())-1].Version {
		t.Errorf("goose: version %d, %v", cur, err)
	}
}

var _ = stdlib.GetDefaultDriver // registers "pgx" for database/sql

// decimalRow turns the decimal field at index i of a "|" row into the
// money.Amount's text, as the store's totals print it.
func decimalRow(t testing.TB, row string, i int) string {
	t.Helper()
	f := strings.Split(row, "|")
	f[i] = amount(t, f[i]).String()
	return strings.Join(f, "|")
}

func decimalRows(t testing.TB, rows []string, i int) []string {
	out := make([]string, len(rows))
	for j, r := range rows {
		out[j] = decimalRow(t, r, i)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestAdoptLeftoverVersionTable: a start before adoption existed failed on
// the old monitor's database and left goose_db_version (version 0 only);
// the next start adopts the database all the same.
func TestAdoptLeftoverVersionTable(t *testing.T) {
	dsn := legacyDSN(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(t.Context()); err == nil || !strings.Contains(err.Error(), `relation "users" already exists`) {
		t.Fatalf("plain goose Up on the old database: %v", err)
	}
	if got := queryRows(t, dsn, `SELECT version_id FROM goose_db_version`); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("leftover goose_db_version %v", got)
	}
	st := open(t, dsn)
	if st.Adopted() == nil || st.Adopted().Users != 5 {
		t.Fatalf("adopted %+v", st.Adopted())
	}
	assertGooseCurrent(t, dsn)
}

// TestAdoptConcurrently starts two instances on the old monitor's database
// at once: one adopts it, the other waits and finds it ours.
func TestAdoptConcurrently(t *testing.T) {
	dsn := legacyDSN(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 2)
	errs := make([]error, 2)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), dsn) })
	}
	wg.Wait()
	adopted := 0
	for i, st := range stores {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		t.Cleanup(func() { st.Close() })
		if st.Adopted() != nil {
			adopted++
		}
	}
	if adopted != 1 {
		t.Fatalf("%d instances adopted the database, want 1", adopted)
	}
	if got := queryRows(t, dsn, `SELECT count(*) FROM usage_records`); got[0] != "408" {
		t.Fatalf("%v records", got)
	}
}

// TestForeignSchemaRefused: a schema with tables owmon did not create and
// does not recognise is refused, untouched; so is the old monitor's
// database beside other tables. Another schema (search_path) works.
func TestForeignSchemaRefused(t *testing.T) {
	for _, c := range []struct {
		name, setup string
		want        []string
	}{
		{"users of another application", `CREATE TABLE users (id SERIAL PRIMARY KEY, login TEXT NOT NULL, password_hash TEXT);
			INSERT INTO users (login) VALUES ('root');`,
			[]string{`schema "public" holds tables owmon did not create: users (not the old monitor's: no column email,`,
				"CREATE DATABASE owmon", "search_path=owmon", "Nothing was changed"}},
		{"unrelated tables", `CREATE TABLE orders (id INT PRIMARY KEY); CREATE VIEW recent AS SELECT 1 AS one;`,
			[]string{"orders, recent", "CREATE DATABASE owmon", "Nothing was changed"}},
		{"the old monitor's users with a column more", legacySchema + `ALTER TABLE users ADD COLUMN password TEXT;`,
			[]string{"users (not the old monitor's: columns password)", "CREATE DATABASE owmon"}},
		{"the old monitor's prices alone", `CREATE TABLE model_prices (id TEXT PRIMARY KEY, name TEXT NOT NULL,
			input_price NUMERIC(10, 6), output_price NUMERIC(10, 6));`,
			[]string{"model_prices (without the old monitor's users table)", "CREATE DATABASE owmon"}},
		{"the old monitor's tables beside others", legacySchema + legacyData + `CREATE TABLE chat (id TEXT);`,
			[]string{"chat, beside the old monitor's model_prices, user_usage_records, users",
				"pg_dump -t model_prices -t user_usage_records -t users <old database URL> | psql <new database URL>", "Nothing was changed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := testpg.DSN(t)
			execSQL(t, dsn, c.setup)
			before := catalog(t, dsn)
			st, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				st.Close()
				t.Fatal("Open accepted a foreign schema")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if after := catalog(t, dsn); after != before {
				t.Errorf("the refused database changed:\n%s\nwas\n%s", after, before)
			}
			if slices.Contains(tables(t, dsn), "goose_db_version") {
				t.Error("goose_db_version created")
			}
			// What the error advises: a schema of owmon's own.
			execSQL(t, dsn, `CREATE SCHEMA owmon`)
			own := open(t, dsn+"&search_path=owmon")
			if own.Adopted() != nil {
				t.Error("adopted in an empty schema")
			}
			if got := queryRows(t, dsn, `SELECT count(*) FROM pg_tables WHERE schemaname = 'owmon' AND tablename = 'usage_records'`); got[0] != "1" {
				t.Error("no usage_records in schema owmon")
			}
		})
	}
}

// TestAdoptFailureRollsBack: an old row that cannot be converted, or any
// failure up to the commit, leaves the old database exactly as it was.
func TestAdoptFailureRollsBack(t *testing.T) {
	for _, c := range []struct {
		name, setup string
		fault       error
		want        string
	}{
		{"use_time NULL", `INSERT INTO user_usage_records (user_id, nickname, use_time, model_name, input_tokens,
			output_tokens, cost, balance_after) VALUES ('u-bob', 'Bob', NULL, 'gpt-4o', 1, 1, 0.0001, 1);`, nil,
			"user_usage_records row with id 409: use_time is NULL"},
		{"a cost finer than a nano-unit", `ALTER TABLE user_usage_records ALTER COLUMN cost TYPE NUMERIC;
			UPDATE user_usage_records SET cost = 0.0000000001 WHERE id = 3;`, nil,
			"user_usage_records row with id 3: cost has more than nine decimal places"},
		{"a balance beyond an amount", `ALTER TABLE users ALTER COLUMN balance TYPE NUMERIC;
			UPDATE users SET balance = 10000000000 WHERE id = 'u-dave';`, nil,
			"users row with id u-dave: balance is beyond"},
		{"a negative price", `UPDATE model_prices SET input_price = -1 WHERE id = 'cheap';`, nil,
			"model_prices row with id cheap: input_price is negative"},
		{"a fault before the commit", ``, errors.New("injected fault"), "injected fault"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := legacyDSN(t)
			if c.setup != "" {
				execSQL(t, dsn, c.setup)
			}
			if c.fault != nil {
				undo := postgres.SetAdoptFault(func() error { return c.fault })
				defer undo()
			}
			before := catalog(t, dsn)
			st, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				st.Close()
				t.Fatal("Open adopted a database it should have refused")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("error %q, want %q", err, c.want)
			}
			if after := catalog(t, dsn); after != before {
				t.Errorf("a failed adoption changed the database:\n%s\nwas\n%s", after, before)
			}
			if slices.Contains(tables(t, dsn), "goose_db_version") {
				t.Error("goose_db_version left behind")
			}
			if c.fault != nil {
				// Without the fault, the same database is adopted.
				postgres.SetAdoptFault(nil)
				if st := open(t, dsn); st.Adopted() == nil {
					t.Error("not adopted once the fault is gone")
				}
			}
		})
	}
}

// BenchmarkAdopt adopts an old monitor's database of 100 users, 50 prices
// and 200,000 records (one per ns/op).
func BenchmarkAdopt(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dsn := testpg.DSN(b)
		execSQL(b, dsn, legacySchema+`
			INSERT INTO users (id, email, name, role, balance)
			SELECT 'u' || i, 'u' || i || '@example.com', 'User ' || i, 'user', i * 1.2345 FROM generate_series(1, 100) i;
			INSERT INTO model_prices (id, name, input_price, output_price)
			SELECT 'm' || i, 'Model ' || i, i * 0.15, i * 0.6 FROM generate_series(1, 50) i;
			INSERT INTO user_usage_records (user_id, nickname, use_time, model_name, input_tokens, output_tokens, cost, balance_after)
			SELECT 'u' || (1 + i % 100), 'User', TIMESTAMPTZ '2025-01-01' + i * INTERVAL '2 minutes', 'm' || (1 + i % 50),
				i % 4000, i % 1000, (i % 1000) * 0.0001, 100 - i * 0.0001
			FROM generate_series(1, 200000) i;`)
		b.StartTimer()
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		if st.Adopted() == nil || st.Adopted().Records != 200000 {
			b.Fatalf("adopted %+v", st.Adopted())
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
}

// rollbackSQL is the hand rollback of docs/MIGRATION.md (section 6).
const rollbackSQL = `
BEGIN;
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables
           WHERE schemaname = current_schema() AND tablename NOT LIKE 'legacy\_%' LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t);
  END LOOP;
END $$;
ALTER TABLE legacy_users RENAME TO users;
ALTER TABLE legacy_model_prices RENAME TO model_prices;
ALTER TABLE legacy_user_usage_records RENAME TO user_usage_records;
COMMIT;
`

// TestRollbackFromDocs runs the documented rollback after an adoption and
// a charge: the old monitor's tables are back, as they were, and take its
// writes; a later start adopts them again.
func TestRollbackFromDocs(t *testing.T) {
	dsn := legacyDSN(t)
	before := catalogOfLegacy(t, dsn, "")
	st := open(t, dsn)
	if _, err := st.Charge(t.Context(), store.Record{UserID: "u-alice", Key: "c/m", Cost: 5}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	execSQL(t, dsn, rollbackSQL)
	if got := tables(t, dsn); !slices.Equal(got, []string{"model_prices", "user_usage_records", "users"}) {
		t.Fatalf("tables after the rollback: %v", got)
	}
	// The same columns and rows; only index, constraint and sequence names
	// keep their legacy_ prefix, which the old monitor never names.
	strip := func(s string) string { return strings.ReplaceAll(s, "legacy_", "") }
	after := catalogOfLegacy(t, dsn, "")
	if strip(after) != strip(before) {
		t.Errorf("after the rollback:\n%s\nbefore:\n%s", after, before)
	}
	// The old monitor's outlet writes as it did.
	execSQL(t, dsn, `UPDATE users SET balance = LEAST(balance - CAST(0.0065 AS DECIMAL(16,4)), 999999.9999) WHERE id = 'u-alice';
		INSERT INTO user_usage_records (user_id, nickname, model_name, input_tokens, output_tokens, cost, balance_after)
		VALUES ('u-alice', 'Alice', 'gpt-4o', 1, 1, 0.0065, 12.3391);`)
	if got := queryRows(t, dsn, `SELECT max(id), (SELECT balance::text FROM users WHERE id = 'u-alice') FROM user_usage_records`); got[0] != "409|12.3391" {
		t.Errorf("after an old outlet: %v", got)
	}
	if again := open(t, dsn); again.Adopted() == nil || again.Adopted().Records != 409 {
		t.Errorf("adopted again: %+v", again.Adopted())
	}
}
