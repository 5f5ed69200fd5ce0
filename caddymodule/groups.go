package caddymodule

import (
	"context"
	"net/http"
	"time"

	"github.com/openwebui-monitor/owmon/internal/groupsync"
)

// newGroupSyncer returns the syncer of OpenWebUI's groups (for group
// budget limits), or nil when group_sync is off or openwebui or
// openwebui_api_key is not set; without the key it says so once.
func (a *App) newGroupSyncer() *groupsync.Syncer {
	s := a.settings
	if s.GroupSync <= 0 || s.OpenWebUI == "" {
		return nil
	}
	if s.OpenWebUIAPIKey == "" {
		a.log.Info("openwebui_api_key (OPENWEBUI_API_KEY) is not set: OpenWebUI's groups are not synced, so group budget limits (group:<id>) apply to nobody; set it to an OpenWebUI admin's API key")
		return nil
	}
	budgets := a.ledger.Budgets()
	return groupsync.New(groupsync.Config{
		OpenWebUI: s.OpenWebUI,
		APIKey:    s.OpenWebUIAPIKey,
		Client:    &http.Client{Timeout: 30 * time.Second},
		Store:     a.store,
		Synced: func() {
			if budgets != nil {
				budgets.Invalidate() // group limits apply at once
			}
		},
	})
}

// syncGroups is the admin API's on-demand sync; nil without a syncer.
func (a *App) syncGroups() func(ctx context.Context) (int, error) {
	if a.groups == nil {
		return nil
	}
	return a.groups.Sync
}

// startGroupSync syncs OpenWebUI's groups now and every group_sync until
// ctx ends; the channel closes when it has stopped.
func (a *App) startGroupSync(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if a.groups == nil {
		close(done)
		return done
	}
	every := a.settings.GroupSync
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			r, err := a.groups.SyncResult(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				a.log.Warn("syncing OpenWebUI's groups failed; group limits use the groups of the last sync",
					"error", err, "next", every.String())
			default:
				a.log.Info("OpenWebUI's groups synced", "groups", r.Groups, "members", r.Members)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return done
}
