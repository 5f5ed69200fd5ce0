package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestREADMEFunctionOnlyCaddyfile runs the README's function-only
// Caddyfile as written (the port from OWMON_PORT): the function's inlet
// and outlet answer, the dashboard and its health answer, and only what
// the monitor does not serve reaches `respond 404`. (Caddy orders respond
// before reverse_proxy; openwebui_monitor must come before respond.)
func TestREADMEFunctionOnlyCaddyfile(t *testing.T) {
	port := freePort(t)
	t.Setenv("OWMON_PORT", fmt.Sprint(port))
	t.Setenv("DATABASE_URL", "sqlite://"+filepath.Join(t.TempDir(), "function-only.db"))
	t.Setenv("API_KEY", testAPIKey)
	t.Setenv("ACCESS_TOKEN", "admin-secret")
	t.Setenv("INIT_BALANCE", "5")
	cf := readmeCaddyfile(t, "function-only")
	cf = strings.Replace(cf, "{\n", "{\n\tadmin off\n\tauto_https off\n\tlog {\n\t\toutput discard\n\t}\n", 1)
	run(t, cf)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/inlet", strings.NewReader(
		`{"user":{"id":"u1","email":"u1@example.com","name":"U1","role":"user"},"body":{"model":"gpt-4o","messages":[]}}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || gjson.GetBytes(b, "balance").Float() != 5 {
		t.Fatalf("inlet: %d %s", resp.StatusCode, b)
	}
	for path, want := range map[string]int{"/monitor/healthz": 200, "/monitor/login": 200, "/elsewhere": 404} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// readmeBlock is one fenced code block of a README: the marker comment on
// the line before it (`<!-- caddyfile: function-only -->` gives
// "caddyfile: function-only"; "" without one), its language tag and its
// content, the final newline included.
type readmeBlock struct {
	Marker, Lang, Content string
}

// readmeFence matches a fenced code block (indented or not, as in a list
// item) and the marker comment right before it.
var readmeFence = regexp.MustCompile("(?ms)(?:^<!-- ([^\n]*?) -->\n)?^[ \t]*```([^`\n]*)\n(.*?)^[ \t]*```[ \t]*$")

// readmeBlocks returns the fenced code blocks of the Markdown file at path,
// in order. It is the one parser of README code blocks: the tests that run
// them and TestChineseREADMEInStep both use it.
func readmeBlocks(t testing.TB, path string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	for _, m := range readmeFence.FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, readmeBlock{Marker: m[1], Lang: strings.TrimSpace(m[2]), Content: m[3]})
	}
	return blocks
}

// readmeCaddyfile returns the README's Caddyfile after the marker
// `<!-- caddyfile: name -->`.
func readmeCaddyfile(t testing.TB, marker string) string {
	t.Helper()
	for _, b := range readmeBlocks(t, "../README.md") {
		if b.Lang == "caddyfile" && b.Marker == "caddyfile: "+marker {
			return b.Content
		}
	}
	t.Fatalf("README has no caddyfile block marked %q", marker)
	return ""
}

// readmeHeading is a Markdown heading outside the code blocks.
type readmeHeading struct {
	Level int
	Text  string
}

// readmeHeadingLevel is the level of a Markdown heading line (`## Storage`
// is 2), or 0 for any other line.
func readmeHeadingLevel(line string) int {
	l := len(line) - len(strings.TrimLeft(line, "#"))
	if l >= 1 && l <= 6 && strings.HasPrefix(line[l:], " ") {
		return l
	}
	return 0
}

// readmeProse returns the Markdown with its code blocks removed (a shell
// comment is not a heading), and its headings in order.
func readmeProse(text string) (string, []readmeHeading) {
	prose := readmeFence.ReplaceAllString(text, "")
	var headings []readmeHeading
	for _, line := range strings.Split(prose, "\n") {
		if l := readmeHeadingLevel(line); l > 0 {
			headings = append(headings, readmeHeading{l, strings.TrimSpace(line[l:])})
		}
	}
	return prose, headings
}

// readmeSection returns the prose under the n-th heading of the given level
// (from 0) up to the next heading of that level or above.
func readmeSection(prose string, level, n int) string {
	var b strings.Builder
	seen, in := -1, false
	for _, line := range strings.Split(prose, "\n") {
		if l := readmeHeadingLevel(line); l > 0 && l <= level {
			if in {
				break
			}
			if l == level {
				seen++
				in = seen == n
			}
			continue
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestChineseREADMEInStep keeps README.zh-CN.md, the Chinese translation,
// in step with README.md:
//
//   - the same fenced code blocks in the same order, each with the same
//     marker comment, language tag and content, byte for byte;
//   - the same number of headings at each level (in the same order, so the
//     n-th section of one is the n-th of the other);
//   - every option of README.md's Configuration table in a row of the
//     Chinese Configuration table;
//   - each links to the other, and the Chinese README's relative links
//     resolve from the repository root.
//
// Because the code blocks are identical, the tests that run README.md's
// Caddyfiles and commands (TestREADMECaddyfilesAdapt,
// TestREADMEFunctionOnlyCaddyfile, the front-plus-provider stack built from
// readmeCaddyfile, and cmd/owmon's tests that build the binary and run the
// repository's Caddyfile as the README does) cover the Chinese README's too.
// When README.md changes, the failures below say which blocks and headings
// the translation lacks.
func TestChineseREADMEInStep(t *testing.T) {
	const en, zh = "../README.md", "../README.zh-CN.md"
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	enText, zhText := read(en), read(zh)
	enBlocks, zhBlocks := readmeBlocks(t, en), readmeBlocks(t, zh)
	enProse, enHeadings := readmeProse(enText)
	zhProse, zhHeadings := readmeProse(zhText)

	// Code blocks: first name what is missing or stale, then the order.
	under := func(text string, i int) string { // the heading block i comes under
		prose, _ := readmeProse(text[:readmeFence.FindAllStringIndex(text, -1)[i][0]])
		last := ""
		for _, line := range strings.Split(prose, "\n") {
			if readmeHeadingLevel(line) > 0 {
				last = line
			}
		}
		return last
	}
	count := func(bs []readmeBlock) map[readmeBlock]int {
		m := map[readmeBlock]int{}
		for _, b := range bs {
			m[b]++
		}
		return m
	}
	enCount, zhCount := count(enBlocks), count(zhBlocks)
	blocksDiffer := false
	for i, b := range enBlocks {
		if zhCount[b] < enCount[b] {
			blocksDiffer = true
			t.Errorf("README.md's code block %d (```%s, marker %q, under %q) is not in README.zh-CN.md:\n%s", i+1, b.Lang, b.Marker, under(enText, i), b.Content)
		}
	}
	for i, b := range zhBlocks {
		if enCount[b] < zhCount[b] {
			blocksDiffer = true
			t.Errorf("README.zh-CN.md's code block %d (```%s, marker %q, under %q) is not in README.md (changed or removed there):\n%s", i+1, b.Lang, b.Marker, under(zhText, i), b.Content)
		}
	}
	if !blocksDiffer {
		for i := range enBlocks {
			if enBlocks[i] != zhBlocks[i] {
				t.Errorf("code block %d: README.md has ```%s under %q, README.zh-CN.md has ```%s under %q: the blocks are in another order", i+1, enBlocks[i].Lang, under(enText, i), zhBlocks[i].Lang, under(zhText, i))
				break
			}
		}
	}

	// Headings, level by level.
	levels := func(hs []readmeHeading) []int {
		n := make([]int, 6)
		for _, h := range hs {
			n[h.Level-1]++
		}
		return n
	}
	if fmt.Sprint(levels(enHeadings)) != fmt.Sprint(levels(zhHeadings)) {
		var b strings.Builder
		for i := 0; i < len(enHeadings) || i < len(zhHeadings); i++ {
			var e, z string
			if i < len(enHeadings) {
				e = strings.Repeat("#", enHeadings[i].Level) + " " + enHeadings[i].Text
			}
			if i < len(zhHeadings) {
				z = strings.Repeat("#", zhHeadings[i].Level) + " " + zhHeadings[i].Text
			}
			fmt.Fprintf(&b, "  %-50s | %s\n", e, z)
		}
		t.Errorf("headings per level: README.md %v, README.zh-CN.md %v (levels 1-6); side by side:\n%s", levels(enHeadings), levels(zhHeadings), b.String())
	}

	// The Configuration table: the Chinese section at the same place.
	n, found := -1, false
	for _, h := range enHeadings {
		if h.Level == 2 {
			n++
			if found = h.Text == "Configuration"; found {
				break
			}
		}
	}
	if !found {
		t.Fatal("README.md has no \"## Configuration\" section")
	}
	option := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	options := option.FindAllStringSubmatch(readmeSection(enProse, 2, n), -1)
	if len(options) < 20 {
		t.Fatalf("README.md's Configuration table has %d options", len(options))
	}
	zhOptions := map[string]bool{}
	for _, m := range option.FindAllStringSubmatch(readmeSection(zhProse, 2, n), -1) {
		zhOptions[m[1]] = true
	}
	for _, m := range options {
		if !zhOptions[m[1]] {
			t.Errorf("option %q of README.md's Configuration table is not in README.zh-CN.md's (its level-2 section %d)", m[1], n+1)
		}
	}

	// Links: each to the other; the Chinese ones resolve.
	if !strings.Contains(enProse, "](README.zh-CN.md)") {
		t.Error("README.md does not link to README.zh-CN.md")
	}
	if !strings.Contains(zhProse, "](README.md)") {
		t.Error("README.zh-CN.md does not link to README.md")
	}
	for _, m := range regexp.MustCompile(`\]\(([^)\s]+)\)`).FindAllStringSubmatch(zhProse, -1) {
		target, _, _ := strings.Cut(m[1], "#")
		if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", target)); err != nil {
			t.Errorf("README.zh-CN.md links to %s, which does not exist", m[1])
		}
	}
}
