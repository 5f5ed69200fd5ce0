package admin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// maxBackupBytes caps an imported backup (a backup is read whole).
const maxBackupBytes = 512 << 20

// backupVersion marks our backups; the old monitor wrote "1.0".
const backupVersion = "owmon-1"

// The backup file uses the old monitor's table and column names, so a
// backup of either reads in either direction; columns it did not have are
// optional. Tables are not: a backup lacking users, model_prices or
// user_usage_records (or, in ours, balance_changes) is refused rather than
// read as empty tables.
type backupFile struct {
	Version   string    `json:"version"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Users          section[backupUser]   `json:"users"`
		ModelPrices    section[backupPrice]  `json:"model_prices"`
		Records        section[backupRecord] `json:"user_usage_records"`
		BalanceChanges section[backupChange] `json:"balance_changes"`
	} `json:"data"`
}

// section is one table of a backup file. It remembers whether the file had
// it at all (null counts as an empty table, as our older exports wrote
// them), and is written as [] when empty.
type section[T any] struct {
	Rows    []T
	present bool
}

func (s *section[T]) UnmarshalJSON(b []byte) error {
	s.present = true
	return json.Unmarshal(b, &s.Rows)
}

func (s section[T]) MarshalJSON() ([]byte, error) {
	if s.Rows == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.Rows)
}

// listType lets decodeJSON find the row an error is about.
func (section[T]) listType() reflect.Type { return reflect.TypeFor[[]T]() }

// missing lists the tables a backup lacks.
func (f *backupFile) missing() []string {
	var out []string
	if !f.Data.Users.present {
		out = append(out, "data.users")
	}
	if !f.Data.ModelPrices.present {
		out = append(out, "data.model_prices")
	}
	if !f.Data.Records.present {
		out = append(out, "data.user_usage_records")
	}
	if f.Version == backupVersion && !f.Data.BalanceChanges.present {
		out = append(out, "data.balance_changes")
	}
	return out
}

type backupUser struct {
	ID             string        `json:"id"`
	Email          string        `json:"email"`
	Name           string        `json:"name"`
	Role           string        `json:"role"`
	Balance        money.Amount  `json:"balance"`
	InitialBalance *money.Amount `json:"initial_balance,omitempty"`
	Deleted        *bool         `json:"deleted"`
	CreatedAt      *time.Time    `json:"created_at"`
	UpdatedAt      *time.Time    `json:"updated_at,omitempty"`
}

type backupPrice struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	BaseModelID *string       `json:"base_model_id"`
	InputPrice  money.Amount  `json:"input_price"`
	OutputPrice money.Amount  `json:"output_price"`
	PerMsgPrice *money.Amount `json:"per_msg_price"`
	Priced      *bool         `json:"priced,omitempty"`
	UpdatedAt   *time.Time    `json:"updated_at"`
}

type backupRecord struct {
	ID              int64        `json:"id"`
	UserID          string       `json:"user_id"`
	Nickname        string       `json:"nickname"`
	UseTime         time.Time    `json:"use_time"`
	ModelName       string       `json:"model_name"`
	InputTokens     int64        `json:"input_tokens"`
	OutputTokens    int64        `json:"output_tokens"`
	CachedTokens    int64        `json:"cached_tokens,omitempty"`
	ReasoningTokens int64        `json:"reasoning_tokens,omitempty"`
	Cost            money.Amount `json:"cost"`
	BalanceAfter    money.Amount `json:"balance_after"`
	Source          string       `json:"source,omitempty"`
	Status          string       `json:"status,omitempty"`
	Estimated       bool         `json:"estimated,omitempty"`
	Purpose         string       `json:"purpose,omitempty"`
	ChatID          string       `json:"chat_id,omitempty"`
	MessageID       string       `json:"message_id,omitempty"`
	Key             string       `json:"idem_key,omitempty"`
	DurationMS      int64        `json:"duration_ms,omitempty"`
	ExpiresAt       *time.Time   `json:"expires_at,omitempty"`
}

type backupChange struct {
	ID         int64        `json:"id"`
	UserID     string       `json:"user_id"`
	Actor      string       `json:"actor"`
	Reason     string       `json:"reason"`
	OldBalance money.Amount `json:"old_balance"`
	NewBalance money.Amount `json:"new_balance"`
	CreatedAt  time.Time    `json:"created_at"`
}

// backupOf is the backup file of every row of a store, as of at.
func backupOf(b store.Backup, at time.Time) backupFile {
	var f backupFile
	f.Version, f.Timestamp = backupVersion, at.UTC()
	for _, u := range b.Users {
		init, blocked, created, updated := u.InitialBalance, u.Blocked, u.CreatedAt, u.UpdatedAt
		f.Data.Users.Rows = append(f.Data.Users.Rows, backupUser{u.ID, u.Email, u.Name, u.Role, u.Balance, &init, &blocked, &created, &updated})
	}
	for _, p := range b.ModelPrices {
		base, per, priced, updated := p.BaseModelID, p.PerMessage, p.Priced, p.UpdatedAt
		f.Data.ModelPrices.Rows = append(f.Data.ModelPrices.Rows, backupPrice{p.ID, p.Name, &base, p.Input, p.Output, &per, &priced, &updated})
	}
	for _, rec := range b.Records {
		f.Data.Records.Rows = append(f.Data.Records.Rows, backupRecord{rec.ID, rec.UserID, rec.Nickname, rec.CreatedAt, rec.Model,
			rec.InputTokens, rec.OutputTokens, rec.CachedTokens, rec.ReasoningTokens, rec.Cost, rec.BalanceAfter,
			rec.Source, rec.Status, rec.Estimated, rec.Purpose, rec.ChatID, rec.MessageID, rec.Key, rec.DurationMS, rec.ExpiresAt})
	}
	for _, c := range b.BalanceChanges {
		f.Data.BalanceChanges.Rows = append(f.Data.BalanceChanges.Rows, backupChange{c.ID, c.UserID, c.Actor, c.Reason, c.OldBalance, c.NewBalance, c.CreatedAt})
	}
	return f
}

// exportDatabase: GET /api/v1/panel/database/export — everything, as one
// JSON file.
func (a *API) exportDatabase(w http.ResponseWriter, r *http.Request) {
	b, err := a.store.Export(r.Context())
	if err != nil {
		a.storageFailed(w, "export", err)
		return
	}
	f := backupOf(b, time.Now())
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="openwebui_monitor_backup_%s.json"`, f.Timestamp.Format("2006-01-02")))
	writeJSON(w, http.StatusOK, f)
}

