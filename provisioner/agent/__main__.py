import sys

from provisioner.agent.cli import main

# Guarded: tools that walk the package (the import-boundary test) import this module without meaning to run it.
if __name__ == "__main__":
    sys.exit(main())
