package main

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// repoRoot is the repository, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// dockerfile is xcaddy.Dockerfile's instructions, continuation lines
// joined: each entry is the instruction (upper case) and its arguments.
type instruction struct{ op, args string }

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "xcaddy.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		cur += line
		op, args, _ := strings.Cut(cur, " ")
		out = append(out, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// goModRequire returns the version go.mod requires of a module, and go.mod's
// go directive.
func goMod(t *testing.T, module string) (version, goVersion string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "go" {
			goVersion = f[1]
		}
		if len(f) >= 2 && f[0] == module {
			version = f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			version = f[2]
		}
	}
	if version == "" || goVersion == "" {
		t.Fatalf("go.mod: no version of %s or no go directive", module)
	}
	return version, goVersion
}

// versionAtLeast compares dotted numeric versions ("1.26.8" >= "1.26.0").
func versionAtLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := 0; i < len(w); i++ {
		wn, _ := strconv.Atoi(w[i])
		hn := 0
		if i < len(h) {
			hn, _ = strconv.Atoi(h[i])
		}
		if hn != wn {
			return hn > wn
		}
	}
	return true
}

func listModules(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%s list-modules: %v\n%s", bin, err, out)
	}
	var mods []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			mods = append(mods, line)
		}
	}
	return mods
}

// TestXcaddyDockerfileBuildsOwmon runs xcaddy.Dockerfile's build stage
// without Docker, following the file: the Go it names must be able to build
// go.mod (the golang image sets GOTOOLCHAIN=local), its CADDY_VERSION and
// its runtime image must be go.mod's Caddy, xcaddy is installed with its
// `go install` line (a pinned version), and its `xcaddy build` line is run
// against this working tree (the COPY destination mapped here, --output to
// a temporary file). The result must list exactly the Caddy modules of the
// binary `go build ./cmd/owmon` makes. It builds Caddy twice: slow, so
// -short skips it.
func TestXcaddyDockerfileBuildsOwmon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy twice; skipped with -short")
	}
	root := repoRoot(t)
	caddyVersion, goVersion := goMod(t, "github.com/caddyserver/caddy/v2")

	var froms, installs, builds []string
	env := map[string]string{}
	copyDest := ""
	for _, in := range readDockerfile(t) {
		switch in.op {
		case "FROM":
			froms = append(froms, strings.Fields(in.args)[0])
		case "ENV":
			k, v, ok := strings.Cut(in.args, "=")
			if !ok {
				k, v, _ = strings.Cut(in.args, " ")
			}
			env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		case "COPY":
			if f := strings.Fields(in.args); len(f) == 2 && f[0] == "." {
				copyDest = f[1]
			}
		case "RUN":
			switch {
			case strings.HasPrefix(in.args, "go install "):
				installs = append(installs, in.args)
			case strings.HasPrefix(in.args, "xcaddy build"):
				builds = append(builds, in.args)
			}
		}
	}
	if len(froms) != 2 || len(installs) != 1 || len(builds) != 1 || copyDest == "" {
		t.Fatalf("xcaddy.Dockerfile: want two stages, one `go install` of xcaddy, one `COPY . <dir>` and one `xcaddy build`; have FROM %v, installs %v, builds %v, copy %q",
			froms, installs, builds, copyDest)
	}

	// The builder: a pinned Go that can build go.mod without a toolchain download.
	m := regexp.MustCompile(`^golang:(\d+\.\d+\.\d+)-alpine$`).FindStringSubmatch(froms[0])
	if m == nil {
		t.Fatalf("builder image %q: want golang:<major.minor.patch>-alpine", froms[0])
	}
	if !versionAtLeast(m[1], goVersion) {
		t.Errorf("builder image %s has Go %s; go.mod needs %s", froms[0], m[1], goVersion)
	}
	// The Caddy xcaddy builds, and the runtime image, are go.mod's Caddy.
	if env["CADDY_VERSION"] != caddyVersion {
		t.Errorf("ENV CADDY_VERSION=%q; go.mod requires caddy %s", env["CADDY_VERSION"], caddyVersion)
	}
	if want := "caddy:" + strings.TrimPrefix(caddyVersion, "v") + "-alpine"; froms[1] != want {
		t.Errorf("runtime image %q; want %q (go.mod's Caddy)", froms[1], want)
	}

	// Install xcaddy as the Dockerfile does.
	tmp := t.TempDir()
	gobin := filepath.Join(tmp, "gobin")
	install := strings.Fields(installs[0])
	if len(install) != 3 || !regexp.MustCompile(`^github\.com/caddyserver/xcaddy/cmd/xcaddy@v\d+\.\d+\.\d+$`).MatchString(install[2]) {
		t.Fatalf("RUN %s: want `go install github.com/caddyserver/xcaddy/cmd/xcaddy@vX.Y.Z`", installs[0])
	}
	cmd := exec.Command("go", install[1:]...)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(install[1:], " "), err, out)
	}

	// Run the build line against this tree.
	args := strings.Fields(builds[0])[2:] // after "xcaddy build"
	built := filepath.Join(tmp, "caddy")
	for i := range args {
		if i > 0 && args[i-1] == "--output" {
			args[i] = built
		}
		if strings.HasSuffix(args[i], "="+copyDest) {
			args[i] = strings.TrimSuffix(args[i], copyDest) + root
		}
	}
	if !strings.Contains(strings.Join(args, " "), "github.com/openwebui-monitor/owmon="+root) {
		t.Fatalf("RUN %s: does not build --with github.com/openwebui-monitor/owmon=%s", builds[0], copyDest)
	}
	cmd = exec.Command(filepath.Join(gobin, "xcaddy"), append([]string{"build"}, args...)...)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "CADDY_VERSION="+env["CADDY_VERSION"], "GOPROXY="+moduleProxy(t))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("xcaddy build took %v", time.Since(start).Round(time.Second))

	got, want := listModules(t, built), listModules(t, owmon(t))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("xcaddy's binary lists other modules than go build ./cmd/owmon:\nxcaddy:\n%s\n\ncmd/owmon:\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, mod := range []string{"openwebui_monitor", "http.handlers.openwebui_monitor", "http.handlers.openwebui_meter"} {
		found := false
		for _, g := range got {
			found = found || g == mod
		}
		if !found {
			t.Errorf("xcaddy's binary does not list %s", mod)
		}
	}
	out, err := exec.Command(built, "version").CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte(caddyVersion)) {
		t.Errorf("xcaddy's binary: version %q (%v), want %s", out, err, caddyVersion)
	}
}

