package wstap

import (
	"compress/flate"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// DeflateParams is a negotiated permessage-deflate extension (RFC 7692).
type DeflateParams struct {
	Enabled bool
	// No context takeover: each message is compressed on its own. Without
	// it, the LZ77 window carries over from message to message.
	ServerNoContextTakeover bool // server-to-client messages
	ClientNoContextTakeover bool // client-to-server messages
	// LZ77 window sizes in bits (8–15; 15 when not negotiated).
	ServerMaxWindowBits int
	ClientMaxWindowBits int
}

// ParseExtensions reads a Sec-WebSocket-Extensions response header. An
// empty header is no extension. Anything but one permessage-deflate with
// RFC 7692 parameters is an error wrapping ErrExtension.
func ParseExtensions(h string) (DeflateParams, error) {
	p := DeflateParams{ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}
	for ext := range strings.SplitSeq(h, ",") {
		if strings.TrimSpace(ext) == "" {
			continue
		}
		parts := strings.Split(ext, ";")
		name := strings.ToLower(strings.TrimSpace(parts[0]))
		if name != "permessage-deflate" {
			return p, fmt.Errorf("%w: %q", ErrExtension, name)
		}
		if p.Enabled {
			return p, fmt.Errorf("%w: permessage-deflate twice", ErrExtension)
		}
		p.Enabled = true
		seen := map[string]bool{}
		for _, param := range parts[1:] {
			k, v, hasV := strings.Cut(param, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if seen[k] {
				return p, fmt.Errorf("%w: %s twice", ErrExtension, k)
			}
			seen[k] = true
			switch k {
			case "server_no_context_takeover", "client_no_context_takeover":
				if hasV {
					return p, fmt.Errorf("%w: %s takes no value", ErrExtension, k)
				}
				if k == "server_no_context_takeover" {
					p.ServerNoContextTakeover = true
				} else {
					p.ClientNoContextTakeover = true
				}
			case "server_max_window_bits", "client_max_window_bits":
				bits := 15
				if hasV || k == "server_max_window_bits" {
					n, err := strconv.Atoi(v)
					if err != nil || n < 8 || n > 15 {
						return p, fmt.Errorf("%w: %s=%q", ErrExtension, k, v)
					}
					bits = n
				}
				if k == "server_max_window_bits" {
					p.ServerMaxWindowBits = bits
				} else {
					p.ClientMaxWindowBits = bits
				}
			default:
				return p, fmt.Errorf("%w: permessage-deflate parameter %q", ErrExtension, k)
			}
		}
	}
	return p, nil
}

// inflater inflates the messages of one direction of one connection.
// With context takeover it keeps the last window bytes of output as the
// dictionary of the next message, and nothing else: the flate readers
// themselves are pooled across connections.
type inflater struct {
	noContext bool
	window    int
	dict      []byte
	in        tailReader
}

var flateReaders sync.Pool // io.ReadCloser that is also a flate.Resetter

// deflateTail ends a message: the 0x00 0x00 0xff 0xff the sender removed
// (RFC 7692 §7.2.2), then an empty final stored block so that the reader
// stops with io.EOF.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// tailReader reads b then deflateTail, as an io.ByteReader so that flate
// does not wrap it in a bufio.Reader.
type tailReader struct {
	b []byte
	i int
}

func (t *tailReader) Read(p []byte) (int, error) {
	total := len(t.b) + len(deflateTail)
	if t.i >= total {
		return 0, io.EOF
	}
	n := 0
	if t.i < len(t.b) {
		n = copy(p, t.b[t.i:])
	}
	if n < len(p) {
		off := max(t.i+n-len(t.b), 0)
		n += copy(p[n:], deflateTail[off:])
	}
	t.i += n
	return n, nil
}

func (t *tailReader) ReadByte() (byte, error) {
	var c byte
	switch {
	case t.i < len(t.b):
		c = t.b[t.i]
	case t.i < len(t.b)+len(deflateTail):
		c = deflateTail[t.i-len(t.b)]
	default:
		return 0, io.EOF
	}
	t.i++
	return c, nil
}

// inflate inflates one message. Over limit bytes of output, it reports the
// message skipped (and, with context takeover, still reads it to the end
// to keep the window right). The returned buffer goes back with putBuf.
func (f *inflater) inflate(src []byte, limit int) (out *[]byte, skipped bool, err error) {
	f.in = tailReader{b: src}
	in := &f.in
	defer func() { f.in = tailReader{} }()
	var fr io.ReadCloser
	if v, ok := flateReaders.Get().(io.ReadCloser); ok {
		fr = v
		if err := fr.(flate.Resetter).Reset(in, f.dict); err != nil {
			return nil, false, err
		}
	} else {
		fr = flate.NewReaderDict(in, f.dict)
	}
	defer func() {
		// A reader that failed keeps its error until Reset: still reusable.
		flateReaders.Put(fr)
	}()

	out = getBuf(min(max(len(src)*4, 512), limit+512))
	for {
		if cap(*out)-len(*out) < 512 {
			out = growBuf(out, 4096)
		}
		b := *out
		n, rerr := fr.Read(b[len(b):cap(b)])
		*out = b[:len(b)+n]
		if len(*out) > limit {
			skipped = true
			if f.noContext {
				break
			}
			// Keep only what the window needs from here on.
			if len(*out) > 2*f.window {
				k := copy(*out, (*out)[len(*out)-f.window:])
				*out = (*out)[:k]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			putBuf(out)
			return nil, false, fmt.Errorf("%w: %v", ErrInflate, rerr)
		}
	}
	if !f.noContext {
		f.keep(*out)
	}
	if skipped {
		putBuf(out)
		return nil, true, nil
	}
	return out, false, nil
}

// keep appends the message's output to the window and trims it.
func (f *inflater) keep(b []byte) {
	if len(b) >= f.window {
		if cap(f.dict) < f.window {
			f.dict = make([]byte, 0, f.window)
		}
		f.dict = append(f.dict[:0], b[len(b)-f.window:]...)
		return
	}
	if len(f.dict)+len(b) > f.window {
		drop := len(f.dict) + len(b) - f.window
		f.dict = f.dict[:copy(f.dict, f.dict[drop:])]
	}
	if cap(f.dict) < len(f.dict)+len(b) {
		d := make([]byte, len(f.dict), min(f.window, max(2*cap(f.dict), len(f.dict)+len(b), 1024)))
		copy(d, f.dict)
		f.dict = d
	}
	f.dict = append(f.dict, b...)
}
