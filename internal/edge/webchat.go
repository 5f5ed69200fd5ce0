package edge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/identity"
	"github.com/openwebui-monitor/owmon/internal/ledger"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/wstap"
)

// webChats are the web-UI chats the gate let through, by
// ledger.Key(chat, message): OpenWebUI answers them over the websocket,
// where the tap reads them, and their settlement needs what the request
// said (the model, the counted prompt).
type webChats struct {
	mu   sync.Mutex
	m    map[string]webChat
	adds int
}

type webChat struct {
	user    identity.User
	model   string
	prompt  int64
	start   time.Time
	expires time.Time
}

func (w *webChats) put(key string, c webChat) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]webChat)
	}
	w.adds++
	if w.adds%1024 == 0 {
		for k, old := range w.m {
			if c.start.After(old.expires) {
				delete(w.m, k)
			}
		}
	}
	w.m[key] = c
}

func (w *webChats) take(key string) (webChat, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.m[key]
	delete(w.m, key)
	return c, ok
}

// rememberWebChat notes a web-UI chat for the tap: its message, and the
// other models' messages when one request fans out to several
// (message_ids, §3a). Only the first carries the hold.
func (c *Call) rememberWebChat(body []byte) {
	wc := webChat{user: c.user, model: c.req.Model, prompt: c.prompt, start: c.start, expires: c.start.Add(c.g.cfg.HoldTTL)}
	c.g.web.put(ledger.Key(c.chatID, c.messageID), wc)
	c.g.tracker.Expect(c.chatID, c.messageID)
	gjson.GetBytes(body, "message_ids").ForEach(func(_, m gjson.Result) bool {
		id, model := m.Get("message_id").Str, m.Get("model_id").Str
		if id != "" && id != c.messageID && model != "" {
			other := wc
			other.model = model
			c.g.web.put(ledger.Key(c.chatID, id), other)
			c.g.tracker.Expect(c.chatID, id)
		}
		return true
	})
}

// SettleWebChat charges a web-UI answer the websocket tap saw end. The
// usage OpenWebUI reported is charged as it is; without one, the prompt
// counted at the request and the answer's text are (an estimate). A
// stopped answer pays for what was produced; a failed one with nothing
// produced releases its hold. An answer the tap lost sight of (every tab
// closed) is charged the usage it reported, if any; without one it is left
// to its hold's expiry or the function's outlet, since OpenWebUI may still
// be generating it. When a provider meter charges the message, the ledger
// charges nothing here.
func (g *Gate) SettleWebChat(r wstap.Result) {
	if r.MessageID == "" || (r.Outcome == wstap.Abandoned && !r.Usage.Reported) {
		return
	}
	key := ledger.Key(r.ChatID, r.MessageID)
	wc, known := g.web.take(key)
	g.settling.Add(1)
	go func() {
		defer g.settling.Done()
		ctx := context.Background()
		if !known {
			// Not let through by this process (a restart, another instance):
			// the hold says who and which model.
			held, err := g.ledger.Store().RecordByKey(ctx, key)
			if err != nil || held.Status != store.StatusPending {
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					g.log.Error("cannot settle a web-UI answer", "error", err)
				}
				return
			}
			wc = webChat{user: identity.User{ID: held.UserID, Name: held.Nickname}, model: held.Model, start: held.CreatedAt}
		}
		a := ledger.Answer{
			User: userInfo(wc.user), Model: wc.model, ChatID: r.ChatID, MessageID: r.MessageID, Key: key,
			Source: store.SourceWebsocket, Purpose: "chat", Duration: r.Ended.Sub(wc.start),
		}
		produced := r.Content != "" || r.Reasoning != ""
		switch {
		case r.Usage.Reported:
			a.InputTokens, a.OutputTokens = r.Usage.Input, r.Usage.Output
			a.CachedTokens, a.ReasoningTokens = r.Usage.Cached, r.Usage.Reasoning
		case produced:
			a.InputTokens = wc.prompt
			a.OutputTokens = g.counter.Text(wc.model, r.Content+r.Reasoning)
			a.Estimated = true
		}
		switch {
		case !r.Usage.Reported && !produced:
			a.Status = store.StatusFailed // nothing came: release the hold
		case r.Outcome == wstap.Done:
			a.Status = store.StatusCompleted
		default:
			a.Status = store.StatusCancelled // stopped or failed midway: what was produced
		}
		if _, err := g.ledger.Charge(ctx, a); err != nil {
			g.log.Error("cannot settle a web-UI answer; its hold is released when it expires", "error", err)
		}
	}()
}
