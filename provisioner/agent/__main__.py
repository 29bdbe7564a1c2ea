import sys

from provisioner.agent.cli import main

sys.exit(main())
