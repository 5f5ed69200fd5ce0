package postgres

// SetAdoptFault makes the next adoptions fail at their last step, before
// the commit, with f's error; it returns a function that undoes it.
func SetAdoptFault(f func() error) (undo func()) {
	adoptFault = f
	return func() { adoptFault = nil }
}

// Dialect is the store's SQL dialect, for tests that read its plans.
var Dialect = dialect
