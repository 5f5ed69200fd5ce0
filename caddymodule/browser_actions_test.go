package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// TestBackupRestoreAndDeleteInChromium drives the Settings page's backup
// and restore and the user page's delete in a real browser: download a
// backup through the page's link, change the data, restore the backup with
// its preview (counts of the file and of the store) and confirmation, and
// find the store exactly as the backup was; a file that is no backup gets
// an error in words; then delete a user, confirming by typing their email,
// and find them and their records gone and a notice on the users list.
func TestBackupRestoreAndDeleteInChromium(t *testing.T) {
	exe := chromium(t)
	dataDir := t.TempDir()
	s := startSite(t, "sqlite://"+filepath.Join(dataDir, "ui.db"), "access_token admin-secret")
	st := activeStore(t)
	ctx := context.Background()
	seed(t, st)
	shots := screenshots(t)

	bctx := openBrowser(t, exe, 1280, 900, 120*time.Second)
	base := s.url + "/monitor/"
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		var png []byte
		run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(filepath.Join(shots, name+"-en.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
		return strings.TrimSpace(s)
	}
	count := func(sel string) int {
		t.Helper()
		n, err := strconv.Atoi(strings.ReplaceAll(text(sel), ",", ""))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return n
	}
	countsOf := func(b store.Backup) map[string]int {
		return map[string]int{"users": len(b.Users), "records": len(b.Records), "model_prices": len(b.ModelPrices),
			"balance_changes": len(b.BalanceChanges)}
	}
	storeCounts := func() map[string]int {
		t.Helper()
		b, err := st.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return countsOf(b)
	}
	tables := []string{"users", "records", "model_prices", "balance_changes"}

	run("login", chromedp.Navigate(base+"login"), chromedp.WaitVisible(`#login-token`, chromedp.ByQuery),
		chromedp.SendKeys(`#login-token`, "admin-secret", chromedp.ByQuery),
		chromedp.Click(`#login-submit`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="totals"]`, chromedp.ByQuery))

	// Download: the link is the export, and with the session it answers a
	// backup file of everything in the store.
	var href, download string
	var ok bool
	run("settings", chromedp.Navigate(base+"settings"), chromedp.WaitVisible(`#backup-download`, chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById('backup-download').href`, &href),
		chromedp.AttributeValue(`#backup-download`, "download", &download, &ok, chromedp.ByQuery))
	if href != base+"api/v1/panel/database/export" || !ok {
		t.Fatalf("backup link %q (download attribute %v)", href, ok)
	}
	var got struct {
		Status      int    `json:"status"`
		Disposition string `json:"disposition"`
		Body        string `json:"body"`
	}
	run("download the backup", chromedp.Evaluate(`fetch(document.getElementById('backup-download').href, {credentials: 'same-origin'})
		.then(r => r.text().then(body => ({status: r.status, disposition: r.headers.get('Content-Disposition') || '', body})))`,
		&got, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	var backup struct {
		Version string                     `json:"version"`
		Data    map[string]json.RawMessage `json:"data"`
	}
	if got.Status != 200 || !strings.HasPrefix(got.Disposition, "attachment;") || json.Unmarshal([]byte(got.Body), &backup) != nil ||
		backup.Version != "owmon-1" {
		t.Fatalf("download: %d %q %.200s", got.Status, got.Disposition, got.Body)
	}
	inFile := map[string]int{}
	for k, table := range map[string]string{"users": "users", "records": "user_usage_records", "model_prices": "model_prices", "balance_changes": "balance_changes"} {
		var rows []json.RawMessage
		if err := json.Unmarshal(backup.Data[table], &rows); err != nil {
			t.Fatalf("backup table %s: %v", table, err)
		}
		inFile[k] = len(rows)
	}
	seeded, err := st.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(inFile) != fmt.Sprint(countsOf(seeded)) || inFile["users"] != 2 || inFile["records"] != 3 {
		t.Fatalf("the backup has %v, the store %v", inFile, countsOf(seeded))
	}
	backupPath := filepath.Join(t.TempDir(), "monitor-backup.json")
	if err := os.WriteFile(backupPath, []byte(got.Body), 0o600); err != nil {
		t.Fatal(err)
	}

	// Change the data after the backup: a new user with a record, a top-up.
	if _, err := st.UpsertUser(ctx, store.UserInfo{ID: "u3", Name: "Carol", Email: "carol@example.com"}, money.Units(20)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Charge(ctx, store.Record{UserID: "u3", Nickname: "Carol", Model: "llama3", InputTokens: 10, OutputTokens: 10,
		Cost: money.Amount(1_000), Source: "function", Key: "later/1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AdjustBalance(ctx, "u1", money.Units(3), "admin", "before the restore"); err != nil {
		t.Fatal(err)
	}
	before := storeCounts()
	if before["users"] != 3 || before["records"] != 4 || before["balance_changes"] < 1 {
		t.Fatalf("store before the restore %v", before)
	}

	// A file that is no backup: an error in words, and nothing changes.
	bad := func(name, content, want string) {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		run("choose "+name, chromedp.Navigate(base+"settings"), chromedp.WaitVisible(`#restore-file`, chromedp.ByQuery),
			chromedp.SetUploadFiles(`#restore-file`, []string{p}, chromedp.ByQuery),
			chromedp.Click(`#restore-check`, chromedp.ByQuery),
			chromedp.WaitVisible(`#restore-error`, chromedp.ByQuery))
		msg := text(`#restore-error`)
		if !strings.HasPrefix(msg, want) || strings.Contains(strings.ToLower(msg), "invalid json") || strings.Contains(msg, "HTTP") {
			t.Fatalf("%s: the page says %q, want it to start with %q", name, msg, want)
		}
		var previewHidden bool
		run("preview hidden", chromedp.Evaluate(`document.getElementById('restore-preview').hidden`, &previewHidden))
		if !previewHidden {
			t.Fatalf("%s: a preview is offered", name)
		}
	}
	bad("notes.txt", "these are my notes, not a backup", "The file is not a backup: it is not a JSON file.")
	bad("prices.json", `[{"id": "gpt-4o", "input_price": 1, "output_price": 2}]`, "The file is not a backup: it has no version and data")
	bad("shape.json", `{"version": "owmon-1", "data": {"users": {"id": "x"}}}`, "The file is not a backup: data.users: must be a list")
	bad("partial.json", `{"version": "1.0", "data": {"users": []}}`, "The backup cannot be restored: data.model_prices, data.user_usage_records: missing")
	shot("restore-error")
	if c := storeCounts(); fmt.Sprint(c) != fmt.Sprint(before) {
		t.Fatalf("a bad file changed the store: %v, was %v", c, before)
	}

	// The backup: a preview of what it brings and what it replaces.
	run("choose the backup", chromedp.Navigate(base+"settings"), chromedp.WaitVisible(`#restore-file`, chromedp.ByQuery),
		chromedp.SetUploadFiles(`#restore-file`, []string{backupPath}, chromedp.ByQuery),
		chromedp.Click(`#restore-check`, chromedp.ByQuery),
		chromedp.WaitVisible(`#restore-confirm`, chromedp.ByQuery))
	for _, k := range tables {
		if n := count(`[data-testid="preview-imported-` + k + `"]`); n != inFile[k] {
			t.Fatalf("preview: %d %s in the backup, the file has %d", n, k, inFile[k])
		}
		if n := count(`[data-testid="preview-replaced-` + k + `"]`); n != before[k] {
			t.Fatalf("preview: %d %s in the store, it has %d", n, k, before[k])
		}
	}
	if note := text(`[data-testid="restore-replace-note"]`); !strings.Contains(note, "replaced") {
		t.Fatalf("replace note %q", note)
	}
	if label := text(`#restore-confirm`); label != "Replace all data" {
		t.Fatalf("confirm button %q", label)
	}
	shot("restore-preview")
	if c := storeCounts(); fmt.Sprint(c) != fmt.Sprint(before) {
		t.Fatalf("the preview changed the store: %v, was %v", c, before)
	}

	// Confirm: the store is exactly the backup again, and the replaced data
	// is in the file the page names.
	run("confirm", chromedp.Click(`#restore-confirm`, chromedp.ByQuery), chromedp.WaitVisible(`#restore-done`, chromedp.ByQuery))
	for _, k := range tables {
		if n := count(`[data-testid="done-imported-` + k + `"]`); n != inFile[k] {
			t.Fatalf("result: %d %s restored, the file has %d", n, k, inFile[k])
		}
		if n := count(`[data-testid="done-replaced-` + k + `"]`); n != before[k] {
			t.Fatalf("result: %d %s replaced, the store had %d", n, k, before[k])
		}
	}
	saved := text(`#restore-backup-path`)
	if filepath.Dir(saved) != dataDir || !strings.HasPrefix(filepath.Base(saved), "backup-") {
		t.Fatalf("the previous data was saved to %q, want a backup-… file in %s", saved, dataDir)
	}
	raw, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	var kept struct {
		Data struct {
			Users   []struct{ ID string } `json:"users"`
			Records []json.RawMessage     `json:"user_usage_records"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &kept); err != nil || len(kept.Data.Users) != 3 || len(kept.Data.Records) != 4 {
		t.Fatalf("kept copy: %v %d users, %d records", err, len(kept.Data.Users), len(kept.Data.Records))
	}
	shot("restore-done")
	restored, err := st.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", restored) != fmt.Sprintf("%+v", seeded) {
		t.Fatalf("the store after the restore is not the backup:\n%+v\n%+v", restored, seeded)
	}
	if _, err := st.User(ctx, "u3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("u3, added after the backup, is still there: %v", err)
	}

	// Delete a user: the page says what goes, a wrong confirmation does
	// nothing, the right one deletes and goes back to the list with a notice.
	_, recs, _ := st.ListRecords(ctx, store.RecordQuery{Users: []string{"u2"}})
	if recs != 2 {
		t.Fatalf("u2 has %d records", recs)
	}
	run("user page", chromedp.Navigate(base+"users/u2"), chromedp.WaitVisible(`#user-delete-start`, chromedp.ByQuery))
	if hint := text(`#user-delete-hint`); !strings.Contains(hint, "usage records (2)") || !strings.Contains(hint, "balance history") {
		t.Fatalf("delete hint %q", hint)
	}
	run("open the delete form", chromedp.Click(`#user-delete-start`, chromedp.ByQuery),
		chromedp.WaitVisible(`#user-delete-confirm`, chromedp.ByQuery),
		chromedp.SendKeys(`#user-delete-confirm`, "bob", chromedp.ByQuery),
		chromedp.Click(`#user-delete-submit`, chromedp.ByQuery),
		waitJS(`document.querySelector('[data-testid="user-delete-result"]').textContent !== ''`))
	if msg := text(`[data-testid="user-delete-result"]`); !strings.Contains(msg, "Type exactly") {
		t.Fatalf("wrong confirmation says %q", msg)
	}
	if _, err := st.User(ctx, "u2"); err != nil {
		t.Fatalf("a wrong confirmation deleted the user: %v", err)
	}
	shot("user-delete")
	run("delete", chromedp.Evaluate(`document.getElementById('user-delete-confirm').value = ''`, nil),
		chromedp.SendKeys(`#user-delete-confirm`, "bob@example.com", chromedp.ByQuery),
		chromedp.Click(`#user-delete-submit`, chromedp.ByQuery),
		waitJS(`location.pathname.endsWith('/monitor/users') && document.readyState === 'complete'`),
		chromedp.WaitVisible(`[data-testid="page-notice"]`, chromedp.ByQuery))
	if notice := text(`[data-testid="page-notice"]`); !strings.Contains(notice, "Deleted bob@example.com") {
		t.Fatalf("notice %q", notice)
	}
	if _, err := st.User(ctx, "u2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("u2 after the delete: %v", err)
	}
	if _, n, _ := st.ListRecords(ctx, store.RecordQuery{Users: []string{"u2"}}); n != 0 {
		t.Fatalf("u2 still has %d records", n)
	}
	if cs, _ := st.BalanceChanges(ctx, "u2", 10); len(cs) != 0 {
		t.Fatalf("u2 still has balance changes %v", cs)
	}
	if _, n, _ := st.ListRecords(ctx, store.RecordQuery{Users: []string{"u1"}}); n != 1 {
		t.Fatalf("u1 has %d records after u2's delete", n)
	}
	var rows []string
	run("users list", chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="user-row"]')).map(r => r.getAttribute('data-user-id'))`, &rows))
	if strings.Join(rows, ",") != "u1" {
		t.Fatalf("users list shows %v", rows)
	}
	shot("users-deleted")
	// The notice is shown once.
	var notices int
	run("reload", chromedp.Reload(), chromedp.WaitVisible(`[data-testid="users-table"]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('[data-testid="page-notice"]').length`, &notices))
	if notices != 0 {
		t.Fatalf("%d notices after a reload", notices)
	}
}