// moduleProxy serves the Go module proxy this machine uses, except that it
// answers 404 for this repository's module, as proxy.golang.org does for a
// module it does not hold: xcaddy's `go get` of a module replaced with a
// directory then takes the directory. (A proxy that answers 403 instead,
// as some filtering mirrors do, makes the go command give up.)
func moduleProxy(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}
	upstream := "https://proxy.golang.org"
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			upstream = p
			break
		}
	}
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Director = func(r *http.Request) {
		r.URL.Scheme, r.URL.Host, r.Host = target.Scheme, target.Host, target.Host
		r.URL.Path = strings.TrimSuffix(target.Path, "/") + r.URL.Path
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/github.com/openwebui-monitor/owmon/") {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// composeTool is how this machine runs Compose: the docker CLI's plugin, or
// the standalone docker-compose. Neither is a failure (scripts/test installs
// docker-compose), never a skip.
func composeTool(t *testing.T) []string {
	t.Helper()
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if err := exec.Command(c[0], append(c[1:], "version")...).Run(); err == nil {
			return c
		}
	}
	t.Fatal("neither `docker compose` nor `docker-compose` works: run scripts/test, which installs docker-compose, or apt-get install -y docker-compose")
	return nil
}

// composeRequired are the variables docker-compose.yml refuses to start without.
var composeRequired = []string{"API_KEY", "ACCESS_TOKEN", "WEBUI_SECRET_KEY", "POSTGRES_PASSWORD"}

