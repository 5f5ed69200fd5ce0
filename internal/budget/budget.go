// Package budget owns limits and grants: what a user may spend over a
// window (a calendar day, week or month in the operator's time zone, or a
// rolling duration), who a limit applies to (a user, an OpenWebUI group, a
// role, everyone), and which of several limits decides. It holds no state
// and reads no database: the ledger asks it which limits apply to a call,
// and the store counts the usage in their windows in the hold's own
// transaction.
package budget

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
)

// Measure is what a limit counts.
type Measure string

const (
	Cost     Measure = "cost"     // money charged, in nano-units
	Tokens   Measure = "tokens"   // input + output tokens
	Messages Measure = "messages" // answers charged
)

// ParseMeasure reads a measure's name.
func ParseMeasure(s string) (Measure, error) {
	switch m := Measure(s); m {
	case Cost, Tokens, Messages:
		return m, nil
	}
	return "", fmt.Errorf("measure %q: want cost, tokens or messages", s)
}

// Window is the span a limit counts over: a calendar period or a rolling
// duration ending now.
type Window struct {
	Calendar string        // "day", "week" (from Monday) or "month"; "" when rolling
	Rolling  time.Duration // > 0 when rolling
}

// MaxRolling bounds rolling windows: longer ones read too much.
const MaxRolling = 366 * 24 * time.Hour

// ParseWindow reads "day", "week", "month", or a duration such as "5h",
// "90m" or "7d" (d: 24 hours).
func ParseWindow(s string) (Window, error) {
	switch s {
	case "day", "week", "month":
		return Window{Calendar: s}, nil
	case "":
		return Window{}, errors.New("window: want day, week, month or a duration such as 5h or 7d")
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			return Window{}, fmt.Errorf("window %q: want day, week, month or a duration such as 5h or 7d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return Window{}, fmt.Errorf("window %q: want day, week, month or a duration such as 5h or 7d", s)
		}
	}
	if d < time.Minute || d > MaxRolling {
		return Window{}, fmt.Errorf("window %q: a rolling window lasts from 1m to 366d", s)
	}
	if d%time.Minute != 0 {
		return Window{}, fmt.Errorf("window %q: a rolling window is whole minutes", s)
	}
	return Window{Rolling: d}, nil
}

