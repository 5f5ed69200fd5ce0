package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"

	"github.com/openwebui-monitor/owmon/internal/fakeowui"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// owmon builds the binary the README tells operators to build.
func owmon(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "owmon-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "owmon")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func TestBinaryIsCaddyWithOurModules(t *testing.T) {
	out, err := exec.Command(owmon(t), "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	for _, m := range []string{"openwebui_monitor", "http.handlers.openwebui_monitor", "http.handlers.reverse_proxy", "http.encoders.gzip"} {
		if !bytes.Contains(out, []byte(m+"\n")) {
			t.Errorf("list-modules does not list %s", m)
		}
	}
	out, err = exec.Command(owmon(t), "version").CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("v2.11.")) {
		t.Fatalf("version: %v %s", err, out)
	}
}

func TestAdaptAndRunRefuseBadValues(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "Caddyfile")
	os.WriteFile(cf, []byte("{\n\topenwebui_monitor {\n\t\tcost_on_inlet gpt-4o:plenty\n\t}\n}\n:0 {\n\topenwebui_monitor\n}\n"), 0o644)
	out, err := exec.Command(owmon(t), "adapt", "--config", cf).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("cost_on_inlet")) || !bytes.Contains(out, []byte("gpt-4o:plenty")) {
		t.Fatalf("adapt accepted or did not name the value: %v\n%s", err, out)
	}
	// A bad environment fallback stops `run` with the option's name.
	cmd := exec.Command(owmon(t), "run", "--config", "../../Caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "OWMON_PORT=0", "DEFAULT_MODEL_OUTPUT_PRICE=-2")
	out, err = runFor(t, cmd, 30*time.Second)
	if err == nil || !bytes.Contains(out, []byte("default_output_price")) || !bytes.Contains(out, []byte("-2")) {
		t.Fatalf("run accepted a negative price or did not name it: %v\n%s", err, out)
	}
}

func runFor(t *testing.T, cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return out.Bytes(), nil
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunRootCaddyfile runs `owmon run` with the repository's Caddyfile, as
// the README does, on SQLite (no database configured) and on PostgreSQL.
func TestRunRootCaddyfile(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			openwebui := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"from":"openwebui"}`)
			}))
			defer openwebui.Close()
			dataDir := t.TempDir()
			port := freePort(t)
			env := []string{"XDG_DATA_HOME=" + dataDir, fmt.Sprint("OWMON_PORT=", port), "OPENWEBUI_DOMAIN=" + openwebui.URL,
				"API_KEY=function-key", "INIT_BALANCE=5"}
			dsn := ""
			if kind == "postgres" {
				dsn = testpg.DSN(t)
				env = append(env, "DATABASE_URL="+dsn)
			}
			cmd := exec.Command(owmon(t), "run", "--config", "../../Caddyfile")
			cmd.Env = append(os.Environ(), env...)
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
				if t.Failed() {
					t.Logf("owmon output:\n%s", logs.String())
				}
			}()
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			waitUp(t, base)

			answer := call(t, base+"/api/v1/inlet", `{"user":{"id":"dave","name":"Dave"},"body":{"model":"gpt-4o","messages":[]}}`)
			if answer.Get("balance").Raw != "5" {
				t.Fatalf("inlet %s", answer.Raw)
			}
			answer = call(t, base+"/api/v1/outlet", `{"user":{"id":"dave","name":"Dave"},"body":{"model":"gpt-4o","chat_id":"c","id":"m",
				"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello","usage":{"prompt_tokens":500000,"completion_tokens":500000}}]}}`)
			if answer.Get("totalCost").Raw != "60" || answer.Get("newBalance").Raw != "-55" {
				t.Fatalf("outlet %s", answer.Raw)
			}
			resp, err := http.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != `{"from":"openwebui"}` {
				t.Fatalf("not proxied to OpenWebUI: %s", b)
			}

			switch kind {
			case "sqlite":
				if _, err := os.Stat(filepath.Join(dataDir, "caddy", "openwebui-monitor", "monitor.db")); err != nil {
					t.Fatalf("SQLite file not created in Caddy's data directory: %v", err)
				}
			case "postgres":
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				var balance int64
				if err := conn.QueryRow(context.Background(), "SELECT balance FROM users WHERE id = 'dave'").Scan(&balance); err != nil || balance != -55_000_000_000 {
					t.Fatalf("PostgreSQL holds balance %d: %v", balance, err)
				}
			}
		})
	}
}

func waitUp(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/api/v1/inlet"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("owmon did not start listening within 60s")
}

func call(t *testing.T, url, body string) gjson.Result {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer function-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	return gjson.ParseBytes(b)
}

// startOwmon runs `owmon run` with caddyfile and env until the test ends.
func startOwmon(t *testing.T, caddyfile string, env ...string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(owmon(t), "run", "--config", path)
	cmd.Env = append(os.Environ(), append([]string{"XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, env...)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("owmon output:\n%s", logs.String())
		}
	})
}

// TestFrontAndMeterOnTwoInstances: the README's front-plus-provider
// deployment split over two owmon processes sharing one PostgreSQL: the
// front on one, the provider meter on the other. OpenWebUI forwards the
// user and chat to the provider, not the message. A web chat turn and an
// API-key call are each charged exactly once, by the provider meter.
func TestFrontAndMeterOnTwoInstances(t *testing.T) {
	const sharedKey = "meter-shared-key-0123456789"
	dsn := testpg.DSN(t)
	provider := fakeowui.NewProvider(t)
	owui := fakeowui.NewOpenWebUI(t, provider)
	jwt, key := owui.AddUser("alice", "alice@example.com", "Alice", "user")
	frontPort, meterPort := freePort(t), freePort(t)
	global := fmt.Sprintf(`{
	admin off
	auto_https off
	openwebui_monitor {
		database %s
		default_input_price 1000000
		default_output_price 2000000
		init_balance 1000
		hold_output_tokens 16
		provider_key %s
	}
}
`, dsn, sharedKey)
	startOwmon(t, global+fmt.Sprintf(`
