package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

const (
	opBegin    = "begin"
	opProgress = "progress"
	opSettle   = "settle"
	opDone     = "done"
	opRekey    = "rekey"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is one line of the file, and also the unit of change of the live
// state: the same apply serves live calls and replay, so that replaying
// the file reproduces the memory exactly.
type record struct {
	Op         string          `json:"op"`
	Key        string          `json:"key"`
	New        string          `json:"new,omitempty"`
	Seq        uint64          `json:"seq,omitempty"`
	Call       json.RawMessage `json:"call,omitempty"`
	Settlement json.RawMessage `json:"settlement,omitempty"`
	Out        int64           `json:"out,omitempty"`
}

// state is the live state: the entries by key and the next Seq to give.
type state struct {
	live    map[string]*Entry
	nextSeq uint64
}

// apply applies r and reports whether it changed anything (a record that
// changes nothing need not be written). For begin and settle it sets r.Seq
// to the key's Seq, giving a new one if the key is new and r.Seq is 0.
func (s *state) apply(r *record) bool {
	switch r.Op {
	case opBegin, opSettle:
		e := s.live[r.Key]
		if e == nil {
			seq := r.Seq
			if seq == 0 {
				seq = s.nextSeq
			}
			e = &Entry{Key: r.Key, Seq: seq}
			s.live[r.Key] = e
		}
		s.nextSeq = max(s.nextSeq, e.Seq+1)
		r.Seq = e.Seq
		if r.Op == opBegin {
			e.Call = r.Call
		} else {
			e.Settlement = r.Settlement
		}
		return true
	case opProgress:
		e := s.live[r.Key]
		if e == nil {
			return false
		}
		changed := e.Output != r.Out
		e.Output = r.Out
		return changed
	case opDone:
		if _, ok := s.live[r.Key]; !ok {
			return false
		}
		delete(s.live, r.Key)
		return true
	case opRekey:
		e := s.live[r.Key]
		if e == nil || r.New == r.Key {
			return false
		}
		delete(s.live, r.Key)
		e.Key = r.New
		if o := s.live[r.New]; o != nil {
			if e.Call == nil {
				e.Call = o.Call
			}
			if e.Settlement == nil {
				e.Settlement = o.Settlement
			}
			e.Output = max(e.Output, o.Output)
			e.Seq = min(e.Seq, o.Seq)
			e.Recovered = e.Recovered || o.Recovered
		}
		s.live[r.New] = e
		return true
	}
	return false
}

// appendRecord appends r as one line: CRC-32C of the JSON in hex, a space,
// the JSON, a newline. It is hand-rolled because it runs under the mutex on
// the hot path.
func appendRecord(dst []byte, r *record) []byte {
	start := len(dst)
	dst = append(dst, "00000000 {\"op\":\""...)
	dst = append(dst, r.Op...)
	dst = append(dst, "\",\"key\":"...)
	dst = appendString(dst, r.Key)
	if r.Op == opRekey {
		dst = append(dst, ",\"new\":"...)
		dst = appendString(dst, r.New)
	}
	if r.Seq != 0 {
		dst = append(dst, ",\"seq\":"...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
	}
	if r.Call != nil {
		dst = append(dst, ",\"call\":"...)
		dst = append(dst, r.Call...)
	}
	if r.Settlement != nil {
		dst = append(dst, ",\"settlement\":"...)
		dst = append(dst, r.Settlement...)
	}
	if r.Out != 0 {
		dst = append(dst, ",\"out\":"...)
		dst = strconv.AppendInt(dst, r.Out, 10)
	}
	dst = append(dst, '}')
	sum := crc32.Checksum(dst[start+9:], castagnoli)
	const hexdigits = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		dst[start+i] = hexdigits[sum&0xf]
		sum >>= 4
	}
	return append(dst, '\n')
}

// appendEntry appends the records that reproduce e (used by compaction).
func appendEntry(dst []byte, e *Entry) []byte {
	if e.Call != nil {
		dst = appendRecord(dst, &record{Op: opBegin, Key: e.Key, Seq: e.Seq, Call: e.Call})
	}
	if e.Settlement != nil {
		dst = appendRecord(dst, &record{Op: opSettle, Key: e.Key, Seq: e.Seq, Settlement: e.Settlement})
	}
	if e.Output != 0 {
		dst = appendRecord(dst, &record{Op: opProgress, Key: e.Key, Out: e.Output})
	}
	return dst
}

// appendString appends s as a JSON string. Keys are valid UTF-8 (checked
// by the callers), so encoding/json keeps them intact.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// decodeRecord parses and checks one line (without its newline).
func decodeRecord(line []byte) (record, error) {
	var r record
	if len(line) < 10 || line[8] != ' ' {
		return r, errors.New("malformed record")
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return r, errors.New("malformed checksum")
	}
	js := line[9:]
	if got := crc32.Checksum(js, castagnoli); uint64(got) != want {
		return r, fmt.Errorf("checksum mismatch: %08x != %08x", got, want)
	}
	if err := json.Unmarshal(js, &r); err != nil {
		return r, err
	}
	ok := r.Key != ""
	switch r.Op {
	case opBegin:
		ok = ok && r.Call != nil
	case opSettle:
		ok = ok && r.Settlement != nil
	case opRekey:
		ok = ok && r.New != ""
	case opProgress, opDone:
	default:
		ok = false
	}
	if !ok {
		return r, fmt.Errorf("invalid %q record", r.Op)
	}
	return r, nil
}