// String is the window as ParseWindow reads it.
func (w Window) String() string {
	if w.Calendar != "" {
		return w.Calendar
	}
	if w.Rolling%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(w.Rolling/(24*time.Hour)), 10) + "d"
	}
	s := w.Rolling.String() // "5h0m0s"
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Bounds is the window around now: usage from start on counts, and a
// calendar window starts again at end. A rolling window has no end of its
// own (end is zero): its usage falls out of it as it ages.
func (w Window) Bounds(now time.Time, loc *time.Location) (start, end time.Time) {
	if w.Rolling > 0 {
		return now.Add(-w.Rolling), time.Time{}
	}
	t := now.In(loc)
	y, m, d := t.Date()
	switch w.Calendar {
	case "week":
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case "month":
		start = time.Date(y, m, 1, 0, 0, 0, 0, loc)
		end = time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	default:
		start = time.Date(y, m, d, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	}
	return start.UTC(), end.UTC()
}

// Scope is who a limit or grant applies to.
type Scope struct {
	Kind string // "user", "group", "role" or "all"
	ID   string // the user's or group's id, or the role; "" for all
}

// Roles are OpenWebUI's user roles a scope may name.
var Roles = []string{"user", "admin", "pending"}

// ParseScope reads "user:<id>", "group:<id>", "role:<role>" or "all".
func ParseScope(s string) (Scope, error) {
	if s == "all" {
		return Scope{Kind: "all"}, nil
	}
	kind, id, ok := strings.Cut(s, ":")
	if !ok || id == "" || len(id) > 200 {
		return Scope{}, fmt.Errorf("scope %q: want user:<id>, group:<id>, role:<role> or all", s)
	}
	switch kind {
	case "user", "group":
	case "role":
		if !slices.Contains(Roles, id) {
			return Scope{}, fmt.Errorf("scope %q: the role is one of %s", s, strings.Join(Roles, ", "))
		}
	default:
		return Scope{}, fmt.Errorf("scope %q: want user:<id>, group:<id>, role:<role> or all", s)
	}
	return Scope{Kind: kind, ID: id}, nil
}

// String is the scope as ParseScope reads it.
func (s Scope) String() string {
	if s.Kind == "all" {
		return "all"
	}
	return s.Kind + ":" + s.ID
}

// level orders scopes from the most specific: a user's own limit replaces
// a group's, a group's a role's, a role's everyone's.
func (s Scope) level() int {
	switch s.Kind {
	case "user":
		return 0
	case "group":
		return 1
	case "role":
		return 2
	}
	return 3
}

// Limit caps one measure over a window for a scope. Amount is nano-units
// for cost, a count for tokens and messages. Models, when not empty, are
// the model ids it covers, where * matches any text and ? one character
// ("gpt-4*"); else it
// covers every model. A shared limit is a pool: the usage of all the
// scope's members counts together; else each member has the amount.
type Limit struct {
	ID      int64
	Scope   Scope
	Measure Measure
	Amount  int64
	Window  Window
	Models  []string
	Shared  bool
}

// Validate checks a limit as the admin API takes it, naming the field at fault.
func (l Limit) Validate() error {
	if l.Amount < 0 {
		return fmt.Errorf("amount: must not be negative")
	}
	if l.Shared && l.Scope.Kind == "user" {
		return fmt.Errorf("shared: a user's own limit is not a pool")
	}
	if len(l.Models) > 100 {
		return fmt.Errorf("models: at most 100 patterns")
	}
	for _, m := range l.Models {
		if m == "" || len(m) > 200 {
			return fmt.Errorf("models: a pattern is 1 to 200 characters")
		}
		if strings.ContainsAny(m, `[]\`) {
			return fmt.Errorf("models: pattern %q: only * and ? are wildcards; [, ] and \\ are not allowed", m)
		}
	}
	return nil
}

// Covers reports whether the limit counts calls to model.
func (l Limit) Covers(model string) bool {
	if len(l.Models) == 0 {
		return true
	}
	for _, p := range l.Models {
		if Match(p, model) {
			return true
		}
	}
	return false
}

// FormatAmount writes an amount of the limit's measure.
func (l Limit) FormatAmount(v int64) string {
	if l.Measure == Cost {
		return money.Amount(v).String()
	}
	return strconv.FormatInt(v, 10)
}

// Describe names the limit for a refusal: "cost per day (group:staff)".
func (l Limit) Describe() string {
	var w string
	if l.Window.Calendar != "" {
		w = "per " + l.Window.Calendar
	} else {
		w = "per " + l.Window.String() + " (rolling)"
	}
	s := string(l.Measure) + " " + w
	if len(l.Models) > 0 {
		s += " on " + strings.Join(l.Models, ", ")
	}
	s += " (" + l.Scope.String()
	if l.Shared {
		s += ", shared"
	}
	return s + ")"
}

// Subject is the user a call is for, as limits see them.
type Subject struct {
	UserID string
	Role   string
	Groups []string // the OpenWebUI groups the user belongs to
}

// AppliesTo reports whether the limit's scope includes the subject.
func (l Limit) AppliesTo(s Subject) bool {
	switch l.Scope.Kind {
	case "user":
		return l.Scope.ID == s.UserID
	case "group":
		return slices.Contains(s.Groups, l.Scope.ID)
	case "role":
		return l.Scope.ID == s.Role
	}
	return l.Scope.Kind == "all"
}

// key groups the limits that compete: same measure, window and models.
func (l Limit) key() string {
	m := slices.Clone(l.Models)
	slices.Sort(m)
	return string(l.Measure) + "|" + l.Window.String() + "|" + strings.Join(m, "\x00")
}

// Effective returns the limits that decide a subject's calls (for one
// model when model is not "", else every model). Limits compete when they
// count the same measure over the same window and models; of those, the
// most specific scope decides: a user's own limit replaces their groups',
// their groups' their role's, their role's everyone's. Among several
// groups the most generous (largest amount) applies, as OpenWebUI's group
// permissions add up; among limits of one user, role or everyone, the
// strictest.
func Effective(limits []Limit, s Subject, model string) []Limit {
	best := map[string]Limit{}
	var order []string
	for _, l := range limits {
		if !l.AppliesTo(s) || (model != "" && !l.Covers(model)) {
			continue
		}
		k := l.key()
		cur, ok := best[k]
		switch {
		case !ok:
			order = append(order, k)
			best[k] = l
		case l.Scope.level() < cur.Scope.level():
			best[k] = l
		case l.Scope.level() > cur.Scope.level():
		case l.Scope.Kind == "group" && l.Amount > cur.Amount, l.Scope.Kind != "group" && l.Amount < cur.Amount:
			best[k] = l
		case l.Amount == cur.Amount && l.ID < cur.ID: // a stable choice
			best[k] = l
		}
	}
	out := make([]Limit, 0, len(order))
	for _, k := range order {
		out = append(out, best[k])
	}
	return out
}

// Match reports whether s matches pattern, where * matches any text
// (slashes too: model ids such as "openrouter/gpt-4o" have them) and ?
// one character. The stores translate patterns the same way (GLOB, LIKE).
func Match(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	pi, ti, star, mark := 0, 0, -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// Grant is a periodic allowance: at the start of every window, each user
// of the scope gets the balance set to Amount (Mode "reset"), or Amount
// added without going above Cap (Mode "add"). Windows are calendar ones;
// LastWindow is the start of the last window applied, so windows missed
// while owmon was down are applied once, not once each.
type Grant struct {
	ID         int64
	Scope      Scope
	Mode       string
	Amount     money.Amount
	Cap        money.Amount
	Window     Window
	LastWindow time.Time
}

// Validate checks a grant as the admin API takes it, naming the field at fault.
func (g Grant) Validate() error {
	switch {
	case g.Mode != "reset" && g.Mode != "add":
		return fmt.Errorf("mode %q: want reset or add", g.Mode)
	case g.Window.Calendar == "":
		return fmt.Errorf("window: a grant renews every day, week or month")
	case g.Amount < 0:
		return fmt.Errorf("amount: must not be negative")
	case g.Mode == "add" && g.Cap < g.Amount:
		return fmt.Errorf("cap: an add grant needs a cap of at least its amount")
	}
	return nil
}

// Next is what a grant makes of a balance.
func (g Grant) Next(balance money.Amount) money.Amount {
	if g.Mode == "reset" {
		return g.Amount
	}
	if balance >= g.Cap {
		return balance
	}
	if n, ok := balance.AddChecked(g.Amount); ok && n < g.Cap {
		return n
	}
	return g.Cap
}

// Group is an OpenWebUI user group, as last synced.
type Group struct {
	ID      string
	Name    string
	Members []string // user ids
}
