package postgres

// Moving in place from the old monitor (the Next.js "OpenWebUI Monitor",
// github.com/VariantConst/OpenWebUI-Monitor): before the migrations run,
// Open looks at what the schema (current_schema()) already holds.
//
//   - goose_db_version with a migration applied: ours; migrate as usual.
//   - nothing (or only a goose_db_version an earlier start left behind
//     with no migration applied, as a start before this code did on the
//     old monitor's database): fresh; migrate as usual.
//   - the old monitor's tables (users, and model_prices and
//     user_usage_records where present, recognised by their columns, see
//     lib/db/client.ts and lib/db/users.ts in its repository) and nothing
//     else: adopt them, in one transaction.
//   - anything else: refuse, and change nothing.
//
// Refusing a schema that holds tables owmon neither made nor recognises,
// even ones whose names do not collide with ours today, is deliberate:
// such a schema is far more often a wrong DATABASE_URL (OpenWebUI's own
// database, another application's) than a wish to share; later migrations
// may add tables whose names would collide then; and a backup, a restore
// or a DROP of "owmon's schema" must not take other data with it. The
// error says what was found and how to give owmon a database or a schema
// of its own.
//
// Adopting renames the old tables (and their indexes, constraints and
// sequences) to legacy_*, creates our schema by running the embedded
// migrations' Up sections in the same transaction, copies the rows with
// exact conversions to nano-units, and records the migrations in
// goose_db_version exactly as goose does, so a later start, and goose's
// status, see a database at the latest version. The rows are copied right
// after the first migration, so the later migrations' backfills build the
// rollups from them, as they did for every owmon database that held data
// when they were added. Any failure rolls all of it back: no
// goose_db_version, the old tables under their names. The migration
// advisory lock is held throughout, so instances starting together adopt
// once.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"

	"github.com/openwebui-monitor/owmon/migrations"
)

// Adoption is what Open took over from the old monitor's database.
type Adoption struct {
	Schema  string // the schema adopted, usually "public"
	Users   int64
	Prices  int64
	Records int64
	Tables  []string // the old tables, as they are named now (legacy_*)
}

func (a Adoption) String() string {
	return fmt.Sprintf("adopted the old monitor's database: %d users, %d prices, %d records; old tables kept as %s",
		a.Users, a.Prices, a.Records, strings.Join(a.Tables, ", "))
}

// Adopted reports the old monitor's database Open adopted, or nil when it
// found a database of ours or an empty one.
func (s *Store) Adopted() *Adoption { return s.adopted }

// legacyPrefix is put before the names of the old tables and their
// indexes, constraints and sequences.
const legacyPrefix = "legacy_"

// adoptAfter is the migration after which the old rows are copied: the
// initial schema. The later migrations then treat them as any data of an
// owmon database they upgrade (00002 and 00006 build the rollups).
const adoptAfter = 1

// nanoScale is 10^9: nano-units per currency unit (internal/money).
const nanoScale = "1000000000"

// legacyTable describes one of the old monitor's tables: the columns it
// always has, those some versions have, and which hold money and counts.
type legacyTable struct {
	name     string
	required []string
	optional []string
	numeric  []string // must be of a numeric type
}

// The old monitor's schema, from lib/db/client.ts (ensureTablesExist) and
// lib/db/users.ts (ensureUserTableExists) at a04acdd, and their history:
// users.balance went from DECIMAL(16,6) to DECIMAL(16,4); deleted,
// created_at, per_msg_price and base_model_id were added later by ALTER
// TABLE, so older databases may lack them; the first versions named the
// price's name column model_name and used DOUBLE PRECISION prices.
var legacyTables = []legacyTable{
	{"users", []string{"id", "email", "name", "role", "balance"}, []string{"created_at", "deleted"},
		[]string{"balance"}},
	{"model_prices", []string{"id", "input_price", "output_price"},
		[]string{"name", "model_name", "base_model_id", "per_msg_price", "updated_at"},
		[]string{"input_price", "output_price", "per_msg_price"}},
	{"user_usage_records", []string{"id", "user_id", "nickname", "use_time", "model_name", "input_tokens",
		"output_tokens", "cost", "balance_after"}, nil,
		[]string{"id", "input_tokens", "output_tokens", "cost", "balance_after"}},
}

// column is one column of a table in the schema.
type column struct {
	name     string
	typ      string // format_type
	category string // pg_type.typcategory: N numeric
}

// relation is a table (or view …) of the schema.
type relation struct {
	name string
	kind string // pg_class.relkind
	cols []column
}

