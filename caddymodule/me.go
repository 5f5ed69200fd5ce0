package caddymodule

import (
	"net/http"

	"github.com/openwebui-monitor/owmon/internal/edge"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// identify is how the dashboard's user page (/me) knows who is asking:
// the gate's own identification of the request's OpenWebUI credential.
func identify(g *edge.Gate) func(*http.Request) (store.UserInfo, error) {
	return func(r *http.Request) (store.UserInfo, error) {
		u, err := g.Who(r)
		if err != nil {
			return store.UserInfo{}, err
		}
		return store.UserInfo{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role}, nil
	}
}
