package main

// End-to-end fault and concurrency tests: the owmon binary in front of the
// fake OpenWebUI (whose connection points at the fake provider), with a real
// SQLite file or a real PostgreSQL cluster, under load, while the database
// goes away (PostgreSQL stopped, a full disk), while owmon is killed in the
// middle of streamed answers, and with more concurrent calls than a balance
// covers. Every answer a client received must be charged exactly once, at
// its exact cost, and the balance must be what the records say.
//
// Prices are 1 per input token and 2 per output token (default_input_price
// 1000000, default_output_price 2000000 per 1M tokens), and the fake
// provider reports fixed usage, so the cost of each answer is known.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/tidwall/gjson"
	_ "modernc.org/sqlite"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/testpg"
	"github.com/openwebui-monitor/owmon/internal/tokens"
)

const (
	nano     = int64(1_000_000_000) // nano-units per currency unit, as stored
	inPrice  = 1                    // currency units per input token
	outPrice = 2                    // currency units per output token
	model    = "gpt-4o"
)

// cost is the exact cost, in nano-units, of an answer of in and out tokens.
func cost(in, out int64) int64 { return (in*inPrice + out*outPrice) * nano }

// promptTokens counts messages as owmon counts a chat call's prompt (its
// hold and its estimated records use this count).
func promptTokens(t *testing.T, messages string) int64 {
	t.Helper()
	m := gjson.Parse(messages)
	if !m.IsArray() {
		t.Fatalf("messages %s", messages)
	}
	return tokens.New().Messages(model, m)
}

// --- owmon processes that can be stopped, killed and started again ---

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// owmonConfig is one instance's Caddyfile: the front (openwebui_monitor +
// reverse_proxy to OpenWebUI) and the global options.
type owmonConfig struct {
	port        int
	openwebui   string
	database    string // "" is the SQLite file in Caddy's data directory
	initBalance string
	storeOutage string // "" leaves the default (fail_open)
	journal     string // "" leaves the default (in the data directory)
	holdOutput  string // "" leaves the default (4096)
}

func (c owmonConfig) caddyfile() string {
	var g strings.Builder
	opt := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&g, "\t\t%s %s\n", k, v)
		}
	}
	opt("database", c.database)
	opt("default_input_price", fmt.Sprint(inPrice*1_000_000))
	opt("default_output_price", fmt.Sprint(outPrice*1_000_000))
	opt("init_balance", c.initBalance)
	opt("store_outage", c.storeOutage)
	opt("journal", c.journal)
	opt("hold_output_tokens", c.holdOutput)
	return fmt.Sprintf(`{
	admin off
	auto_https off
	openwebui_monitor {
%s	}
}

:%d {
	openwebui_monitor
	reverse_proxy %s
}
`, g.String(), c.port, c.openwebui)
}

