package admin

import "net/http"

// routePages registers the dashboard's pages.
func (a *API) routePages(mux *http.ServeMux) {}
