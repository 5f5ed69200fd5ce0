// Package testpg runs a private PostgreSQL server for tests.
//
// A test package that needs PostgreSQL calls Run from its TestMain and DSN
// (or DurableDSN) from its tests:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := testpg.DSN(t) // a fresh, empty database
//		…
//	}
//
// The first call starts a throwaway cluster (initdb + pg_ctl) in a temporary
// directory on a free loopback port; every call creates a new database in it.
// Run stops the cluster and removes the directory when the tests are done; a
// watchdog process does the same should the test binary die without Run
// finishing (a panic, a timeout, a kill).
//
// A test that stops the server (to simulate a database outage) must not
// stop the shared cluster: NewPrivate starts a cluster of its own, which it
// may Stop and Start again on the same port.
//
// The PostgreSQL server binaries must be installed (initdb, pg_ctl, postgres,
// found on PATH or in /usr/lib/postgresql/*/bin). When they are missing the
// tests fail, with a message saying so; they are never skipped.
package testpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// installHint ends every failure message.
const installHint = "run the project's test script (it installs the PostgreSQL server binaries), " +
	"or install PostgreSQL 15+ server binaries yourself (Debian/Ubuntu: apt-get install postgresql)"

// cluster is one running PostgreSQL server.
type cluster struct {
	durable bool // keep fsync, synchronous_commit and full_page_writes on

	once sync.Once
	err  error

	binDir string   // where initdb, pg_ctl and postgres are
	dir    string   // temporary directory: data, socket, log
	port   int      // loopback TCP port
	prefix []string // runs a command as the postgres OS user ("runuser -u postgres --"), when root

	mu      sync.Mutex // serialises CREATE DATABASE
	admin   *pgx.Conn
	dbCount atomic.Int64

	stopOnce sync.Once
}

var (
	fast    = &cluster{}
	durable = &cluster{durable: true}

	signalOnce sync.Once
)

// Run runs the tests and then stops any cluster they started. Use it from
// TestMain: os.Exit(testpg.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	stopAll()
	return code
}

// DSN returns the URL of a new, empty database on the shared test cluster,
// starting the cluster on first use. The cluster runs with fsync, synchronous
// commit and full-page writes off: fast, and fine for tests.
func DSN(tb testing.TB) string {
	tb.Helper()
	return fast.newDatabase(tb)
}

// DurableDSN is DSN on a second cluster that keeps PostgreSQL's durability
// settings (fsync, synchronous_commit, full_page_writes) at their defaults,
// so that benchmarks measure what production would see.
func DurableDSN(tb testing.TB) string {
	tb.Helper()
	return durable.newDatabase(tb)
}

func stopAll() {
	fast.stop()
	durable.stop()
}

func (c *cluster) newDatabase(tb testing.TB) string {
	tb.Helper()
	c.once.Do(func() {
		signalOnce.Do(watchSignals)
		c.err = c.start()
		if c.err != nil {
			c.stop()
		}
	})
	if c.err != nil {
		tb.Fatalf("testpg: cannot start a PostgreSQL test cluster: %v\n%s", c.err, installHint)
	}
	name := fmt.Sprintf("t_%d", c.dbCount.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin == nil || c.admin.IsClosed() {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err != nil {
			tb.Fatalf("testpg: connect to the test cluster: %v", err)
		}
		c.admin = conn
	}
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("testpg: create database %s: %v", name, err)
	}
	return c.url(name)
}

