"""f2git as an LTI 1.3 tool: the tool's keys, the launch, deep linking, NRPS rosters."""
