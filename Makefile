# provisioner: `make run` starts the dashboard with a demo site; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000

# Tests use the machine's PostgreSQL and Redis (see README, Tests).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/provisioner
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/15

export PIP_DISABLE_PIP_VERSION_CHECK := 1

# The soak: the deployed process layout with faults for SOAK_MINUTES (README, Soak).
SOAK_MINUTES ?= 10

.PHONY: run test e2e lint bench soak soak-short clean

$(VENV)/.installed-run: pyproject.toml requirements.lock
	@bash scripts/venv.sh "$(PYTHON)" "$(VENV)" .
	@touch $@

$(VENV)/.installed-test: pyproject.toml requirements.lock
	@bash scripts/venv.sh "$(PYTHON)" "$(VENV)" ".[dev]"
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(PY) scripts/run.py --port $(PORT)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed-test
	bash .ci/apt-install
	bash .ci/setup-cloud-init
	$(VENV)/bin/ruff check .
	PROVISIONER_DEV=1 PROVISIONER_VAR_DIR=$(CURDIR)/var/test $(PY) manage.py makemigrations --check --dry-run
	@# The deployment checklist, under the environment a production start would have (a var dir of its
	@# own: a `make run` up beside the tests must not lend it development mode through var/run.env).
	env -u PROVISIONER_DEV PROVISIONER_VAR_DIR=$(CURDIR)/var/deploy-check SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	    PROVISIONER_FIELD_KEYS="$$($(PY) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
	    ALLOWED_HOSTS=provisioner.example.net DATABASE_URL=$(TEST_DATABASE_URL) \
	    $(PY) manage.py check --deploy --fail-level WARNING
	@# The 25 slowest tests are listed at the end: CI's time budget is spent there.
	PROVISIONER_DEV=1 DEBUG=0 PROVISIONER_VAR_DIR=$(CURDIR)/var/test \
	    DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	    $(VENV)/bin/pytest --durations=25

# A real virtual machine installed over PXE and IPMI (QEMU, the memory OS, ipmi_sim): docs/memory-os.md.
# A second run beside it needs its own database (named *e2e: the run drops it), Redis database and E2E_DIR.
E2E_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/prove2e
E2E_REDIS_URL    ?= redis://127.0.0.1:6379/8
E2E_DIR          ?= $(CURDIR)/var/e2e
e2e: $(VENV)/.installed-test
	bash .ci/e2e-setup
	PROVISIONER_E2E=1 PROVISIONER_DEV=1 PROVISIONER_VAR_DIR=$(E2E_DIR)-state PROVISIONER_E2E_DIR=$(E2E_DIR) \
	    DATABASE_URL=$(E2E_DATABASE_URL) REDIS_URL=$(E2E_REDIS_URL) \
	    $(VENV)/bin/pytest tests/e2e -s -p no:cacheprovider

bench: $(VENV)/.installed-test
	$(PY) bench/bmc.py
	$(PY) bench/installs.py --machines 200 --workers 2
	$(PY) bench/agent.py

soak: $(VENV)/.installed-test
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

# What CI runs: long enough for every fault and several periods of every periodic job.
soak-short: $(VENV)/.installed-test
	$(PY) -m bench.soak --minutes 3

clean:
	rm -rf $(VENV) var
