package body

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// request is a server-side request whose body is src, declaring size bytes.
func request(src io.Reader, size int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", src)
	r.ContentLength = size
	return r
}

func TestReadReturnsTheBody(t *testing.T) {
	for _, n := range []int{0, 1, initialCap - 1, initialCap, initialCap + 1, 3*initialCap + 7, 1 << 20} {
		want := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		for _, declared := range []int64{int64(n), -1} {
			got, err := Read(httptest.NewRecorder(), request(bytes.NewReader(want), declared), 2<<20, 0)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes (declared %d): got %d bytes, %v", n, declared, len(got), err)
			}
			// A declared length is grown to, never past.
			if declared >= 0 && int64(cap(got)) > declared+1 && cap(got) > 512 {
				t.Fatalf("%d bytes declared: buffer of %d", n, cap(got))
			}
		}
	}
}

// countingReader counts what was read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestReadKeepsTheCap(t *testing.T) {
	const max = 64 << 10
	src := &countingReader{r: strings.NewReader(strings.Repeat("x", 4*max))}
	if _, err := Read(httptest.NewRecorder(), request(src, 4*max), max, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("declared 4×max: %v", err)
	}
	if src.n != 0 {
		t.Fatalf("a declared length over the cap read %d bytes", src.n)
	}
	// Undeclared: refused after reading at most max+1 bytes.
	if _, err := Read(httptest.NewRecorder(), request(src, -1), max, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("undeclared 4×max: %v", err)
	}
	if src.n > max+1 {
		t.Fatalf("read %d bytes for a cap of %d", src.n, max)
	}
	if got, err := Read(httptest.NewRecorder(), request(strings.NewReader(strings.Repeat("x", max)), max), max, 0); err != nil || len(got) != max {
		t.Fatalf("exactly max: %d bytes, %v", len(got), err)
	}
}

// TestReadGrowsWithTheBytesThatArrive: a body that declares 32 MiB and
// sends 100 bytes costs a small buffer, not 32 MiB.
func TestReadGrowsWithTheBytesThatArrive(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := Read(httptest.NewRecorder(), request(strings.NewReader(strings.Repeat("x", 100)), 32<<20), 32<<20, 0)
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 100 {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("reading 100 bytes of a body declaring 32 MiB allocated %d bytes", alloc)
	}
}

// stall sends a request's headers, declaring size bytes, and the first
// bytes of its body, then nothing. It returns the connection.
func stall(t *testing.T, url string, size int64) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":", size)
	return conn
}

// TestReadTimesOut: over real HTTP, a body that stops arriving fails with
// ErrTimeout at the limit, and the server closes the connection after the
// answer instead of waiting for the rest.
func TestReadTimesOut(t *testing.T) {
	const limit = 300 * time.Millisecond
	for _, size := range []int64{1000, 32 << 20} { // small bodies are drained after the answer, large ones not
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			errs := make(chan error, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := Read(w, r, 32<<20, limit)
				errs <- err
				w.WriteHeader(http.StatusRequestTimeout)
			}))
			defer srv.Close()
			start := time.Now()
			conn := stall(t, srv.URL, size)
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if err := <-errs; !errors.Is(err, ErrTimeout) {
				t.Fatalf("Read: %v, want ErrTimeout", err)
			}
			if took < limit || took > limit+2*time.Second {
				t.Fatalf("answered after %v, limit %v", took, limit)
			}
			if !resp.Close {
				t.Fatalf("the answer keeps the connection: %v", resp.Header)
			}
			// The server does not wait for the rest of the body.
			io.Copy(io.Discard, resp.Body)
			if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("connection still open after the answer: %d, %v", n, err)
			}
			if took := time.Since(start); took > limit+2*time.Second {
				t.Fatalf("connection closed after %v", took)
			}
		})
	}
}

// TestDeadlineDoesNotOutliveTheBody: the answer after a body read streams
// for longer than the limit and the server's own read timeout, and its
// request stays alive, with a body and without one.
func TestDeadlineDoesNotOutliveTheBody(t *testing.T) {
	const limit = 200 * time.Millisecond
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := Read(w, r, 1<<20, limit); err != nil {
			t.Errorf("Read: %v", err)
			return
		}
		for i := range 6 {
			time.Sleep(limit / 2)
			if err := r.Context().Err(); err != nil {
				fmt.Fprintf(w, "cancelled after %d chunks: %v\n", i, err)
				return
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			http.NewResponseController(w).Flush()
		}
	}))
	srv.Config.ReadTimeout = limit
	srv.Start()
	defer srv.Close()
	for _, body := range []string{`{"model":"m"}`, ""} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !strings.HasSuffix(string(got), "chunk 5\n") {
			t.Fatalf("body %q: answer %q, %v", body, got, err)
		}
	}
}

// TestReadTimesOutWithoutDeadlines: a writer that cannot set deadlines
// still gets ErrTimeout at the limit, and the body is closed.
func TestReadTimesOutWithoutDeadlines(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte(`{"model":`))
	start := time.Now()
	_, err := Read(httptest.NewRecorder(), request(pr, 1000), 1<<20, 200*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read: %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := pw.Write([]byte("x")); errors.Is(err, io.ErrClosedPipe) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the body was not closed")
		}
	}
}
