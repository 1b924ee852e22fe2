"""Local stand-ins for LCO, HERMES, TNS and GCN, and a synthetic sky, for drills, demos and tests."""
