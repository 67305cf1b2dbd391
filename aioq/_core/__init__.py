"""Pure data: the wire format, options and their resolution. No I/O here."""
