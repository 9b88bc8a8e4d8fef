// CairnBroker: the broker library (HTTP API, access control, round coordination).
// Empty until the broker-and-node issue (#7) fills it; nothing here pretends to work.