func (r relation) col(name string) (column, bool) {
	for _, c := range r.cols {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

// schemaState is what the schema holds before the migrations.
type schemaState struct {
	schema    string
	goose     bool  // goose_db_version exists
	applied   int64 // its highest applied version (0: none)
	relations map[string]relation
}

// adoptFault, when set by a test, fails an adoption at its last step,
// before the commit.
var adoptFault func() error

// prepare looks at the schema before the migrations run and adopts the old
// monitor's tables when it finds them. It returns the adoption, nil when
// there was nothing to adopt, or an error for a schema it refuses.
func prepare(ctx context.Context, pool *pgxpool.Pool) (*Adoption, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close() // does not close the pool
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	// The migrations' lock (goose takes it per session, this per
	// transaction; they exclude each other), waited for as long as goose
	// waits for it.
	if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '5min'`); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lock.DefaultLockID); err != nil {
		return nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	st, err := inspect(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("postgres: inspecting the schema: %w", err)
	}
	if st.goose && st.applied > 0 {
		return nil, nil // ours
	}
	// others names what is neither ours nor the old monitor's, with why a
	// table named as one of the old monitor's is not theirs.
	var others, legacy []string
	for _, name := range sortedNames(st.relations) {
		if name == goose.DefaultTablename {
			continue
		}
		r := st.relations[name]
		if lt, ok := findLegacy(name); ok {
			if why := lt.mismatch(r); why != "" {
				others = append(others, name+" (not the old monitor's: "+why+")")
				continue
			}
			legacy = append(legacy, name)
			continue
		}
		others = append(others, name)
	}
	// The old monitor always has users (it creates it first); its other
	// tables alone are too little to tell them from another application's.
	if len(legacy) > 0 && !slices.Contains(legacy, "users") {
		for _, n := range legacy {
			others = append(others, n+" (without the old monitor's users table)")
		}
		slices.Sort(others)
		legacy = nil
	}
	switch {
	case len(others) == 0 && len(legacy) == 0:
		return nil, nil // fresh
	case len(others) == 0:
		a, err := adopt(ctx, db, tx, st, legacy)
		if err != nil {
			return nil, fmt.Errorf("postgres: the old monitor's database in schema %q was not adopted, and nothing was changed: %w",
				st.schema, err)
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("postgres: adopting the old monitor's database: %w", err)
		}
		return a, nil
	}
	return nil, refusal(st.schema, others, legacy)
}

// refusal explains why a schema is not ours to migrate, and what to do.
func refusal(schema string, others, legacy []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "postgres: schema %q holds tables owmon did not create: %s", schema, listNames(others))
	if len(legacy) > 0 {
		fmt.Fprintf(&b, ", beside the old monitor's %s; owmon adopts the old monitor's database only when it holds"+
			" nothing else: copy those tables into an empty database (pg_dump -t %s <old database URL> | psql"+
			" <new database URL>) and point DATABASE_URL there",
			strings.Join(legacy, ", "), strings.Join(legacy, " -t "))
	} else {
		b.WriteString("; owmon needs a database or schema of its own: create one (CREATE DATABASE owmon) and point" +
			" DATABASE_URL at it, or create a schema (CREATE SCHEMA owmon) and add search_path=owmon to" +
			" DATABASE_URL's parameters (postgres://…/db?search_path=owmon)")
	}
	b.WriteString(". Nothing was changed")
	return errors.New(b.String())
}

func listNames(names []string) string {
	const most = 10
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(" and %d more", len(names)-most)
	}
	return strings.Join(names, ", ")
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func findLegacy(name string) (legacyTable, bool) {
	for _, t := range legacyTables {
		if t.name == name {
			return t, true
		}
	}
	return legacyTable{}, false
}

// mismatch says why r is not this old table ("" when it is).
func (t legacyTable) mismatch(r relation) string {
	if r.kind != "r" {
		return "not a plain table"
	}
	var missing, unknown []string
	for _, c := range t.required {
		if _, ok := r.col(c); !ok {
			missing = append(missing, c)
		}
	}
	for _, c := range r.cols {
		if !slices.Contains(t.required, c.name) && !slices.Contains(t.optional, c.name) {
			unknown = append(unknown, c.name)
		}
	}
	if t.name == "model_prices" {
		_, n := r.col("name")
		_, mn := r.col("model_name")
		if !n && !mn {
			missing = append(missing, "name")
		}
	}
	var why []string
	if len(missing) > 0 {
		why = append(why, "no column "+strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		why = append(why, "columns "+strings.Join(unknown, ", "))
	}
	for _, n := range t.numeric {
		if c, ok := r.col(n); ok && c.category != "N" {
			why = append(why, n+" is "+c.typ)
		}
	}
	return strings.Join(why, "; ")
}

// inspect reads the schema's tables, views and their columns (but not
// those an extension owns, such as PostGIS's spatial_ref_sys), and
// goose_db_version's highest applied version.
func inspect(ctx context.Context, tx *sql.Tx) (schemaState, error) {
	st := schemaState{relations: map[string]relation{}}
	var schema sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return st, err
	}
	if !schema.Valid {
		return st, errors.New("no schema is selected: the search_path names no schema that exists")
	}
	st.schema = schema.String
	rows, err := tx.QueryContext(ctx, `
		SELECT c.relname, c.relkind::text, COALESCE(a.attname, ''),
			COALESCE(format_type(a.atttypid, a.atttypmod), ''), COALESCE(t.typcategory::text, '')
		FROM pg_class c
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		LEFT JOIN pg_type t ON t.oid = a.atttypid
		WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
			AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
			AND NOT EXISTS (SELECT 1 FROM pg_depend d
				WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
		ORDER BY c.relname, a.attnum`)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, kind string
		var c column
		if err := rows.Scan(&name, &kind, &c.name, &c.typ, &c.category); err != nil {
			return st, err
		}
		r := st.relations[name]
		r.name, r.kind = name, kind
		if c.name != "" {
			r.cols = append(r.cols, c)
		}
		st.relations[name] = r
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	if _, ok := st.relations[goose.DefaultTablename]; ok {
		st.goose = true
		q := `SELECT COALESCE(MAX(version_id), 0) FROM ` + qualified(st.schema, goose.DefaultTablename) +
			` WHERE is_applied`
		if err := tx.QueryRowContext(ctx, q).Scan(&st.applied); err != nil {
			return st, fmt.Errorf("%s: %w", goose.DefaultTablename, err)
		}
	}
	return st, nil
}

func qualified(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

// adopt takes over the old tables named in legacy (some of users,
// model_prices, user_usage_records) inside tx; the caller commits.
func adopt(ctx context.Context, db *sql.DB, tx *sql.Tx, st schemaState, legacy []string) (*Adoption, error) {
	a := &Adoption{Schema: st.schema}
	has := func(name string) bool { return slices.Contains(legacy, name) }
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	// No one writes to the old tables while they move. (An old monitor
	// still running waits, and after the commit would write to our users
	// and model_prices: docs/MIGRATION.md says to stop it first.)
	locked := make([]string, len(legacy))
	for i, n := range legacy {
		locked[i] = qualified(st.schema, n)
	}
	if err := exec(`LOCK TABLE ` + strings.Join(locked, ", ") + ` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return nil, err
	}
	// A goose_db_version with no migration applied, left by an earlier
	// start that failed on these tables, is made again below.
	if st.goose {
		if err := exec(`DROP TABLE ` + qualified(st.schema, goose.DefaultTablename)); err != nil {
			return nil, err
		}
	}
	for _, n := range legacy {
		if err := renameLegacy(ctx, tx, st.schema, n); err != nil {
			return nil, fmt.Errorf("renaming %s: %w", n, err)
		}
		a.Tables = append(a.Tables, legacyPrefix+n)
	}

	sources, err := migrationSources(db)
	if err != nil {
		return nil, err
	}
	copied := false
	for _, src := range sources {
		if src.version > adoptAfter && !copied {
			if err := copyLegacy(ctx, tx, st, has, a); err != nil {
				return nil, err
			}
			copied = true
		}
		if err := exec(src.up); err != nil {
			return nil, fmt.Errorf("migration %s: %w", src.path, err)
		}
	}
	if !copied {
		if err := copyLegacy(ctx, tx, st, has, a); err != nil {
			return nil, err
		}
	}
	// The identity continues after the old ids.
	if err := exec(`SELECT setval(pg_get_serial_sequence($1, 'id'),
		COALESCE((SELECT MAX(id) FROM `+qualified(st.schema, "usage_records")+`), 0) + 1, false)`,
		qualified(st.schema, "usage_records")); err != nil {
		return nil, fmt.Errorf("usage_records id: %w", err)
	}

	// goose_db_version as goose makes it: the table, version 0, then one
	// row per migration applied, in order.
	gs, err := database.NewStore(database.DialectPostgres, goose.DefaultTablename)
	if err != nil {
		return nil, err
	}
	if err := gs.CreateVersionTable(ctx, tx); err != nil {
		return nil, fmt.Errorf("%s: %w", goose.DefaultTablename, err)
	}
	if err := gs.Insert(ctx, tx, database.InsertRequest{Version: 0}); err != nil {
		return nil, fmt.Errorf("%s: %w", goose.DefaultTablename, err)
	}
	for _, src := range sources {
		if err := gs.Insert(ctx, tx, database.InsertRequest{Version: src.version}); err != nil {
			return nil, fmt.Errorf("%s: %w", goose.DefaultTablename, err)
		}
	}
	if adoptFault != nil {
		if err := adoptFault(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// renameLegacy renames an old table to legacy_<name>, and its constraints,
// indexes and owned sequences the same way (users_pkey and users_email_idx
// would collide with ours).
func renameLegacy(ctx context.Context, tx *sql.Tx, schema, table string) error {
	tq := qualified(schema, table)
	var stmts []string
	collect := func(q string, stmt func(name string) string) error {
		rows, err := tx.QueryContext(ctx, q, tq)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				return err
			}
			if !strings.HasPrefix(name, legacyPrefix) {
				stmts = append(stmts, stmt(name))
			}
		}
		return rows.Err()
	}
	// Constraints first: renaming a primary or unique key renames its index.
	if err := collect(`SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY conname`,
		func(n string) string {
			return `ALTER TABLE ` + tq + ` RENAME CONSTRAINT ` + pgx.Identifier{n}.Sanitize() + ` TO ` +
				pgx.Identifier{legacyPrefix + n}.Sanitize()
		}); err != nil {
		return err
	}
	if err := collect(`SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1::regclass
			AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
		ORDER BY c.relname`,
		func(n string) string {
			return `ALTER INDEX ` + qualified(schema, n) + ` RENAME TO ` + pgx.Identifier{legacyPrefix + n}.Sanitize()
		}); err != nil {
		return err
	}
	if err := collect(`SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
		WHERE d.refobjid = $1::regclass AND d.classid = 'pg_class'::regclass AND s.relkind = 'S'
			AND d.deptype IN ('a', 'i')
		ORDER BY s.relname`,
		func(n string) string {
			return `ALTER SEQUENCE ` + qualified(schema, n) + ` RENAME TO ` + pgx.Identifier{legacyPrefix + n}.Sanitize()
		}); err != nil {
		return err
	}
	stmts = append(stmts, `ALTER TABLE `+tq+` RENAME TO `+pgx.Identifier{legacyPrefix + table}.Sanitize())
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// source is one embedded migration.
type source struct {
	version int64
	path    string
	up      string // its Up section
}

// migrationSources are the embedded migrations as goose finds them, in
// order, each with its Up section. Each runs as one simple-protocol
// statement list in the adoption's transaction; one that goose would run
// outside a transaction, or with environment substitution, cannot be run
// so, and stops the adoption.
func migrationSources(db *sql.DB) ([]source, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres,
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []source
	for _, s := range p.ListSources() {
		if s.Type != goose.TypeSQL {
			return nil, fmt.Errorf("migration %s is not SQL", s.Path)
		}
		b, err := fs.ReadFile(migrations.Postgres, s.Path)
		if err != nil {
			return nil, err
		}
		up, err := upSection(string(b))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", s.Path, err)
		}
		out = append(out, source{s.Version, s.Path, up})
	}
	return out, nil
}

// upSection is the text between -- +goose Up and -- +goose Down.
// StatementBegin/End stay as the comments they are to PostgreSQL.
func upSection(text string) (string, error) {
	var b strings.Builder
	in := false
	for line := range strings.Lines(text) {
		t := strings.TrimSpace(line)
		if ann, ok := strings.CutPrefix(t, "-- +goose "); ok {
			switch strings.ToLower(strings.TrimSpace(ann)) {
			case "up":
				in = true
				continue
			case "down":
				in = false
				continue
			case "statementbegin", "statementend":
			default:
				return "", fmt.Errorf("annotation %q cannot run inside the adoption's transaction", t)
			}
		}
		if in {
			b.WriteString(line)
		}
	}
	if strings.TrimSpace(b.String()) == "" {
		return "", errors.New("no -- +goose Up section")
	}
	return b.String(), nil
}

// copyLegacy checks the old rows and copies them into our tables (at
// schema version adoptAfter), exactly: amounts become nano-units with no
// rounding (an amount with more than nine decimals, out of range, or a
// NULL where a value is needed stops the adoption, naming the row); only
// DOUBLE PRECISION prices of the first versions, never exact, are rounded
// to the nearest nano-unit.
//
// users: balance as it is; initial_balance such that the ledger adds up
// (balance + the user's charges, as a restore of the old monitor's backup
// sets it); deleted (blocked) NULL is false, as the old monitor read it.
// model_prices: priced, since the old monitor billed at them; a negative
// or NULL per_msg_price bills by tokens (-1); a NULL token price is 0, as
// the old monitor charged it. user_usage_records: completed records of the
// function path (the only one the old monitor had) created at use_time,
// with their ids.
func copyLegacy(ctx context.Context, tx *sql.Tx, st schemaState, has func(string) bool, a *Adoption) error {
	lq := func(n string) string { return qualified(st.schema, legacyPrefix+n) }
	oq := func(n string) string { return qualified(st.schema, n) }
	colOr := func(table, col, alias, fallback string) string {
		if _, ok := st.relations[table].col(col); ok {
			return alias + "." + pgx.Identifier{col}.Sanitize()
		}
		return fallback
	}
	nano := func(table, col, alias string) string {
		c, _ := st.relations[table].col(col)
		e := alias + "." + col + "::numeric * " + nanoScale
		if c.typ == "double precision" || c.typ == "real" {
			return "round(" + e + ")"
		}
		return "(" + e + ")"
	}
	type check struct {
		table, col, cond, what string
	}
	inRange := func(e string) string {
		return e + " NOT BETWEEN -9223372036854775808 AND 9223372036854775807"
	}
	amount := func(table, col string) []check {
		e := nano(table, col, "t")
		return []check{
			{table, col, "t." + col + " IS NULL", "is NULL"},
			{table, col, e + " <> trunc(" + e + ")", "has more than nine decimal places (owmon keeps amounts in units of 0.000000001)"},
			{table, col, inRange(e), "is beyond ±9223372036.854775807, the range of an amount"},
		}
	}
	var checks []check
	if has("users") {
		checks = append(checks, amount("users", "balance")...)
	}
	if has("model_prices") {
		for _, col := range []string{"input_price", "output_price"} {
			e := nano("model_prices", col, "t")
			checks = append(checks,
				check{"model_prices", col, "t." + col + " < 0", "is negative"},
				check{"model_prices", col, e + " <> trunc(" + e + ")", "has more than nine decimal places"},
				check{"model_prices", col, inRange(e), "is beyond the range of an amount"})
		}
		if _, ok := st.relations["model_prices"].col("per_msg_price"); ok {
			e := nano("model_prices", "per_msg_price", "t")
			checks = append(checks,
				check{"model_prices", "per_msg_price", "t.per_msg_price >= 0 AND " + e + " <> trunc(" + e + ")",
					"has more than nine decimal places"},
				check{"model_prices", "per_msg_price", "t.per_msg_price >= 0 AND " + inRange(e), "is beyond the range of an amount"})
		}
	}
	if has("user_usage_records") {
		checks = append(checks, amount("user_usage_records", "cost")...)
		checks = append(checks, amount("user_usage_records", "balance_after")...)
		for _, col := range []string{"input_tokens", "output_tokens"} {
			checks = append(checks,
				check{"user_usage_records", col, "t." + col + " IS NULL OR t." + col + " < 0", "is NULL or negative"},
				check{"user_usage_records", col, "t." + col + " <> trunc(t." + col + "::numeric) OR " + inRange("t."+col+"::numeric"),
					"is not a whole number of tokens"})
		}
		checks = append(checks,
			check{"user_usage_records", "use_time", "t.use_time IS NULL", "is NULL"},
			check{"user_usage_records", "user_id", "t.user_id IS NULL", "is NULL"})
	}
	// One scan per table finds its first row that fails a check (in the
	// order of the checks).
	for _, table := range []string{"users", "model_prices", "user_usage_records"} {
		var conds, cases []string
		for i, c := range checks {
			if c.table == table {
				conds = append(conds, "("+c.cond+")")
				cases = append(cases, fmt.Sprintf("WHEN %s THEN %d", c.cond, i))
			}
		}
		if len(conds) == 0 {
			continue
		}
		var id string
		var i int
		err := tx.QueryRowContext(ctx, `SELECT t.id::text, CASE `+strings.Join(cases, " ")+` END FROM `+lq(table)+
			` t WHERE `+strings.Join(conds, " OR ")+` ORDER BY t.id LIMIT 1`).Scan(&id, &i)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("checking %s: %w", table, err)
		}
		c := checks[i]
		var val sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT t.`+c.col+`::text FROM `+lq(table)+` t WHERE t.id::text = $1`, id).
			Scan(&val); err != nil {
			return fmt.Errorf("checking %s: %w", table, err)
		}
		return fmt.Errorf("%s row with id %s: %s %s (%s); correct or delete the row in the old monitor's database and start again",
			table, id, c.col, c.what, orNull(val))
	}

	if has("users") {
		costs := "0"
		from := lq("users") + " t"
		if has("user_usage_records") {
			from += ` LEFT JOIN (SELECT r.user_id, SUM(` + nano("user_usage_records", "cost", "r") + `) AS cost FROM ` +
				lq("user_usage_records") + ` r GROUP BY r.user_id) c ON c.user_id = t.id`
			costs = "COALESCE(c.cost, 0)"
		}
		initial := nano("users", "balance", "t") + " + " + costs
		var id sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT t.id::text FROM `+from+` WHERE `+inRange(initial)+` ORDER BY t.id LIMIT 1`).
			Scan(&id)
		if err == nil {
			return fmt.Errorf("users row with id %s: its balance plus its charges is beyond the range of an amount", id.String)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking users: %w", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO `+oq("users")+`
			(id, email, name, role, balance, initial_balance, deleted, created_at, updated_at)
			SELECT t.id::text, COALESCE(t.email::text, ''), COALESCE(t.name::text, ''),
				COALESCE(NULLIF(t.role::text, ''), 'user'), (`+nano("users", "balance", "t")+`)::bigint,
				(`+initial+`)::bigint, COALESCE(`+colOr("users", "deleted", "t", "NULL::boolean")+`, false),
				COALESCE(`+colOr("users", "created_at", "t", "NULL::timestamptz")+`, now()), now()
			FROM `+from)
		if err != nil {
			return fmt.Errorf("copying users: %w", err)
		}
		a.Users, _ = res.RowsAffected()
	}
	if has("model_prices") {
		name := colOr("model_prices", "name", "t", colOr("model_prices", "model_name", "t", "''"))
		per := "-" + nanoScale
		if _, ok := st.relations["model_prices"].col("per_msg_price"); ok {
			per = `CASE WHEN t.per_msg_price IS NULL OR t.per_msg_price < 0 THEN -` + nanoScale + ` ELSE (` +
				nano("model_prices", "per_msg_price", "t") + `)::bigint END`
		}
		updated := `COALESCE(` + colOr("model_prices", "updated_at", "t", "NULL::timestamptz") + `, now())`
		res, err := tx.ExecContext(ctx, `INSERT INTO `+oq("model_prices")+`
			(id, name, base_model_id, input_price, output_price, per_msg_price, priced, created_at, updated_at)
			SELECT t.id::text, COALESCE(`+name+`::text, ''),
				COALESCE(`+colOr("model_prices", "base_model_id", "t", "NULL::text")+`::text, ''),
				COALESCE((`+nano("model_prices", "input_price", "t")+`)::bigint, 0),
				COALESCE((`+nano("model_prices", "output_price", "t")+`)::bigint, 0),
				`+per+`, true, `+updated+`, `+updated+`
			FROM `+lq("model_prices")+` t`)
		if err != nil {
			return fmt.Errorf("copying model_prices: %w", err)
		}
		a.Prices, _ = res.RowsAffected()
	}
	if has("user_usage_records") {
		res, err := tx.ExecContext(ctx, `INSERT INTO `+oq("usage_records")+`
			(id, user_id, nickname, model, input_tokens, output_tokens, cost, balance_after, source, status, created_at)
			SELECT t.id, t.user_id::text, COALESCE(t.nickname::text, ''), COALESCE(t.model_name::text, ''),
				t.input_tokens, t.output_tokens, (`+nano("user_usage_records", "cost", "t")+`)::bigint,
				(`+nano("user_usage_records", "balance_after", "t")+`)::bigint, 'function', 'completed', t.use_time
			FROM `+lq("user_usage_records")+` t ORDER BY t.id`)
		if err != nil {
			return fmt.Errorf("copying user_usage_records: %w", err)
		}
		a.Records, _ = res.RowsAffected()
	}
	return nil
}

func orNull(s sql.NullString) string {
	if !s.Valid {
		return "NULL"
	}
	return s.String
}
