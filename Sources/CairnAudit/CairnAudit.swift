// CairnAudit: the append-only RFC 6962 Merkle audit log in SQLite, checkpoints, proofs, export.
// Empty until the audit-trail issue (#5) fills it; nothing here pretends to work.
