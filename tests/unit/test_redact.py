from audit.redact import REDACTED, redact


def test_secret_keys_are_redacted_at_any_depth():
    details = {
        "hostname": "web01",
        "password": "hunter2",
        "bmc": {"username": "admin", "bmc_password": "x", "Token": "abc"},
        "nics": [{"mac": "aa:bb:cc:dd:ee:01", "private_key": "-----BEGIN"}],
        "secret": "",
    }
    out = redact(details)
    assert out == {
        "hostname": "web01",
        "password": REDACTED,
        "bmc": {"username": "admin", "bmc_password": REDACTED, "Token": REDACTED},
        "nics": [{"mac": "aa:bb:cc:dd:ee:01", "private_key": REDACTED}],
        "secret": "",
    }
    assert details["password"] == "hunter2"  # the caller's dict is untouched
