"""The shared order service: the only code that writes. Each function takes a connection
first; the caller owns the transaction (`Database.connection()` commits on success)."""
