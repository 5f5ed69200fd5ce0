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
// said (the model, the counted prompt). The messages of a new chat's first
// turn wait in fresh, by message id, until OpenWebUI's answer or the
// websocket names their chat.
type webChats struct {
	mu    sync.Mutex
	m     map[string]webChat
	fresh map[string]webChat
	adds  int
}

type webChat struct {
	user    identity.User
	model   string
	prompt  int64
	start   time.Time
	expires time.Time
	// rekey, for the message whose hold waits under store.NewChatID,
	// gives that hold its chat id; it runs once, whoever calls it first.
	rekey func(chatID string)
}

func (w *webChats) put(key, messageID string, c webChat, fresh bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m, w.fresh = make(map[string]webChat), make(map[string]webChat)
	}
	w.adds++
	if w.adds%1024 == 0 {
		for _, m := range []map[string]webChat{w.m, w.fresh} {
			for k, old := range m {
				if c.start.After(old.expires) {
					delete(m, k)
				}
			}
		}
	}
	if fresh {
		w.fresh[messageID] = c
	} else {
		w.m[key] = c
	}
}

// take returns the chat message under key, or the new chat's message
// messageID of userID ("" when the websocket does not know).
func (w *webChats) take(key, messageID, userID string) (webChat, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.m[key]; ok {
		delete(w.m, key)
		return c, true
	}
	c, ok := w.fresh[messageID]
	if !ok || (userID != "" && c.user.ID != userID) {
		return webChat{}, false
	}
	delete(w.fresh, messageID)
	return c, true
}

// name moves a new chat's messages under their chat, now that OpenWebUI
// named it, and returns the ones it moved.
func (w *webChats) name(chatID string, messageIDs []string) []webChat {
	w.mu.Lock()
	defer w.mu.Unlock()
	var moved []webChat
	for _, id := range messageIDs {
		if c, ok := w.fresh[id]; ok {
			delete(w.fresh, id)
			w.m[ledger.Key(chatID, id)] = c
			moved = append(moved, c)
		}
	}
	return moved
}

// drop forgets a new chat's messages: its first turn failed.
func (w *webChats) drop(messageIDs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range messageIDs {
		delete(w.fresh, id)
	}
}

// rememberWebChat notes a web-UI chat for the tap: its message, and the
// other models' messages when one request fans out to several
// (message_ids, §3a). Only the first carries the hold.
func (c *Call) rememberWebChat(body []byte) {
	wc := webChat{user: c.user, model: c.req.Model, prompt: c.prompt, start: c.start, expires: c.start.Add(c.g.cfg.HoldTTL)}
	first := wc
	if c.newChat {
		first.rekey = c.g.rekeyOnce(c.key)
	}
	c.remember(c.messageID, first)
	gjson.GetBytes(body, "message_ids").ForEach(func(_, m gjson.Result) bool {
		id, model := m.Get("message_id").Str, m.Get("model_id").Str
		if id != "" && id != c.messageID && model != "" {
			other := wc
			other.model = model
			c.remember(id, other)
		}
		return true
	})
}

func (c *Call) remember(messageID string, wc webChat) {
	c.webMessages = append(c.webMessages, messageID)
	c.g.web.put(ledger.Key(c.chatID, messageID), messageID, wc, c.newChat)
	if !c.newChat {
		c.g.tracker.Expect(c.chatID, messageID)
	}
}

// rekeyOnce returns a function that gives the hold under key (placed for a
// new chat's first turn) its chat id, once.
func (g *Gate) rekeyOnce(key string) func(chatID string) {
	var once sync.Once
	return func(chatID string) {
		once.Do(func() {
			if _, err := g.ledger.RekeyHold(context.Background(), key, chatID); err != nil {
				g.log.Error("cannot give a new chat's hold its chat id; it is released when it expires", "error", err)
			}
		})
	}
}

// newChatAnswered reads OpenWebUI's answer to a new chat's first turn,
// {"status": true, "task_ids": […], "chat_id": "<new>"} (main.py
// chat_completion): its messages are then the chat's, and their hold is
// keyed to it. A failed turn forgets them (End releases the hold). An
// answer without a chat id (OpenWebUI consumed the stream itself and
// answered null) leaves them to the websocket, which names the chat.
func (g *Gate) newChatAnswered(c *Call) {
	if c.status == 0 || c.status >= 400 {
		g.web.drop(c.webMessages)
		return
	}
	chatID := gjson.GetBytes(c.answer, "chat_id")
	if chatID.Type != gjson.String || chatID.Str == "" {
		return
	}
	moved := g.web.name(chatID.Str, c.webMessages)
	for _, id := range c.webMessages {
		g.tracker.Expect(chatID.Str, id)
	}
	for _, wc := range moved {
		if wc.rekey != nil {
			g.settling.Add(1)
			go func() {
				defer g.settling.Done()
				wc.rekey(chatID.Str)
			}()
		}
	}
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
	wc, known := g.web.take(key, r.MessageID, r.UserID)
	g.settling.Add(1)
	go func() {
		defer g.settling.Done()
		ctx := context.Background()
		if wc.rekey != nil {
			wc.rekey(r.ChatID) // a new chat's hold, under its placeholder until now
		}
		if !known {
			// Not let through by this process (a restart, another instance):
			// the hold says who and which model.
			held, err := g.ledger.Store().RecordByKey(ctx, key)
			if err != nil || held.Status != ledger.StatusPending {
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					g.log.Error("cannot settle a web-UI answer", "error", err)
				}
				return
			}
			wc = webChat{user: identity.User{ID: held.UserID, Name: held.Nickname}, model: held.Model, start: held.CreatedAt}
		}
		o := ledger.Observation{
			User: userInfo(wc.user), Model: wc.model, ChatID: r.ChatID, MessageID: r.MessageID, Key: key,
			Source: ledger.SourceWebsocket, Purpose: "chat", Duration: r.Ended.Sub(wc.start),
			Usage:        ledgerUsage(r.Usage, r.Usage.Reported),
			PromptTokens: wc.prompt,
			Produced:     r.Content != "" || r.Reasoning != "",
			Ended:        ledger.EndStopped, // stopped or failed midway
		}
		if r.Outcome == wstap.Done {
			o.Ended = ledger.EndCompleted
		}
		if o.Produced && !o.Usage.Reported {
			o.OutputTokens = g.counter.Text(wc.model, r.Content+r.Reasoning) // only an estimate needs it
		}
		if _, err := g.ledger.Settle(ctx, o); err != nil {
			g.log.Error("cannot settle a web-UI answer; its hold is released when it expires", "error", err)
		}
	}()
}

// webChatProgress journals what a web-UI answer has produced so far, as
// the websocket shows it: the output reported, or counted from the text.
// After a crash, or when the tap loses the answer, its hold is charged for
// that rather than released at zero.
func (g *Gate) webChatProgress(r wstap.Result) {
	n := r.Usage.Output
	if !r.Usage.Reported {
		n = g.counter.Text(r.Model, r.Content+r.Reasoning)
	}
	if n > 0 {
		g.ledger.Progress(ledger.Key(r.ChatID, r.MessageID), n)
	}
}
