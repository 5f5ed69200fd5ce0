package wstap

import "sync"

// Message buffers come from a few pools of fixed capacities, so an idle
// connection holds none and a busy one rarely allocates. Larger buffers
// are allocated for one message and left to the collector.
var bufClasses = [...]int{1 << 10, 8 << 10, 64 << 10, 512 << 10}

var bufPools [len(bufClasses)]sync.Pool

// getBuf returns an empty buffer with capacity at least n.
func getBuf(n int) *[]byte {
	for i, c := range bufClasses {
		if n <= c {
			if p, ok := bufPools[i].Get().(*[]byte); ok {
				*p = (*p)[:0]
				return p
			}
			b := make([]byte, 0, c)
			return &b
		}
	}
	b := make([]byte, 0, n)
	return &b
}

// putBuf returns a buffer from getBuf (or grown from one) to its pool.
func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	c := cap(*p)
	for i, cc := range bufClasses {
		if c == cc {
			*p = (*p)[:0]
			bufPools[i].Put(p)
			return
		}
	}
}

// growBuf makes room for n more bytes in *p, moving to a larger pooled
// buffer when needed. It returns the (possibly new) buffer.
func growBuf(p *[]byte, n int) *[]byte {
	if p == nil {
		return getBuf(n)
	}
	need := len(*p) + n
	if need <= cap(*p) {
		return p
	}
	size := max(need, 2*cap(*p))
	q := getBuf(size)
	*q = append(*q, *p...)
	putBuf(p)
	return q
}