// Why a restore stopped before replacing anything (from the store's keep).
var (
	errWouldReplace = errors.New("the restore would replace data and mode=replace was not given")
	errNoBackupDir  = errors.New("no backup directory is configured")
)

// backupWriteError is a failure to save the data a restore would replace.
type backupWriteError struct{ err error }

func (e *backupWriteError) Error() string { return e.err.Error() }

// counts says how many rows of each table a backup has, in the answers.
func counts(b store.Backup) map[string]int {
	return map[string]int{"users": len(b.Users), "model_prices": len(b.ModelPrices), "records": len(b.Records),
		"balance_changes": len(b.BalanceChanges)}
}

// backupCounts is how many rows of each table a store holds.
type backupCounts struct{ users, prices, records, changes int }

func (b backupCounts) empty() bool { return b.users+b.prices+b.records+b.changes == 0 }

func countsOf(b store.Backup) backupCounts {
	return backupCounts{len(b.Users), len(b.ModelPrices), len(b.Records), len(b.BalanceChanges)}
}

func (b backupCounts) String() string {
	return fmt.Sprintf("%d users, %d model prices, %d usage records and %d balance changes", b.users, b.prices, b.records, b.changes)
}

// importDatabase: POST /api/v1/panel/database/import[?mode=replace] —
// restores a backup (ours or the old monitor's), all or nothing. Into a
// store that holds data it needs mode=replace, and the data it replaces is
// first saved to a backup file in the data directory, whose path the answer
// gives, with what was replaced and what was imported.
func (a *API) importDatabase(w http.ResponseWriter, r *http.Request) {
	mode := r.URL.Query().Get("mode")
	if mode != "" && mode != "replace" && mode != "preview" {
		writeError(w, http.StatusBadRequest, "mode: "+quote(mode)+" is not a mode of import; the modes are replace and preview")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBackupBytes))
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("backup is larger than %d bytes", maxBackupBytes))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read the backup: "+err.Error())
		return
	}
	var f backupFile
	if err := decodeJSON(raw, &f, false); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error":  "the backup cannot be read: " + err.Error(),
			"detail": notBackupDetail(raw, err),
		})
		return
	}
	if missing := f.missing(); len(missing) > 0 {
		fields := map[string]string{}
		for _, m := range missing {
			fields[m] = "is missing"
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"error": strings.Join(missing, ", ") + ": missing; a backup has every table, an empty one as [] " +
				"(a restore replaces every table, so a missing one would be emptied); nothing was imported",
			"errors": fields,
		})
		return
	}
	b, err := backupToStore(f)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error()+"; nothing was imported")
		return
	}
	if mode == "preview" {
		a.previewImport(w, r, f, b)
		return
	}
	var (
		replaced store.Backup
		saved    string
	)
	err = a.ledger.Import(r.Context(), b, func(old store.Backup) error {
		replaced = old
		switch {
		case countsOf(old).empty():
			return nil
		case mode != "replace":
			return errWouldReplace
		case a.opts.BackupDir == "":
			return errNoBackupDir
		}
		path, err := writeBackup(a.opts.BackupDir, old, time.Now())
		if err != nil {
			return &backupWriteError{err}
		}
		saved = path
		return nil
	})
	var writeErr *backupWriteError
	switch {
	case errors.Is(err, errWouldReplace):
		writeJSON(w, http.StatusConflict, map[string]any{
			"error": "the monitor holds " + countsOf(replaced).String() + "; a restore replaces all of them: " +
				"add ?mode=replace to do so (they are saved to a backup file first); nothing was imported",
			"replaced": counts(replaced),
		})
		return
	case errors.Is(err, errNoBackupDir):
		a.log.Error("import refused: no backup directory to keep the data it would replace")
		writeError(w, http.StatusInternalServerError, "the monitor has no directory to save the data a restore replaces; nothing was imported")
		return
	case errors.As(err, &writeErr):
		a.log.Error("import refused: cannot save the data it would replace", "error", writeErr.err)
		writeError(w, http.StatusInternalServerError, "could not save the data a restore replaces, so nothing was imported: "+writeErr.err.Error())
		return
	case err != nil:
		a.log.Error("import failed", "error", err)
		if saved != "" {
			os.Remove(saved) //nolint:errcheck // nothing was replaced: the copy is not needed
		}
		writeError(w, http.StatusUnprocessableEntity, "the backup could not be imported, nothing was changed: "+err.Error())
		return
	}
	if saved != "" {
		a.log.Info("restore replaced data; the replaced data is kept", "backup", saved, "replaced", countsOf(replaced).String())
	}
	out := map[string]any{"success": true, "users": len(b.Users), "model_prices": len(b.ModelPrices),
		"records": len(b.Records), "balance_changes": len(b.BalanceChanges),
		"imported": counts(b), "replaced": counts(replaced)}
	if saved != "" {
		out["backup"] = saved
	}
	writeJSON(w, http.StatusOK, out)
}

