# Two commands do all set-up on a fresh machine with only python3:
#   make demo    create/reuse .venv, install recursa, run `recursa demo` (replacing an earlier demo)
#   make test    create/reuse .venv, install recursa + pytest, run the test suite
#   (make test-numerics ISA=avx2|default: the numerical tests as on a CPU with fewer instruction sets)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test test-numerics venv clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/recursa demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The numerical tests alone, as on another CPU: ISA=native|avx2|default (scripts/emulate_isa.sh)
ISA ?= native
test-numerics: $(STAMP)
	scripts/emulate_isa.sh $(ISA) $(BIN)/python -m pytest -q -m numerics tests

clean:
	rm -rf $(VENV) runs
