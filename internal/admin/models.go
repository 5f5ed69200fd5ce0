package admin

import "net/http"

// routeModels registers the routes that talk to OpenWebUI about models.
func (a *API) routeModels(mux *http.ServeMux) {}