// composeConfig runs `compose config` on the repository's file with vars
// (and nothing else of the compose variables from this environment, and no
// .env file).
func composeConfig(t *testing.T, tool []string, vars map[string]string) ([]byte, error) {
	t.Helper()
	emptyEnv := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(emptyEnv, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(tool[1:], "--env-file", emptyEnv, "-f", filepath.Join(repoRoot(t), "docker-compose.yml"), "config")
	cmd := exec.Command(tool[0], args...)
	cmd.Dir = t.TempDir()
	drop := map[string]bool{"OPENWEBUI_API_KEY": true, "INIT_BALANCE": true, "COST_ON_INLET": true}
	for _, v := range composeRequired {
		drop[v] = true
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !strings.HasPrefix(k, "COMPOSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// TestComposeFileValidates checks docker-compose.yml with the Compose this
// machine has: with the required variables set it validates; every service
// has a healthcheck of the kind it should (owmon's dashboard health,
// pg_isready, OpenWebUI's /health); every image is pinned to a version;
// owmon is built from xcaddy.Dockerfile, waits for PostgreSQL and OpenWebUI
// to be healthy, and its DATABASE_URL names the postgres service with the
// password given. Without each required variable, config fails and names
// it with the file's message.
func TestComposeFileValidates(t *testing.T) {
	tool := composeTool(t)
	vars := map[string]string{
		"API_KEY": "function-key", "ACCESS_TOKEN": "dashboard-token",
		"WEBUI_SECRET_KEY": "shared-secret", "POSTGRES_PASSWORD": "pg-pass-1",
	}
	out, err := composeConfig(t, tool, vars)
	if err != nil {
		t.Fatalf("%s config: %v\n%s", strings.Join(tool, " "), err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Image string         `yaml:"image"`
			Build map[string]any `yaml:"build"`
			// Environment is a map in both Compose v1's and v2's output.
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			DependsOn map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("config output: %v\n%s", err, out)
	}
	health := map[string]string{
		"owmon":     "http://127.0.0.1:7878/monitor/healthz",
		"postgres":  "pg_isready",
		"openwebui": "http://127.0.0.1:8080/health",
	}
	if len(cfg.Services) != len(health) {
		t.Errorf("services: %d, want owmon, openwebui and postgres", len(cfg.Services))
	}
	pinned := regexp.MustCompile(`:v?\d+(\.\d+)+(-[a-z0-9.]+)?$`) // a release: major.minor at least
	for name, want := range health {
		s, ok := cfg.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if test := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(test, want) {
			t.Errorf("%s: healthcheck %q, want one with %s", name, test, want)
		}
		if s.Build == nil && !pinned.MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
	}
	owmon := cfg.Services["owmon"]
	if owmon.Build["dockerfile"] != "xcaddy.Dockerfile" {
		t.Errorf("owmon: build %v, want xcaddy.Dockerfile", owmon.Build)
	}
	for _, dep := range []string{"postgres", "openwebui"} {
		if c := owmon.DependsOn[dep].Condition; c != "service_healthy" {
			t.Errorf("owmon depends on %s with condition %q, want service_healthy", dep, c)
		}
	}
	if got := owmon.Environment["DATABASE_URL"]; !strings.HasPrefix(got, "postgres://owmon:pg-pass-1@postgres:5432/") {
		t.Errorf("owmon: DATABASE_URL %q does not point at the postgres service", got)
	}
	for _, v := range []string{"API_KEY", "ACCESS_TOKEN", "WEBUI_SECRET_KEY"} {
		if owmon.Environment[v] != vars[v] {
			t.Errorf("owmon: %s is %q, want %q", v, owmon.Environment[v], vars[v])
		}
	}
	if _, ok := owmon.Environment["OPENWEBUI_API_KEY"]; !ok {
		t.Error("owmon: OPENWEBUI_API_KEY is not passed through")
	}
	if got := cfg.Services["openwebui"].Environment["WEBUI_SECRET_KEY"]; got != vars["WEBUI_SECRET_KEY"] {
		t.Errorf("openwebui: WEBUI_SECRET_KEY %q, want the one owmon has", got)
	}

	for _, missing := range composeRequired {
		without := map[string]string{}
		for k, v := range vars {
			if k != missing {
				without[k] = v
			}
		}
		out, err := composeConfig(t, tool, without)
		if err == nil || !strings.Contains(string(out), "set "+missing+",") {
			t.Errorf("without %s: config %v, want a failure naming it:\n%s", missing, err, out)
		}
	}
}