:%d {
	openwebui_monitor
	reverse_proxy %s
}
`, frontPort, owui.URL()), "OPENWEBUI_DOMAIN="+owui.URL(), "WEBUI_SECRET_KEY="+owui.Secret())
	startOwmon(t, global+fmt.Sprintf(`
:%d {
	openwebui_meter
	reverse_proxy %s {
		header_up Authorization "Bearer sk-real-provider-key"
	}
}
`, meterPort, provider.URL()))
	front := fmt.Sprintf("http://127.0.0.1:%d", frontPort)
	meter := fmt.Sprintf("http://127.0.0.1:%d", meterPort)
	waitUp(t, front)
	waitUp(t, meter)
	owui.SetOptions(fakeowui.OpenWebUIOptions{OpenAIURL: meter + "/v1", ProviderKey: sharedKey, ForwardUserInfo: true, RunBackground: true})

	post := func(token, body string) gjson.Result {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, front+"/api/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("front answered %d %s", resp.StatusCode, b)
		}
		return gjson.ParseBytes(b)
	}
	// A web-UI turn, answered in the background, and an API-key call.
	if got := post(jwt, `{"model":"gpt-4o","stream":true,"session_id":"s1","chat_id":"c1","id":"a1",
		"messages":[{"role":"user","content":"Say hello."}]}`); !got.Get("status").Bool() {
		t.Fatalf("web chat: %s", got.Raw)
	}
	owui.WaitBackground()
	post(key, `{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"Say hello."}]}`)
	for _, r := range provider.Requests() {
		if r.Header.Get("X-Openwebui-Message-Id") != "" {
			t.Fatalf("the fake OpenWebUI forwarded a message id")
		}
	}

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	type rec struct {
		source, status, chat string
		cost                 int64
	}
	var recs []rec
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs = recs[:0]
		rows, err := conn.Query(context.Background(), `SELECT source, status, chat_id, cost FROM usage_records WHERE user_id = 'alice' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		pending := false
		for rows.Next() {
			var r rec
			if err := rows.Scan(&r.source, &r.status, &r.chat, &r.cost); err != nil {
				t.Fatal(err)
			}
			pending = pending || r.status == "pending"
			recs = append(recs, r)
		}
		rows.Close()
		if len(recs) >= 2 && !pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The fake provider reports 12 input and 7 output tokens: 26 per call.
	if len(recs) != 2 || recs[0].source != "provider" || recs[1].source != "provider" ||
		recs[0].cost != 26_000_000_000 || recs[1].cost != 26_000_000_000 {
		t.Fatalf("records %+v, want two provider records of 26", recs)
	}
	var balance int64
	if err := conn.QueryRow(context.Background(), "SELECT balance FROM users WHERE id = 'alice'").Scan(&balance); err != nil || balance != 948_000_000_000 {
		t.Fatalf("balance %d %v, want 948", balance, err)
	}
	if n := len(provider.Requests()); n != 2 {
		t.Fatalf("the provider saw %d calls", n)
	}
}
