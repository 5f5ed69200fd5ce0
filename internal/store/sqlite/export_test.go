package sqlite

// Dialect is the store's SQL dialect, for tests that read its plans.
var Dialect = dialect
