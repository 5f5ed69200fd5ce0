// Package money holds exact amounts of the operator's currency.
//
// An Amount counts nano-units (1e-9 of a currency unit) in an int64, so it
// spans ±9.2 billion units with no rounding for any price a model has today
// (a token at 0.15 per 1M tokens costs 150 nano-units, exactly). Floating
// point never touches an Amount: values come in as decimal text and go out
// as decimal text.
package money

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Amount is a sum of money in nano-units.
type Amount int64

// Scale is the number of nano-units in one currency unit.
const Scale = 1_000_000_000

// Digits is the number of decimal places an Amount keeps.
const Digits = 9

// Units returns n whole currency units.
func Units(n int64) Amount { return Amount(n * Scale) }

// ErrSyntax reports text that is not a decimal number.
var ErrSyntax = errors.New("not a decimal number")

// ErrPrecision reports a number with more decimal places than an Amount keeps.
var ErrPrecision = fmt.Errorf("more than %d decimal places", Digits)

// ErrRange reports a number too large for an Amount.
var ErrRange = errors.New("out of range")

// Parse reads a decimal number such as "12", "-0.5", "1.25e-3" or "+3." into
// an exact Amount. It refuses numbers that need more than nine decimal places
// rather than rounding them silently.
func Parse(s string) (Amount, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, ErrSyntax
	}
	neg := false
	switch t[0] {
	case '-':
		neg = true
		t = t[1:]
	case '+':
		t = t[1:]
	}
	mant, exp := t, 0
	if i := strings.IndexAny(t, "eE"); i >= 0 {
		mant = t[:i]
		e, err := strconv.Atoi(t[i+1:])
		if err != nil || e > 40 || e < -40 {
			return 0, ErrSyntax
		}
		exp = e
	}
	intPart, frac, hasDot := strings.Cut(mant, ".")
	if intPart == "" && frac == "" || (!hasDot && intPart == "") {
		return 0, ErrSyntax
	}
	digits := intPart + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, ErrSyntax
		}
	}
	// value = digits × 10^(exp - len(frac)); in nano-units shift by Digits more.
	shift := exp - len(frac) + Digits
	digits = strings.TrimLeft(digits, "0")
	if shift < 0 {
		cut := len(digits) + shift
		if cut < 0 {
			cut = 0
		}
		if strings.Trim(digits[cut:], "0") != "" {
			return 0, ErrPrecision
		}
		digits = digits[:cut]
	} else {
		if len(digits) > 0 && len(digits)+shift > 19 {
			return 0, ErrRange
		}
		digits += strings.Repeat("0", shift)
	}
	if digits == "" || strings.Trim(digits, "0") == "" {
		return 0, nil
	}
	u, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || u > math.MaxInt64 && !(neg && u == 1<<63) {
		return 0, ErrRange
	}
	if neg {
		return Amount(-u), nil // also right for the smallest Amount, -2^63
	}
	return Amount(u), nil
}

// String formats a as the shortest exact decimal: "12.5", "-0.000000001", "0".
func (a Amount) String() string {
	return string(a.AppendDecimal(nil))
}

// AppendDecimal appends the shortest exact decimal form of a to b.
func (a Amount) AppendDecimal(b []byte) []byte {
	u := uint64(a)
	if a < 0 {
		b = append(b, '-')
		u = uint64(-a) // also right for math.MinInt64
	}
	b = strconv.AppendUint(b, u/Scale, 10)
	frac := u % Scale
	if frac == 0 {
		return b
	}
	var buf [Digits]byte
	for i := Digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	end := Digits
	for end > 0 && buf[end-1] == '0' {
		end--
	}
	b = append(b, '.')
	return append(b, buf[:end]...)
}

// MarshalJSON writes a as a JSON number with its exact decimal digits.
func (a Amount) MarshalJSON() ([]byte, error) { return a.AppendDecimal(nil), nil }

// UnmarshalJSON reads a JSON number, or a string holding one.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return errors.New("must be a number, not null")
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Add returns a+b, saturating instead of wrapping around.
func (a Amount) Add(b Amount) Amount {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// AddChecked returns a+b, and false when the sum does not fit in an Amount.
func (a Amount) AddChecked(b Amount) (Amount, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// SubChecked returns a-b, and false when the difference does not fit in an
// Amount.
func (a Amount) SubChecked(b Amount) (Amount, bool) {
	d := a - b
	if (b > 0 && d > a) || (b < 0 && d < a) {
		return 0, false
	}
	return d, true
}

// Max and Min are the largest and the smallest Amounts.
const (
	Max Amount = math.MaxInt64
	Min Amount = math.MinInt64
)
