import pytest

from provisioner.bmc.fake import reset_fakes


@pytest.fixture(autouse=True)
def _fresh_fakes():
    reset_fakes()
    yield
    reset_fakes()
