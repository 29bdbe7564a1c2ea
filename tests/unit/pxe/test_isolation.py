import subprocess
import sys

from tests.unit.pxe.support import REPO


def test_pxe_package_imports_without_django():
    code = (
        "import sys\n"
        "import provisioner.pxe, provisioner.pxe.stock, provisioner.pxe.tftp\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"provisioner.pxe pulled in Django: {result.stdout}{result.stderr}"
