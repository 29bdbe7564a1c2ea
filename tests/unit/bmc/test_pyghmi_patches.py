from importlib.metadata import version

from provisioner.bmc import pyghmi_patches


def test_the_patches_are_written_for_the_installed_pyghmi():
    assert version("pyghmi") == pyghmi_patches.PYGHMI_VERSION, (
        "pyghmi changed: read provisioner/bmc/pyghmi_patches.py again (each patch says how to tell it can go), "
        "then set PYGHMI_VERSION"
    )