func (c *cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

func (c *cluster) start() error {
	bin, err := findBinDir()
	if err != nil {
		return err
	}
	c.binDir = bin

	root := os.Geteuid() == 0
	var uid, gid int
	if root {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, and initdb refuses root, but there is no \"postgres\" OS user to run it as: %w", err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return fmt.Errorf("running as root, and initdb refuses root, but runuser is missing: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.prefix = []string{"runuser", "-u", "postgres", "--"}
	}

	if c.dir, err = makeDir(root, uid, gid); err != nil {
		return err
	}
	data := filepath.Join(c.dir, "data")

	initdb := []string{filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C"}
	if out, err := c.run(2*time.Minute, initdb...); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}

	// The watchdog stops the server and removes the directory once this
	// process is gone, however it ends.
	c.startWatchdog()

	// A free port can be taken by someone else before the server binds it:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c.port, err = freePort()
		if err != nil {
			return err
		}
		if lastErr = c.pgCtlStart(); lastErr == nil {
			return nil
		}
		// pg_ctl may have left a server half started.
		_, _ = c.run(time.Minute, filepath.Join(bin, "pg_ctl"), "-D", data, "stop", "-m", "immediate")
	}
	return lastErr
}

// pgCtlStart starts the server of an initialised cluster on c.port and
// waits until it accepts connections.
func (c *cluster) pgCtlStart() error {
	opts := []string{"-p", strconv.Itoa(c.port), "-k", c.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"}
	if !c.durable {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logFile := filepath.Join(c.dir, "postgres.log")
	out, err := c.run(2*time.Minute, filepath.Join(c.binDir, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-l", logFile,
		"-w", "-t", "90", "-o", strings.Join(opts, " "), "start")
	if err == nil {
		return nil
	}
	log, _ := os.ReadFile(logFile)
	return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, tail(log, 4000))
}

// stop stops the server and removes its directory. It is safe to call on a
// cluster that never started.
func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		if c.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.admin.Close(ctx)
			cancel()
			c.admin = nil
		}
		c.mu.Unlock()
		if c.dir == "" {
			return
		}
		data := filepath.Join(c.dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			if out, err := c.run(time.Minute, filepath.Join(c.binDir, "pg_ctl"), "-D", data, "stop", "-m", "immediate", "-w"); err != nil {
				fmt.Fprintf(os.Stderr, "testpg: pg_ctl stop: %v\n%s\n", err, out)
			}
		}
		if err := os.RemoveAll(c.dir); err != nil {
			fmt.Fprintf(os.Stderr, "testpg: remove %s: %v\n", c.dir, err)
		}
	})
}

// run runs a command (as the postgres user when root) and returns its
// combined output.
func (c *cluster) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append(append([]string{}, c.prefix...), args...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = c.dir // the postgres user may not be able to enter ours
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the server running; should it inherit our pipes
	// (it should not: -l sends its output to the log), do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	return strings.TrimSpace(out.String()), err
}

// startWatchdog starts a detached shell that waits for this process to end,
// then stops the server and removes the directory. When Run has already done
// so, it does nothing harmful.
func (c *cluster) startWatchdog() {
	const script = `pid=$1; dir=$2; shift 2
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
if [ -f "$dir/data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
rm -rf "$dir"`
	args := []string{"-c", script, "testpg-watchdog", strconv.Itoa(os.Getpid()), c.dir}
	args = append(args, c.prefix...)
	args = append(args, filepath.Join(c.binDir, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "stop", "-m", "immediate")
	cmd := exec.Command("/bin/sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// No stdout/stderr: a child holding the test binary's pipes would make
	// "go test" wait for it.
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testpg: no watchdog (%v); the cluster in %s may outlive a crash\n", err, c.dir)
		return
	}
	go func() { _ = cmd.Wait() }() // reap it should it end first
}

// watchSignals stops the clusters when the test binary is interrupted.
func watchSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-ch
		stopAll()
		signal.Stop(ch)
		fmt.Fprintf(os.Stderr, "testpg: %v: stopped the PostgreSQL test clusters\n", s)
		os.Exit(2)
	}()
}

// makeDir creates the cluster's directory. As root the postgres user must be
// able to reach and own it.
func makeDir(root bool, uid, gid int) (string, error) {
	parents := []string{os.TempDir()}
	if root && os.TempDir() != "/tmp" {
		parents = append(parents, "/tmp")
	}
	var lastErr error
	for _, parent := range parents {
		dir, err := os.MkdirTemp(parent, "testpg-")
		if err != nil {
			lastErr = err
			continue
		}
		if !root {
			return dir, nil
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			lastErr = fmt.Errorf("chown %s to postgres: %w", dir, err)
			continue
		}
		// Every directory above must be searchable by the postgres user.
		out, err := exec.Command("runuser", "-u", "postgres", "--", "test", "-w", dir).CombinedOutput()
		if err != nil {
			_ = os.RemoveAll(dir)
			lastErr = fmt.Errorf("the postgres OS user cannot write to %s (is a parent directory private?): %v %s", dir, err, out)
			continue
		}
		return dir, nil
	}
	return "", lastErr
}

// libGlob is where distributions put the versions of the server binaries.
var libGlob = "/usr/lib/postgresql/*/bin"

// findBinDir finds a directory holding initdb, pg_ctl and postgres: on PATH
// first, then the highest version in /usr/lib/postgresql/*/bin.
func findBinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob(libGlob)
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin")
}

// pgVersion reads the major version from /usr/lib/postgresql/<v>/bin.
func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