// owmonProc is an owmon process that a test can kill and start again with
// the same Caddyfile, data directory (XDG_DATA_HOME) and port.
type owmonProc struct {
	t       *testing.T
	config  string // Caddyfile path
	dataDir string
	env     []string
	base    string
	logs    *syncBuffer

	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// newOwmon writes cfg's Caddyfile and prepares (does not start) an owmon
// whose data directory is dataDir. It is stopped when the test ends; its
// output is shown when the test failed, or always with OWMON_TEST_LOGS=1.
func newOwmon(t *testing.T, cfg owmonConfig, dataDir string, env ...string) *owmonProc {
	t.Helper()
	if cfg.port == 0 {
		cfg.port = freePort(t)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg.caddyfile()), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &owmonProc{t: t, config: path, dataDir: dataDir, logs: &syncBuffer{},
		base: fmt.Sprintf("http://127.0.0.1:%d", cfg.port),
		env:  append([]string{"XDG_DATA_HOME=" + dataDir, "XDG_CONFIG_HOME=" + dir, "OPENWEBUI_DOMAIN=" + cfg.openwebui}, env...)}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() || os.Getenv("OWMON_TEST_LOGS") != "" { // OWMON_TEST_LOGS=1: show them always
			t.Logf("owmon output (%s):\n%s", p.base, tail(p.logs.String(), 12000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// start runs owmon and waits until it listens.
func (p *owmonProc) start() {
	p.t.Helper()
	p.runs++
	fmt.Fprintf(p.logs, "\n===== owmon run %d =====\n", p.runs)
	cmd := exec.Command(owmon(p.t), "run", "--config", p.config)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			p.t.Fatalf("owmon exited at start:\n%s", tail(p.logs.String(), 8000))
		default:
		}
		if resp, err := http.Get(p.base + "/api/v1/inlet"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("owmon did not start listening within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends owmon with SIGKILL, as a crash or the OOM killer would.
func (p *owmonProc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop ends owmon with SIGTERM (a graceful shutdown), or SIGKILL after 30s.
func (p *owmonProc) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("owmon did not stop within 30s of SIGTERM")
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// logLines counts the lines of owmon's output that contain any of substrs
// (case-insensitive).
func (p *owmonProc) logLines(substrs ...string) int {
	n := 0
	for _, line := range strings.Split(strings.ToLower(p.logs.String()), "\n") {
		for _, s := range substrs {
			if strings.Contains(line, strings.ToLower(s)) {
				n++
				break
			}
		}
	}
	return n
}

// health is GET /monitor/healthz: the status and the body.
func (p *owmonProc) health() (int, gjson.Result, string) {
	resp, err := http.Get(p.base + "/monitor/healthz")
	if err != nil {
		return 0, gjson.Result{}, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, gjson.ParseBytes(b), resp.Header.Get("Content-Type") + " " + string(b)
}

// --- streamed calls ---

// callResult is what a client saw of one model call.
type callResult struct {
	started, ended time.Time
	status         int
	complete       bool   // 200 and the stream's end (data: [DONE])
	chunks         int    // content pieces received
	text           string // the content received
	body           []byte // the body of an answer other than 200
	err            error  // transport error (before or during the answer)
}

// refusedJSON: a 503 whose body is the gate's JSON error
// ({"error": {...}, "detail": "..."}).
func (r callResult) refusedJSON() bool {
	j := gjson.ParseBytes(r.body)
	return r.status == http.StatusServiceUnavailable && r.err == nil && gjson.ValidBytes(r.body) &&
		j.Get("error").IsObject() && j.Get("detail").Type == gjson.String
}

func (r callResult) String() string {
	return fmt.Sprintf("{%s +%s: status %d complete %v chunks %d body %.200q err %v}",
		r.started.Format("15:04:05.000"), r.ended.Sub(r.started).Round(time.Millisecond), r.status, r.complete, r.chunks, r.body, r.err)
}

var loadClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200, DisableCompression: true}}

// streamCall sends one streamed API-key chat call and reads its answer to
// the end. onChunk, when set, is called after each content piece with the
// number received so far.
func streamCall(ctx context.Context, base, key, body string, onChunk func(int)) (r callResult) {
	r.started = time.Now()
	defer func() { r.ended = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/chat/completions", strings.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := loadClient.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		r.body, r.err = io.ReadAll(resp.Body)
		return r
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var text strings.Builder
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			r.complete = true
			continue
		}
		if c := gjson.Get(data, "choices.0.delta.content").String(); c != "" {
			r.chunks++
			text.WriteString(c)
			if onChunk != nil {
				onChunk(r.chunks)
			}
		}
	}
	r.err = sc.Err()
	r.text = text.String()
	if r.err != nil {
		r.complete = false
	}
	return r
}

// runLoad runs clients goroutines that each send call after call until ctx
// is done; a call in flight then is read to its end.
func runLoad(ctx context.Context, clients int, call func(context.Context) callResult) []callResult {
	var (
		mu  sync.Mutex
		all []callResult
		wg  sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r := call(cctx)
				cancel()
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
				if r.status != http.StatusOK {
					// A refusal comes back at once: pause, as a client
					// would, rather than spin.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i].started.Before(all[j].started) })
	return all
}

// tally splits results into answers received whole, 503 JSON refusals and
// anything else.
func tally(results []callResult) (complete, refused, other []callResult) {
	for _, r := range results {
		switch {
		case r.status == http.StatusOK && r.complete:
			complete = append(complete, r)
		case r.refusedJSON():
			refused = append(refused, r)
		default:
			other = append(other, r)
		}
	}
	return
}

func firstN(rs []callResult, n int) string {
	var b strings.Builder
	for i, r := range rs {
		if i == n {
			fmt.Fprintf(&b, "\n\t… and %d more", len(rs)-n)
			break
		}
		b.WriteString("\n\t" + r.String())
	}
	return b.String()
}

// --- reading the ledger ---

type usageRow struct {
	status        string
	cost          int64
	input, output int64
	estimated     bool
}

type ledgerState struct {
	rows             []usageRow
	balance, initial int64
	byStatus         map[string]int
	sum              int64 // of every record's cost, pending holds included
}

func (s ledgerState) String() string {
	return fmt.Sprintf("records by status %v, sum of costs %d, balance %d, initial %d", s.byStatus, s.sum, s.balance, s.initial)
}

// sqliteDSN is the SQLite file owmon keeps in its data directory.
func sqliteDSN(dataDir string) string {
	return "file:" + filepath.Join(dataDir, "caddy", "openwebui-monitor", "monitor.db") + "?_pragma=busy_timeout(5000)"
}

// readLedger reads user's records and balance (driver "sqlite" or "pgx").
func readLedger(driver, dsn, user string) (ledgerState, error) {
	s := ledgerState{byStatus: map[string]int{}}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return s, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT status, cost, input_tokens, output_tokens, estimated FROM usage_records WHERE user_id = $1 ORDER BY id`, user)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var r usageRow
		if err := rows.Scan(&r.status, &r.cost, &r.input, &r.output, &r.estimated); err != nil {
			rows.Close()
			return s, err
		}
		s.rows = append(s.rows, r)
		s.byStatus[r.status]++
		s.sum += r.cost
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	err = db.QueryRowContext(ctx, `SELECT balance, initial_balance FROM users WHERE id = $1`, user).Scan(&s.balance, &s.initial)
	return s, err
}

// waitLedger polls until no record of user is pending and at least want
// records are final, for up to 30s, and returns the last state read.
func waitLedger(t *testing.T, driver, dsn, user string, want int) ledgerState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := readLedger(driver, dsn, user)
		final := len(s.rows) - s.byStatus["pending"]
		if err == nil && s.byStatus["pending"] == 0 && final >= want {
			return s
		}
		if time.Now().After(deadline) {
			t.Errorf("after 30s: %s (read error %v); want no pending record and %d final ones", s, err, want)
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkDelivered asserts that the ledger holds exactly one completed record
// per answer delivered whole (all answers alike: in and out tokens), no
// other record, and a balance equal to the initial one minus the records.
func checkDelivered(t *testing.T, s ledgerState, delivered int, in, out int64) {
	t.Helper()
	if s.byStatus["completed"] != delivered || len(s.rows) != delivered {
		t.Errorf("%d answers were delivered whole; the ledger has %s: want exactly %d completed records and no other",
			delivered, s, delivered)
	}
	if s.byStatus["expired"] > 0 {
		t.Errorf("%d records expired", s.byStatus["expired"])
	}
	bad := 0
	for _, r := range s.rows {
		if r.status == "completed" && (r.cost != cost(in, out) || r.input != in || r.output != out) {
			if bad++; bad <= 5 {
				t.Errorf("completed record %+v, want %d in, %d out, cost %d", r, in, out, cost(in, out))
			}
		}
	}
	if s.balance != s.initial-s.sum {
		t.Errorf("balance %d, want initial %d minus the records' %d = %d", s.balance, s.initial, s.sum, s.initial-s.sum)
	}
	if want := s.initial - int64(delivered)*cost(in, out); s.balance != want {
		t.Errorf("balance %d, want initial %d minus %d answers × %d = %d", s.balance, s.initial, delivered, cost(in, out), want)
	}
}

// --- the tests ---

const loadMessages = `[{"role":"user","content":"Say hello."}]`

// loadReply answers 12 input and 7 output tokens in three pieces: cost 26.
func loadReply() fakeowui.Reply {
	r := fakeowui.DefaultReply()
	r.Delay = 20 * time.Millisecond
	return r
}

// TestPostgresStoppedMidLoad stops PostgreSQL (pg_ctl stop -m fast) under a
// steady load of streamed calls for 6s, then starts it again. Every answer
// delivered whole is charged once at its exact cost, with no expired hold;
// calls refused meanwhile are 503 JSON and never reach the provider. With
// fail_open the known user's calls go on during the outage (settled into the
// journal); with fail_closed they are refused.
func TestPostgresStoppedMidLoad(t *testing.T) {
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			pg := testpg.NewPrivate(t)
			dsn := pg.DSN(t)
			provider := fakeowui.NewProvider(t)
			provider.SetReply(loadReply())
			owui := fakeowui.NewOpenWebUI(t, provider)
			_, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
			o := newOwmon(t, owmonConfig{openwebui: owui.URL(), database: dsn, initBalance: "1000000", storeOutage: policy}, t.TempDir())
			o.start()

			body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, loadMessages)
			ctx, stopLoad := context.WithCancel(context.Background())
			defer stopLoad()
			loaded := make(chan []callResult, 1)
			go func() {
				loaded <- runLoad(ctx, 4, func(ctx context.Context) callResult { return streamCall(ctx, o.base, key, body, nil) })
			}()

			time.Sleep(2 * time.Second)
			pg.Stop(t)
			stopped := time.Now()
			t.Logf("PostgreSQL stopped at %s", stopped.Format("15:04:05.000"))
			time.Sleep(2 * time.Second)
			status, h, raw := o.health()
			if status != http.StatusServiceUnavailable || !h.Get("status").Exists() || h.Get("store_outage").String() != policy {
				t.Errorf("healthz while PostgreSQL is down: %d %s; want 503 JSON with status and store_outage %q", status, raw, policy)
			}
			time.Sleep(4 * time.Second)
			restart := time.Now()
			pg.Start(t)
			restarted := time.Now()
			t.Logf("PostgreSQL started again at %s", restarted.Format("15:04:05.000"))
			time.Sleep(2 * time.Second)
			stopLoad()
			results := <-loaded

			complete, refused, other := tally(results)
			t.Logf("%d calls: %d answered whole, %d refused 503 JSON, %d otherwise", len(results), len(complete), len(refused), len(other))
			if len(other) > 0 {
				t.Errorf("%d calls were neither answered whole nor refused with 503 JSON:%s", len(other), firstN(other, 8))
			}
			if n := len(provider.Requests()); n < len(complete) || n > len(complete)+len(other) {
				t.Errorf("the provider saw %d calls; %d answers were delivered whole and %d calls failed otherwise: refused calls reached the provider",
					n, len(complete), len(other))
			}
			var during, after []callResult
			for _, r := range results {
				switch {
				case r.started.After(stopped.Add(time.Second)) && r.ended.Before(restart):
					during = append(during, r)
				case r.started.After(restarted.Add(time.Second)):
					after = append(after, r)
				}
			}
			if len(during) == 0 {
				t.Errorf("no call started and ended while PostgreSQL was down")
			}
			for i, r := range during {
				if policy == "fail_open" && !(r.status == http.StatusOK && r.complete) {
					t.Errorf("fail_open: a call of a known user while PostgreSQL was down was not answered: %s (and %d other calls then)", r, len(during)-1)
					break
				}
				if policy == "fail_closed" && !r.refusedJSON() {
					t.Errorf("fail_closed: call %d of %d while PostgreSQL was down was not refused with 503 JSON: %s", i+1, len(during), r)
					break
				}
			}
			if _, c, _ := tallyCount(after); c == 0 {
				t.Errorf("no call was answered once PostgreSQL was back (%d calls):%s", len(after), firstN(after, 5))
			}

			s := waitLedger(t, "pgx", dsn, "alice", len(complete))
			checkDelivered(t, s, len(complete), 12, 7)
			status, h, raw = o.health()
			if status != http.StatusOK || h.Get("settlements_pending").Raw != "0" {
				t.Errorf("healthz once PostgreSQL is back and settled: %d %s; want 200 with settlements_pending 0", status, raw)
			}
		})
	}
}

// tallyCount counts results: all, answered whole, refused 503 JSON.
func tallyCount(rs []callResult) (all, complete, refused int) {
	c, r, _ := tally(rs)
	return len(rs), len(c), len(r)
}

// mountTmpfs mounts a tmpfs of size at dir until the test ends (after
// everything registered later, such as the owmon that uses it, has stopped).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v (these tests run as root)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// fillDisk writes path until the file system is full (ENOSPC) and returns
// how many bytes it wrote.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	var n int64
	for _, size := range []int{1 << 20, 64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, size)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync filler: %v", err)
	}
	return n
}

// TestSQLiteDiskFullMidLoad fills the file system of owmon's data directory
// (a 32 MiB tmpfs holding the SQLite file) under a steady load of streamed
// calls, keeps it full for 4s and frees it. Every answer delivered whole is
// charged once at its exact cost. With the journal on the full disk too,
// calls may be refused (503 JSON, never reaching the provider); with the
// journal elsewhere, every call is answered (fail_open) and still charged.
// killed_while_full adds a crash while the disk is full (testKilledWhileDiskFull).
func TestSQLiteDiskFullMidLoad(t *testing.T) {
	for _, journalElsewhere := range []bool{false, true} {
		name := "journal_on_the_full_disk"
		if journalElsewhere {
			name = "journal_elsewhere"
		}
		t.Run(name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			mountTmpfs(t, dataDir, "32m")
			provider := fakeowui.NewProvider(t)
			provider.SetReply(loadReply())
			owui := fakeowui.NewOpenWebUI(t, provider)
			_, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
			cfg := owmonConfig{openwebui: owui.URL(), initBalance: "1000000", storeOutage: "fail_open"}
			if journalElsewhere {
				cfg.journal = filepath.Join(t.TempDir(), "journal")
			}
			o := newOwmon(t, cfg, dataDir)
			o.start()

			body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, loadMessages)
			ctx, stopLoad := context.WithCancel(context.Background())
			defer stopLoad()
			loaded := make(chan []callResult, 1)
			go func() {
				loaded <- runLoad(ctx, 4, func(ctx context.Context) callResult { return streamCall(ctx, o.base, key, body, nil) })
			}()

			time.Sleep(2 * time.Second)
			filler := filepath.Join(dataDir, "filler")
			n := fillDisk(t, filler)
			full := time.Now()
			t.Logf("disk full at %s (filler %d bytes)", full.Format("15:04:05.000"), n)
			time.Sleep(4 * time.Second)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			freed := time.Now()
			time.Sleep(2 * time.Second)
			stopLoad()
			results := <-loaded

			complete, refused, other := tally(results)
			t.Logf("%d calls: %d answered whole, %d refused 503 JSON, %d otherwise", len(results), len(complete), len(refused), len(other))
			if len(other) > 0 {
				t.Errorf("%d calls were neither answered whole nor refused with 503 JSON:%s", len(other), firstN(other, 8))
			}
			if n := len(provider.Requests()); n < len(complete) || n > len(complete)+len(other) {
				t.Errorf("the provider saw %d calls; %d answers were delivered whole and %d calls failed otherwise: refused calls reached the provider",
					n, len(complete), len(other))
			}
			var whileFull []callResult
			for _, r := range results {
				if r.started.After(full) && r.ended.Before(freed) {
					whileFull = append(whileFull, r)
				}
			}
			if len(whileFull) == 0 {
				t.Errorf("no call started and ended while the disk was full")
			}
			if journalElsewhere {
				if len(refused) > 0 {
					t.Errorf("fail_open with a writable journal: %d calls were refused:%s", len(refused), firstN(refused, 5))
				}
				if _, c, _ := tallyCount(whileFull); c != len(whileFull) {
					t.Errorf("fail_open with a writable journal: only %d of %d calls made while the disk was full were answered",
						c, len(whileFull))
				}
			}

			waitLedger(t, "sqlite", sqliteDSN(dataDir), "alice", len(complete))
			o.stop()
			t.Logf("owmon logged %d lines about a full disk", o.logLines("disk is full", "no space left"))
			s, err := readLedger("sqlite", sqliteDSN(dataDir), "alice")
			if err != nil {
				t.Fatalf("read the SQLite file after owmon stopped: %v", err)
			}
			checkDelivered(t, s, len(complete), 12, 7)
		})
	}
	t.Run("killed_while_full", testKilledWhileDiskFull)
}

// testKilledWhileDiskFull: the file system of owmon's data directory (the
// SQLite file and the journal) is full; a few calls find that their
// settlements cannot be written, then ten streamed calls are sent and owmon
// is killed (SIGKILL) in the middle of them; the disk is freed and owmon
// started again. Whatever owmon did with the ten — refuse them with 503 JSON
// (neither the database nor the journal can be written) or admit them —
// every one it answered must be charged, as cancelled, after the restart.
// Of the quick calls answered while the disk was full, at most the first
// (admitted before owmon could know) may be lost to the crash.
func testKilledWhileDiskFull(t *testing.T) {
	const calls, readBeforeKill, outTokens = 10, 5, 40
	const messages = `[{"role":"user","content":"Count slowly to forty."}]`
	prompt := promptTokens(t, messages)
	dataDir := filepath.Join(t.TempDir(), "data")
	mountTmpfs(t, dataDir, "32m")
	provider := fakeowui.NewProvider(t)
	provider.SetReply(loadReply())
	owui := fakeowui.NewOpenWebUI(t, provider)
	_, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
	o := newOwmon(t, owmonConfig{openwebui: owui.URL(), initBalance: "1000000", storeOutage: "fail_open"}, dataDir)
	o.start()

	quick := fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, loadMessages)
	for range 3 { // the user is known, with a balance read
		if r := streamCall(t.Context(), o.base, key, quick, nil); !r.complete {
			t.Fatalf("a call before the disk filled: %s", r)
		}
	}
	filler := filepath.Join(dataDir, "filler")
	fillDisk(t, filler)
	var whileFull []callResult
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		r := streamCall(t.Context(), o.base, key, quick, nil)
		whileFull = append(whileFull, r)
		if r.status != http.StatusOK {
			time.Sleep(20 * time.Millisecond)
		}
	}
	quickComplete, quickRefused, quickOther := tally(whileFull)
	if len(quickOther) > 0 {
		t.Errorf("calls while the disk was full were neither answered whole nor refused with 503 JSON:%s", firstN(quickOther, 5))
	}
	provider.SetReply(fakeowui.Reply{Text: strings.Repeat(" hello", outTokens), Chunks: outTokens, Delay: 100 * time.Millisecond,
		Usage: fakeowui.Usage{PromptTokens: int(prompt), CompletionTokens: outTokens}})
	before := len(provider.Requests())
	results := streamAndKill(t, o, key, fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, messages), calls, readBeforeKill)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	admitted, maxReceived := 0, 0
	for i, r := range results {
		switch {
		case r.status == http.StatusOK:
			admitted++
			maxReceived = max(maxReceived, r.chunks)
		case !r.refusedJSON():
			t.Errorf("streamed call %d while the disk was full: %s; want 200 or 503 JSON", i, r)
		}
	}
	t.Logf("while the disk was full: %d quick calls answered, %d refused; of %d streamed calls %d admitted before the kill",
		len(quickComplete), len(quickRefused), calls, admitted)
	if n := len(provider.Requests()) - before; n != admitted {
		t.Errorf("the provider saw %d streamed calls, %d were admitted", n, admitted)
	}

	o.start()
	s := waitLedger(t, "sqlite", sqliteDSN(dataDir), "alice", 3+admitted)
	t.Logf("after the restart: %s", s)
	if s.byStatus["cancelled"] != admitted {
		t.Errorf("%d streamed calls were admitted and cut by the crash; the ledger has %s: want %d cancelled records",
			admitted, s, admitted)
	}
	if lost := 3 + len(quickComplete) - s.byStatus["completed"]; lost > 1 || lost < 0 {
		t.Errorf("%d quick answers were delivered whole (3 before the disk filled); the ledger has %d completed records",
			3+len(quickComplete), s.byStatus["completed"])
	}
	for _, r := range s.rows {
		if r.status == "cancelled" && (!r.estimated || r.input != prompt || r.output < 1 || r.output > int64(maxReceived+2) ||
			r.cost != cost(prompt, r.output)) {
			t.Errorf("record %+v; want estimated, %d input tokens, 1 to %d output tokens, cost %d for them",
				r, prompt, maxReceived+2, cost(prompt, r.output))
		}
	}
	if s.byStatus["expired"] > 0 {
		t.Errorf("%d records expired", s.byStatus["expired"])
	}
	if s.balance != s.initial-s.sum {
		t.Errorf("balance %d, want initial %d minus the records' %d = %d", s.balance, s.initial, s.sum, s.initial-s.sum)
	}
}

// TestKilledMidStream kills owmon (SIGKILL) while ten answers are streaming,
// starts it again with the same configuration, data directory and database,
// and expects each of the ten calls charged once as cancelled: estimated,
// its counted prompt, the output journaled before the crash (at least one
// token, no more than the client received), at the exact price of those
// tokens, netting its hold (never expired).
func TestKilledMidStream(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			const calls, outTokens, readBeforeKill = 10, 40, 10
			const messages = `[{"role":"user","content":"Count slowly to forty."}]`
			prompt := promptTokens(t, messages)
			provider := fakeowui.NewProvider(t)
			// " hello" is one token: the answer is 40 tokens in 40 pieces, 100 ms apart.
			provider.SetReply(fakeowui.Reply{Text: strings.Repeat(" hello", outTokens), Chunks: outTokens, Delay: 100 * time.Millisecond,
				Usage: fakeowui.Usage{PromptTokens: int(prompt), CompletionTokens: outTokens}})
			owui := fakeowui.NewOpenWebUI(t, provider)
			_, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
			dataDir := t.TempDir()
			cfg := owmonConfig{openwebui: owui.URL(), initBalance: "1000000"}
			driver, dsn := "sqlite", sqliteDSN(dataDir)
			if kind == "postgres" {
				pg := testpg.NewPrivate(t)
				cfg.database = pg.DSN(t)
				driver, dsn = "pgx", cfg.database
			}
			o := newOwmon(t, cfg, dataDir)
			o.start()

			body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, messages)
			results := streamAndKill(t, o, key, body, calls, readBeforeKill)
			killed := time.Now()
			maxReceived := 0
			for i, r := range results {
				if r.status != http.StatusOK || r.complete || r.chunks < readBeforeKill {
					t.Errorf("call %d: %s; want a 200 stream cut after at least %d pieces", i, r, readBeforeKill)
				}
				maxReceived = max(maxReceived, r.chunks)
			}
			t.Logf("killed owmon at %s; the clients received %d to %d pieces", killed.Format("15:04:05.000"),
				minChunks(results), maxReceived)
			if n := len(provider.Requests()); n != calls {
				t.Errorf("the provider saw %d calls, want %d", n, calls)
			}

			o.start()
			s := waitLedger(t, driver, dsn, "alice", calls)
			t.Logf("after the restart: %s", s)
			if len(s.rows) != calls {
				t.Errorf("%d records, want exactly one per streamed call (%d)", len(s.rows), calls)
			}
			if s.byStatus["expired"] > 0 {
				t.Errorf("%d records expired", s.byStatus["expired"])
			}
			const slack = 2 // tokens owmon forwarded that had not reached the client's reads
			for _, r := range s.rows {
				if r.status != "cancelled" || !r.estimated || r.input != prompt ||
					r.output < 1 || r.output > int64(maxReceived+slack) || r.cost != cost(prompt, r.output) {
					t.Errorf("record %+v; want cancelled, estimated, %d input tokens, 1 to %d output tokens, cost %d for them",
						r, prompt, maxReceived+slack, cost(prompt, r.output))
				}
			}
			if s.balance != s.initial-s.sum {
				t.Errorf("balance %d, want initial %d minus the records' %d = %d", s.balance, s.initial, s.sum, s.initial-s.sum)
			}
		})
	}
}

// streamAndKill starts calls concurrent streamed calls, waits until each
// has received readBeforeKill content pieces (or ended), kills owmon with
// SIGKILL and reads every call to its end.
func streamAndKill(t *testing.T, o *owmonProc, key, body string, calls, readBeforeKill int) []callResult {
	t.Helper()
	var (
		readEnough sync.WaitGroup
		wg         sync.WaitGroup
		results    = make([]callResult, calls)
	)
	readEnough.Add(calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			signalled := false
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results[i] = streamCall(ctx, o.base, key, body, func(n int) {
				if n == readBeforeKill && !signalled {
					signalled = true
					readEnough.Done()
				}
			})
			if !signalled {
				readEnough.Done()
			}
		}()
	}
	waitTimeout(t, &readEnough, 20*time.Second, fmt.Sprintf("%d calls to stream %d pieces", calls, readBeforeKill))
	o.kill()
	waitTimeout(t, &wg, 20*time.Second, "the calls to end after the kill")
	return results
}

func minChunks(rs []callResult) int {
	m := -1
	for _, r := range rs {
		if m < 0 || r.chunks < m {
			m = r.chunks
		}
	}
	return m
}

func waitTimeout(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// TestConcurrentCallsBoundedByBalance sends 100 concurrent streamed calls of
// a user whose balance covers exactly 10 of them at their full hold (the
// call's max_tokens equals the answer's output and the provider's reported
// prompt equals owmon's count, so a hold is the call's real cost). At most
// 11 may reach the provider (and all 10 the balance covers must), each is
// charged once, and the balance ends no lower than minus one call's cost.
// On SQLite, on PostgreSQL, and on two owmon processes sharing one
// PostgreSQL database (50 calls to each); and on SQLite with 10.5 holds:
// the 11th call holds the half left (a call on less than a full hold), so
// exactly 11 reach the provider; and on SQLite with calls that send no
// max_tokens, held for hold_output_tokens (set to the answer's output).
func TestConcurrentCallsBoundedByBalance(t *testing.T) {
	cases := []struct {
		name, kind string
		halfHolds  int64 // the balance, in halves of one call's hold
		// holdOutput sets hold_output_tokens to the answer's output and
		// sends no max_tokens: the hold covers that many output tokens.
		holdOutput bool
	}{
		{"sqlite", "sqlite", 20, false},
		{"postgres", "postgres", 20, false},
		{"postgres_two_instances", "postgres_two_instances", 20, false},
		// 10.5 holds: the 11th call holds the half that is left, the 12th
		// finds nothing.
		{"sqlite_half_hold_left", "sqlite", 21, false},
		{"sqlite_hold_output_tokens", "sqlite", 20, true},
	}
	for _, tc := range cases {
		kind := tc.kind
		t.Run(tc.name, func(t *testing.T) {
			const calls, outTokens = 100, 7
			covered := int(tc.halfHolds / 2)          // calls the balance covers at a full hold
			maxReached := int((tc.halfHolds + 1) / 2) // and with what is left
			prompt := promptTokens(t, loadMessages)
			callCost := cost(prompt, outTokens)
			provider := fakeowui.NewProvider(t)
			reply := fakeowui.DefaultReply() // 7 output tokens reported
			reply.Usage = fakeowui.Usage{PromptTokens: int(prompt), CompletionTokens: outTokens}
			reply.Delay = 300 * time.Millisecond // the calls overlap
			provider.SetReply(reply)
			owui := fakeowui.NewOpenWebUI(t, provider)
			_, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
			init := tc.halfHolds * callCost / 2
			if tc.halfHolds*callCost%2 != 0 {
				t.Fatalf("half a call's cost %d is not whole", callCost)
			}
			cfg := owmonConfig{openwebui: owui.URL(), initBalance: fmt.Sprintf("%d.%09d", init/nano, init%nano)}
			if tc.holdOutput {
				cfg.holdOutput = fmt.Sprint(outTokens)
			}
			driver := "sqlite"
			var dsn string
			var fronts []*owmonProc
			switch kind {
			case "sqlite":
				dataDir := t.TempDir()
				dsn = sqliteDSN(dataDir)
				fronts = append(fronts, newOwmon(t, cfg, dataDir))
			default:
				driver, dsn = "pgx", testpg.DSN(t)
				cfg.database = dsn
				fronts = append(fronts, newOwmon(t, cfg, t.TempDir()))
				if kind == "postgres_two_instances" {
					fronts = append(fronts, newOwmon(t, cfg, t.TempDir()))
				}
			}
			for _, o := range fronts {
				o.start()
			}

			body := fmt.Sprintf(`{"model":%q,"stream":true,"max_tokens":%d,"messages":%s}`, model, outTokens, loadMessages)
			if tc.holdOutput {
				body = fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, model, loadMessages)
			}
			results := make([]callResult, calls)
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					results[i] = streamCall(ctx, fronts[i%len(fronts)].base, key, body, nil)
				}()
			}
			close(gate)
			waitTimeout(t, &wg, 45*time.Second, "100 concurrent calls")

			var answered, insufficient, other []callResult
			for _, r := range results {
				switch {
				case r.status == http.StatusOK && r.complete:
					answered = append(answered, r)
				case r.status == http.StatusPaymentRequired && gjson.GetBytes(r.body, "error.type").String() == "insufficient_balance":
					insufficient = append(insufficient, r)
				default:
					other = append(other, r)
				}
			}
			reached := len(provider.Requests())
			t.Logf("hold = cost = %d per call, balance %d: %d calls answered, %d refused 402, %d otherwise; the provider saw %d",
				callCost, init, len(answered), len(insufficient), len(other), reached)
			if len(other) > 0 {
				t.Errorf("%d calls were neither answered nor refused 402 insufficient_balance:%s", len(other), firstN(other, 5))
			}
			if reached > 11 || reached > maxReached {
				t.Errorf("%d calls reached the provider; the balance covers %d at a full hold (at most %d may)", reached, covered, min(11, maxReached))
			}
			if reached < maxReached {
				t.Errorf("%d calls reached the provider; the balance covers %d at a full hold, and %d with what is left: calls were refused that it covers",
					reached, covered, maxReached)
			}
			if reached != len(answered) {
				t.Errorf("the provider saw %d calls, %d were answered", reached, len(answered))
			}
			s := waitLedger(t, driver, dsn, "alice", reached)
			if s.byStatus["completed"] != reached || len(s.rows) != reached {
				t.Errorf("%d calls reached the provider; the ledger has %s: want one completed record each", reached, s)
			}
			for _, r := range s.rows {
				if r.cost != callCost {
					t.Errorf("record %+v, want cost %d", r, callCost)
					break
				}
			}
			if s.balance < -callCost {
				t.Errorf("balance %d: below minus one call's cost (%d)", s.balance, -callCost)
			}
			if s.balance != s.initial-s.sum {
				t.Errorf("balance %d, want initial %d minus the records' %d = %d", s.balance, s.initial, s.sum, s.initial-s.sum)
			}
		})
	}
}

// TestFirstRunExplainsItself: a first run with nothing but a port logs the
// store in use (the SQLite file's full path), where the dashboard and its
// health check live, and warns of what will not work yet: no access_token
// (the dashboard is locked), no api_key (the function is refused),
// init_balance 0 in enforce mode (new users are refused until funded).
func TestFirstRunExplainsItself(t *testing.T) {
	data := t.TempDir()
	o := newOwmon(t, owmonConfig{openwebui: "http://127.0.0.1:9"}, data)
	o.start()
	logs := o.logs.String()
	db := filepath.Join(data, "caddy", "openwebui-monitor", "monitor.db")
	for _, want := range []string{
		`"msg":"openwebui_monitor started"`, `"store":"sqlite ` + db + `"`, `"dashboard":"/monitor"`,
		`"healthz":"/monitor/healthz"`, `"mode":"enforce"`, `"store_outage":"fail_open"`,
		"no access_token (ACCESS_TOKEN) is set: the dashboard at /monitor is locked",
		"no api_key (API_KEY) is set", "init_balance (INIT_BALANCE) is 0 in enforce mode",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the start-up log lacks %s", want)
		}
	}
	if strings.Count(logs, "openwebui_monitor started") != 1 {
		t.Errorf("the start-up line is logged %d times", strings.Count(logs, "openwebui_monitor started"))
	}
}
