package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// maxBackupBytes caps an imported backup (a backup is read whole).
const maxBackupBytes = 512 << 20

// backupVersion marks our backups; the old monitor wrote "1.0".
const backupVersion = "owmon-1"

// The backup file uses the old monitor's table and column names, so a
// backup of either reads in either direction; columns it did not have are
// optional.
type backupFile struct {
	Version   string    `json:"version"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Users          []backupUser   `json:"users"`
		ModelPrices    []backupPrice  `json:"model_prices"`
		Records        []backupRecord `json:"user_usage_records"`
		BalanceChanges []backupChange `json:"balance_changes"`
	} `json:"data"`
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

// exportDatabase: GET /api/v1/panel/database/export — everything, as one
// JSON file.
func (a *API) exportDatabase(w http.ResponseWriter, r *http.Request) {
	b, err := a.store.Export(r.Context())
	if err != nil {
		a.storageFailed(w, "export", err)
		return
	}
	var f backupFile
	f.Version, f.Timestamp = backupVersion, time.Now().UTC()
	for _, u := range b.Users {
		init, blocked, created, updated := u.InitialBalance, u.Blocked, u.CreatedAt, u.UpdatedAt
		f.Data.Users = append(f.Data.Users, backupUser{u.ID, u.Email, u.Name, u.Role, u.Balance, &init, &blocked, &created, &updated})
	}
	for _, p := range b.ModelPrices {
		base, per, priced, updated := p.BaseModelID, p.PerMessage, p.Priced, p.UpdatedAt
		f.Data.ModelPrices = append(f.Data.ModelPrices, backupPrice{p.ID, p.Name, &base, p.Input, p.Output, &per, &priced, &updated})
	}
	for _, rec := range b.Records {
		f.Data.Records = append(f.Data.Records, backupRecord{rec.ID, rec.UserID, rec.Nickname, rec.CreatedAt, rec.Model,
			rec.InputTokens, rec.OutputTokens, rec.CachedTokens, rec.ReasoningTokens, rec.Cost, rec.BalanceAfter,
			rec.Source, rec.Status, rec.Estimated, rec.Purpose, rec.ChatID, rec.MessageID, rec.Key, rec.DurationMS, rec.ExpiresAt})
	}
	for _, c := range b.BalanceChanges {
		f.Data.BalanceChanges = append(f.Data.BalanceChanges, backupChange{c.ID, c.UserID, c.Actor, c.Reason, c.OldBalance, c.NewBalance, c.CreatedAt})
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="openwebui_monitor_backup_%s.json"`, f.Timestamp.Format("2006-01-02")))
	writeJSON(w, http.StatusOK, f)
}

// importDatabase: POST /api/v1/panel/database/import — replaces everything
// with a backup (ours or the old monitor's), all or nothing.
func (a *API) importDatabase(w http.ResponseWriter, r *http.Request) {
	var f backupFile
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBackupBytes))
	if err := dec.Decode(&f); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("backup is larger than %d bytes", maxBackupBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "backup is not valid JSON of the expected shape: "+err.Error())
		return
	}
	b, err := backupToStore(f)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error()+"; nothing was imported")
		return
	}
	if err := a.store.Import(r.Context(), b); err != nil {
		a.log.Error("import failed", "error", err)
		writeError(w, http.StatusUnprocessableEntity, "the backup could not be imported, nothing was changed: "+err.Error())
		return
	}
	a.ledger.ForgetPrices()
	a.ledger.ForgetUsers()
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "users": len(b.Users), "model_prices": len(b.ModelPrices),
		"records": len(b.Records), "balance_changes": len(b.BalanceChanges)})
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
	for _, rec := range f.Data.Records {
		charges[rec.UserID] = charges[rec.UserID].Add(rec.Cost)
	}
	for _, c := range f.Data.BalanceChanges {
		adjust[c.UserID] = adjust[c.UserID].Add(c.NewBalance - c.OldBalance)
	}
	now := time.Now().UTC()
	for i, u := range f.Data.Users {
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
			su.InitialBalance = u.Balance.Add(charges[u.ID]).Add(-adjust[u.ID])
		}
		b.Users = append(b.Users, su)
	}
	prices := map[string]bool{}
	for i, p := range f.Data.ModelPrices {
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
	for i, rec := range f.Data.Records {
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
			sr.Source = store.SourceFunction
		}
		if sr.Status == "" {
			sr.Status = store.StatusCompleted
		}
		if sr.CreatedAt.IsZero() {
			return b, fmt.Errorf("data.user_usage_records[%d].use_time: is required", i)
		}
		b.Records = append(b.Records, sr)
	}
	for i, c := range f.Data.BalanceChanges {
		if _, ok := users[c.UserID]; !ok {
			return b, fmt.Errorf("data.balance_changes[%d].user_id: %q is not among the users", i, c.UserID)
		}
		b.BalanceChanges = append(b.BalanceChanges, store.BalanceChange{ID: c.ID, UserID: c.UserID, Actor: c.Actor,
			Reason: c.Reason, OldBalance: c.OldBalance, NewBalance: c.NewBalance, CreatedAt: c.CreatedAt})
	}
	return b, nil
}
