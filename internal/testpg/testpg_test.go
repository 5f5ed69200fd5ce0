package testpg_test

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/openwebui-monitor/owmon/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(t.Context())
	var v string
	if err := conn.QueryRow(t.Context(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestDSN(t *testing.T) {
	a, b := testpg.DSN(t), testpg.DSN(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	if db := query(t, a, "SELECT current_database()"); "postgres://postgres@127.0.0.1:" != a[:len("postgres://postgres@127.0.0.1:")] || db == "" {
		t.Fatalf("DSN %s, database %q", a, db)
	}
	if query(t, a, "SELECT current_database()") == query(t, b, "SELECT current_database()") {
		t.Fatal("same database behind two DSNs")
	}
	if v := query(t, a, "SHOW fsync"); v != "off" {
		t.Fatalf("fsync = %s on the fast cluster", v)
	}
	if v := query(t, a, "SHOW server_version_num"); v < "150000" {
		t.Fatalf("server_version_num = %s", v)
	}
}

func TestDurableDSN(t *testing.T) {
	d := testpg.DurableDSN(t)
	for _, s := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if v := query(t, d, "SHOW "+s); v != "on" {
			t.Fatalf("%s = %s on the durable cluster", s, v)
		}
	}
	if d == testpg.DSN(t) {
		t.Fatal("durable and fast DSNs are the same")
	}
}
