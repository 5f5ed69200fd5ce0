package fakeowui

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// pythonWith returns a python3 that can import module, trying the one on
// PATH first and then the system's (Debian's python3-* packages install
// into /usr/bin/python3, which a pyenv or venv python3 on PATH does not
// see). Not finding one fails the test: scripts/test installs python3-jwt,
// and these tests are the only check that the fake reads tokens and bodies
// as OpenWebUI's Python does.
func pythonWith(t *testing.T, module string) string {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3", "/usr/local/bin/python3")
	for _, py := range candidates {
		if exec.Command(py, "-c", "import "+module).Run() == nil {
			return py
		}
	}
	t.Fatalf("no python3 that can import %s (tried %s); install it (Debian: apt-get install python3-jwt, as scripts/test does)",
		module, strings.Join(candidates, ", "))
	return ""
}

// runPython runs script with input as JSON on stdin and decodes its stdout
// (JSON) into out.
func runPython(t *testing.T, py, script string, input, out any) {
	t.Helper()
	runPythonLines(t, py, script, input, out)
}

// runPythonLines runs script with input as JSON on its standard input and
// reads each line it prints, a JSON document, into the next of outs.
func runPythonLines(t *testing.T, py, script string, input any, outs ...any) {
	t.Helper()
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(mustJSON(input))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", py, err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	if len(lines) != len(outs) {
		t.Fatalf("python printed %d lines, want %d: %q", len(lines), len(outs), stdout.String())
	}
	for i, out := range outs {
		if err := json.Unmarshal(lines[i], out); err != nil {
			t.Fatalf("python output %q: %v", lines[i], err)
		}
	}
}
