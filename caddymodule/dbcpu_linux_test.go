package caddymodule

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// postgresCPU is the CPU time the machine's PostgreSQL processes have
// used, from /proc (clock ticks of 10 ms): the database server is not the
// benchmark's process, so processCPU does not see it. A backend that
// exits between two readings takes its time with it; the pools keep
// theirs open.
func postgresCPU() time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "postgres" {
			continue
		}
		f := strings.Fields(s[end+1:]) // from field 3, state
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
		k, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
		ticks += u + k
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
