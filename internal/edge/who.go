package edge

import (
	"net/http"

	"github.com/openwebui-monitor/owmon/internal/identity"
)

// Who returns the user a request's credential names, picked and resolved
// exactly as for a model call (Begin): Authorization Bearer, then the
// "token" cookie, then the API-key header, verified locally and with
// OpenWebUI's GET /api/v1/auths/, cached. For pages and endpoints that
// show users their own data. Errors match identity.ErrNoCredential (the
// request has none), identity.ErrUnauthenticated (OpenWebUI refuses it),
// identity.ErrForbidden (OpenWebUI would not say whose API key it is), or
// anything else when OpenWebUI could not answer. The credential is never
// part of an error.
func (g *Gate) Who(r *http.Request) (identity.User, error) {
	token, _ := identity.Credential(r, g.cfg.APIKeyHeader)
	if token == "" {
		return identity.User{}, identity.ErrNoCredential
	}
	return g.resolver.Resolve(r.Context(), token)
}
