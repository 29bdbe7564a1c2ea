"""The demo lab: simulated hardware that behaves like the real thing on the wire (no Django here)."""
