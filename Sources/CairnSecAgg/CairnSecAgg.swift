// CairnSecAgg: SecAgg+ client and server state machines, with no I/O inside.
// Empty until the secure-aggregation issue (#4) fills it; nothing here pretends to work.
