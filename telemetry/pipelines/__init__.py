"""One pipeline per vehicle kind: its record type, checks, storage and detection."""
