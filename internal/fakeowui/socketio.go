package fakeowui

import "net/http"

// This file is the fake's socket.io server (§5). Until it lands, events are
// only recorded (see Events). Keep these two signatures: background.go
// calls emit for every event, NewOpenWebUI calls mountSocketIO.

// mountSocketIO adds the socket.io routes (/ws/socket.io/) to mux.
func (o *OpenWebUI) mountSocketIO(mux *http.ServeMux) {}

// emit sends payload as 42["events", payload] to every socket of the user.
func (o *OpenWebUI) emit(userID string, payload map[string]any) {}
