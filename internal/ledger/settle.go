package ledger

import (
	"context"
	"time"

	"github.com/openwebui-monitor/owmon/internal/store"
)

// Ending is how an answer ended, as the path that watched it saw it.
type Ending uint8

const (
	// EndCompleted: the answer reached its normal end (the stream's last
	// event, a complete document, the websocket's "done").
	EndCompleted Ending = iota
	// EndEarly: the upstream answered (a 2xx or 3xx status) but the answer
	// stopped before its normal end, or its end could not be read.
	EndEarly
	// EndStopped: the answer was stopped, or failed midway (a web-UI
	// answer that did not end "done").
	EndStopped
	// EndFailed: the upstream answered with an error status (≥ 400).
	EndFailed
	// EndNoAnswer: the upstream sent no answer at all (no status).
	EndNoAnswer
	// EndReply: OpenWebUI handed over the reply it stored (the function's
	// outlet): it is complete, and an empty one means the answer failed.
	EndReply
)

// Usage is the usage a provider reported for an answer.
type Usage struct {
	Input     int64
	Output    int64
	Cached    int64
	Reasoning int64
	Reported  bool // the provider reported usage; the counts are its own
}

// Observation is what a metering path observed of one answer: Settle
// decides what it costs.
type Observation struct {
	User        store.UserInfo
	Model       string
	BaseModelID string
	ChatID      string
	MessageID   string
	Key         string // idempotency key; empty: Key(ChatID, MessageID)
	Source      Source
	Purpose     string
	Duration    time.Duration

	Usage        Usage // what the provider reported, if it did
	PromptTokens int64 // the prompt, counted here
	OutputTokens int64 // what was produced, counted here
	Produced     bool  // output (text) was produced

	Ended      Ending
	ClientLeft bool // the client went away before the answer was settled
	// Background: a web-UI chat OpenWebUI answers over the websocket; when
	// nothing was produced here, the tap (or the hold's expiry) settles it.
	Background bool
	// Tokenless: an answer that carries no tokens to show (images, audio,
	// embeddings); answered, it costs its prompt.
	Tokenless bool
}

// tokensFrom says where a settled answer's token counts come from.
type tokensFrom uint8

const (
	noTokens        tokensFrom = iota
	reported                   // the reported usage
	reportedAtLeast            // the reported usage, output at least what was counted (cut short)
	estimated                  // the counted prompt and output
	promptOnly                 // the counted prompt, as an estimate
)

// statusRule says which status a settled answer takes.
type statusRule uint8

const (
	completed       statusRule = iota
	cancelledIfLeft            // cancelled when the client left, else completed
	cancelled
	failed
	notHere // no settlement on this path
)

// settlement is the table of cases, first match wins.
var settlement = []struct {
	name   string
	when   func(o *Observation) bool
	tokens tokensFrom
	status statusRule
}{
	// The upstream failed: release in full.
	{"no answer, client left", func(o *Observation) bool { return o.Ended == EndNoAnswer && o.ClientLeft }, noTokens, cancelled},
	{"no answer", func(o *Observation) bool { return o.Ended == EndNoAnswer }, noTokens, failed},
	{"upstream error", func(o *Observation) bool { return o.Ended == EndFailed }, noTokens, failed},

	// The outlet's reply: reported usage, else an estimate; empty is failed.
	{"reply with usage", func(o *Observation) bool { return o.Ended == EndReply && o.Usage.Reported }, reported, completed},
	{"reply with content", func(o *Observation) bool { return o.Ended == EndReply && o.Produced }, estimated, completed},
	{"empty reply", func(o *Observation) bool { return o.Ended == EndReply }, estimated, failed},

	// Stopped midway: what was produced; nothing produced is failed.
	{"stopped with usage", func(o *Observation) bool { return o.Ended == EndStopped && o.Usage.Reported }, reported, cancelled},
	{"stopped, produced", func(o *Observation) bool { return o.Ended == EndStopped && o.Produced }, estimated, cancelled},
	{"stopped, nothing", func(o *Observation) bool { return o.Ended == EndStopped }, noTokens, failed},

	// Answered (completed or early).
	{"completed with usage", func(o *Observation) bool { return o.Ended == EndCompleted && o.Usage.Reported }, reported, completed},
	// Cut short: an early report (Anthropic's message_start says 1 output
	// token) may trail what was produced.
	{"early with usage", func(o *Observation) bool { return o.Ended == EndEarly && o.Usage.Reported }, reportedAtLeast, cancelledIfLeft},
	{"background, nothing here", func(o *Observation) bool { return o.Background && !o.Produced }, noTokens, notHere},
	{"produced", func(o *Observation) bool { return o.Produced }, estimated, cancelledIfLeft},
	{"client left, nothing produced", func(o *Observation) bool { return o.ClientLeft }, noTokens, cancelled},
	{"answered without tokens", func(o *Observation) bool { return o.Tokenless }, promptOnly, completed},
	{"answered with nothing", func(*Observation) bool { return true }, noTokens, failed},
}

// Decide returns the answer an observation is charged as, and false when
// it is not settled on its path (a web-UI chat the websocket tap settles).
func Decide(o Observation) (Answer, bool) {
	a := Answer{
		User: o.User, Model: o.Model, BaseModelID: o.BaseModelID,
		ChatID: o.ChatID, MessageID: o.MessageID, Key: o.Key,
		Source: o.Source, Purpose: o.Purpose, Duration: o.Duration,
	}
	for _, c := range settlement {
		if !c.when(&o) {
			continue
		}
		switch c.tokens {
		case reported, reportedAtLeast:
			a.InputTokens, a.OutputTokens = o.Usage.Input, o.Usage.Output
			a.CachedTokens, a.ReasoningTokens = o.Usage.Cached, o.Usage.Reasoning
			if c.tokens == reportedAtLeast {
				a.OutputTokens = max(a.OutputTokens, o.OutputTokens)
			}
		case estimated:
			a.InputTokens, a.OutputTokens, a.Estimated = o.PromptTokens, o.OutputTokens, true
		case promptOnly:
			a.InputTokens, a.Estimated = o.PromptTokens, true
		}
		switch c.status {
		case completed:
			a.Status = StatusCompleted
		case cancelledIfLeft:
			a.Status = StatusCompleted
			if o.ClientLeft {
				a.Status = StatusCancelled
			}
		case cancelled:
			a.Status = StatusCancelled
		case failed:
			a.Status = StatusFailed
		case notHere:
			return Answer{}, false
		}
		return a, true
	}
	return Answer{}, false // unreachable: the last case matches everything
}

// Settle decides what an observed answer costs (see Decide) and charges
// it. An answer not settled on its path charges nothing and returns a
// zero result.
func (l *Ledger) Settle(ctx context.Context, o Observation) (ChargeResult, error) {
	a, ok := Decide(o)
	if !ok {
		return ChargeResult{}, nil
	}
	return l.Charge(ctx, a)
}