// previewImport answers what a restore of a checked backup would import
// and what it would replace, and writes nothing (?mode=preview).
func (a *API) previewImport(w http.ResponseWriter, r *http.Request, f backupFile, b store.Backup) {
	current, err := a.store.Export(r.Context())
	if err != nil {
		a.storageFailed(w, "import preview", err)
		return
	}
	out := map[string]any{"preview": true, "version": f.Version, "imported": counts(b), "replaced": counts(current),
		"needs_replace": !countsOf(current).empty()}
	if !f.Timestamp.IsZero() {
		out["timestamp"] = f.Timestamp
	}
	writeJSON(w, http.StatusOK, out)
}

// notBackupDetail words why a file did not decode as a backup, for people:
// not JSON at all, JSON that is not an object, or the field that is wrong.
func notBackupDetail(raw []byte, err error) string {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "it is not a JSON file"
	case errors.Is(err, errTrailing):
		return "it holds more than one JSON value"
	}
	var top any
	if json.Unmarshal(raw, &top) == nil {
		if _, ok := top.(map[string]any); !ok {
			return "it is not a JSON object with version and data"
		}
	}
	return err.Error()
}

// writeBackup saves every row of b, in the export's format, to a new file
// named by the time (backup-20261202T153000Z.json) in dir, and returns its
// path. The file is complete and synced before the path is returned.
func writeBackup(dir string, b store.Backup, at time.Time) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	stem := "backup-" + at.UTC().Format("20060102T150405Z")
	var file *os.File
	for i := 1; ; i++ {
		name := stem + ".json"
		if i > 1 {
			name = fmt.Sprintf("%s-%d.json", stem, i)
		}
		file, err = os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil || !errors.Is(err, os.ErrExist) || i >= 100 {
			break
		}
	}
	if err != nil {
		return "", err
	}
	path := file.Name()
	buf := bufio.NewWriterSize(file, 1<<20)
	err = json.NewEncoder(buf).Encode(backupOf(b, at))
	if err == nil {
		err = buf.Flush()
	}
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path) //nolint:errcheck // a partial copy is no backup
		return "", err
	}
	return path, nil
}

