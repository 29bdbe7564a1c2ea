import sys

from provisioner.lab.datacentre import main

# Guarded: the import-boundary test walks the package and imports this module without meaning to run it.
if __name__ == "__main__":
    sys.exit(main())
