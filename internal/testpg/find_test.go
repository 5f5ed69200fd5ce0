package testpg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinDirMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := libGlob
	libGlob = filepath.Join(t.TempDir(), "*", "bin")
	defer func() { libGlob = old }()
	_, err := findBinDir()
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("findBinDir with no binaries: %v", err)
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := findBinDir()
	if err != nil {
		t.Fatalf("%v\n%s", err, installHint)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// fatalTB records Fatalf and stops the caller, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func TestDSNFailsWithoutBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := libGlob
	libGlob = filepath.Join(t.TempDir(), "*", "bin")
	defer func() { libGlob = old }()

	c := &cluster{}
	tb := &fatalTB{}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(stopped); !ok {
					panic(r)
				}
			}
		}()
		c.newDatabase(tb)
	}()
	if !strings.Contains(tb.msg, "not found") || !strings.Contains(tb.msg, "test script") {
		t.Fatalf("message %q", tb.msg)
	}
}
