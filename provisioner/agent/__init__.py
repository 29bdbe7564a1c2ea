"""The in-band agent: runs inside the in-memory OS, pulls its tasks from the control plane and reports back.

Standard library only, so it can ship as one zipapp file (see `provisioner.agent.build`). It never imports
Django or anything outside the standard library; a test checks that in a fresh interpreter.
"""

AGENT_VERSION = "1"