// backupToStore checks a backup and turns it into rows. A backup from the
// old monitor has no initial balances: each user's is set so that the
// ledger adds up (balance + the user's charges).
func backupToStore(f backupFile) (store.Backup, error) {
	switch f.Version {
	case backupVersion, "1.0":
	default:
		return store.Backup{}, fmt.Errorf("version: %q is not a backup version this monitor reads (%s or 1.0)", f.Version, backupVersion)
	}
	var b store.Backup
	users := map[string]int{}
	charges := map[string]money.Amount{}
	adjust := map[string]money.Amount{}
	for i, rec := range f.Data.Records.Rows {
		for _, n := range []struct {
			name  string
			count int64
		}{{"input_tokens", rec.InputTokens}, {"output_tokens", rec.OutputTokens}, {"cached_tokens", rec.CachedTokens},
			{"reasoning_tokens", rec.ReasoningTokens}} {
			if n.count < 0 {
				return b, fmt.Errorf("data.user_usage_records[%d].%s: %d is negative", i, n.name, n.count)
			}
		}
		sum, ok := charges[rec.UserID].AddChecked(rec.Cost)
		if !ok {
			return b, fmt.Errorf("data.user_usage_records[%d].cost: the costs of user %q add up to more than the largest amount (%s)",
				i, rec.UserID, money.Max)
		}
		charges[rec.UserID] = sum
	}
	for i, c := range f.Data.BalanceChanges.Rows {
		d, ok := c.NewBalance.SubChecked(c.OldBalance)
		if ok {
			d, ok = adjust[c.UserID].AddChecked(d)
		}
		if !ok {
			return b, fmt.Errorf("data.balance_changes[%d]: the balance changes of user %q add up to more than an amount can hold",
				i, c.UserID)
		}
		adjust[c.UserID] = d
	}
	now := time.Now().UTC()
	for i, u := range f.Data.Users.Rows {
		if u.ID == "" {
			return b, fmt.Errorf("data.users[%d].id: is required", i)
		}
		if _, dup := users[u.ID]; dup {
			return b, fmt.Errorf("data.users[%d].id: %q appears twice", i, u.ID)
		}
		users[u.ID] = i
		su := store.User{UserInfo: store.UserInfo{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role}, Balance: u.Balance,
			CreatedAt: now, UpdatedAt: now}
		if su.Role == "" {
			su.Role = "user"
		}
		if u.Deleted != nil {
			su.Blocked = *u.Deleted
		}
		if u.CreatedAt != nil {
			su.CreatedAt = *u.CreatedAt
		}
		if u.UpdatedAt != nil {
			su.UpdatedAt = *u.UpdatedAt
		}
		if u.InitialBalance != nil {
			su.InitialBalance = *u.InitialBalance
		} else {
			// The old monitor kept no initial balance: the one that makes
			// the ledger add up.
			init, ok := u.Balance.AddChecked(charges[u.ID])
			if ok {
				init, ok = init.SubChecked(adjust[u.ID])
			}
			if !ok {
				return b, fmt.Errorf("data.users[%d].balance: %s plus the user's charges is more than the largest amount (%s)",
					i, u.Balance, money.Max)
			}
			su.InitialBalance = init
		}
		b.Users = append(b.Users, su)
	}
	prices := map[string]bool{}
	for i, p := range f.Data.ModelPrices.Rows {
		if p.ID == "" {
			return b, fmt.Errorf("data.model_prices[%d].id: is required", i)
		}
		if prices[p.ID] {
			return b, fmt.Errorf("data.model_prices[%d].id: %q appears twice", i, p.ID)
		}
		prices[p.ID] = true
		if p.InputPrice < 0 || p.OutputPrice < 0 {
			return b, fmt.Errorf("data.model_prices[%d]: prices must not be negative", i)
		}
		sp := store.ModelPrice{ID: p.ID, Name: p.Name, Input: p.InputPrice, Output: p.OutputPrice, PerMessage: money.Units(-1), Priced: true, UpdatedAt: now}
		if p.BaseModelID != nil {
			sp.BaseModelID = *p.BaseModelID
		}
		if p.PerMsgPrice != nil {
			sp.PerMessage = *p.PerMsgPrice
		}
		if p.Priced != nil {
			sp.Priced = *p.Priced
		}
		if p.UpdatedAt != nil {
			sp.UpdatedAt = *p.UpdatedAt
		}
		b.ModelPrices = append(b.ModelPrices, sp)
	}
	for i, rec := range f.Data.Records.Rows {
		if _, ok := users[rec.UserID]; !ok {
			return b, fmt.Errorf("data.user_usage_records[%d].user_id: %q is not among the users", i, rec.UserID)
		}
		sr := store.Record{ID: rec.ID, UserID: rec.UserID, Nickname: rec.Nickname, Model: rec.ModelName,
			InputTokens: rec.InputTokens, OutputTokens: rec.OutputTokens, CachedTokens: rec.CachedTokens,
			ReasoningTokens: rec.ReasoningTokens, Cost: rec.Cost, BalanceAfter: rec.BalanceAfter,
			Source: rec.Source, Status: rec.Status, Estimated: rec.Estimated, Purpose: rec.Purpose,
			ChatID: rec.ChatID, MessageID: rec.MessageID, Key: rec.Key, DurationMS: rec.DurationMS,
			CreatedAt: rec.UseTime, ExpiresAt: rec.ExpiresAt}
		if sr.Source == "" {
			sr.Source = ledger.SourceFunction
		}
		if sr.Status == "" {
			sr.Status = ledger.StatusCompleted
		}
		if sr.CreatedAt.IsZero() {
			return b, fmt.Errorf("data.user_usage_records[%d].use_time: is required", i)
		}
		b.Records = append(b.Records, sr)
	}
	for i, c := range f.Data.BalanceChanges.Rows {
		if _, ok := users[c.UserID]; !ok {
			return b, fmt.Errorf("data.balance_changes[%d].user_id: %q is not among the users", i, c.UserID)
		}
		b.BalanceChanges = append(b.BalanceChanges, store.BalanceChange{ID: c.ID, UserID: c.UserID, Actor: c.Actor,
			Reason: c.Reason, OldBalance: c.OldBalance, NewBalance: c.NewBalance, CreatedAt: c.CreatedAt})
	}
	return b, nil
}
