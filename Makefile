# dpo_lab: `make test` (what CI runs) and `make reproduce` (every notebook, default profile).
# Each target creates .venv on first use and re-installs when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of torch by default (small; on the machines this was built on it comes from a local
# file). On a CUDA machine: make reproduce TORCH=torch DPO_LAB_PROFILE=gpu
TORCH  ?= torch==2.13.0
EXTRAS ?= test
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: install lint test reproduce lab student assignment grade book clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Lint, format check and the import contracts of pyproject.toml (which way the layers import).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Lint, then the unit tests + every notebook (nbmake) in the smoke profile, on a fresh results folder.
test: lint
	rm -rf build/test-results
	DPO_LAB_PROFILE=smoke DPO_LAB_RESULTS=build/test-results MPLBACKEND=Agg $(PY) -m pytest -q

# Every notebook in order, in the default profile (cpu) unless DPO_LAB_PROFILE says otherwise.
reproduce: $(STAMP)
	MPLBACKEND=Agg $(PY) -m dpo_lab.reproduce

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

student: $(STAMP)
	$(PY) -m dpo_lab.assignments

# build/course/: the nbgrader course (sources generated from the solution markers, the student release)
assignment: $(STAMP)
	$(PY) -m dpo_lab.grading release

# Autograde SUBMISSIONS (one folder per student) into build/course/grades.csv and nbgrader's feedback
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-with-one-folder-per-student" >&2; exit 2; }
	$(PY) -m dpo_lab.grading grade "$(SUBMISSIONS)"

# build/book/_build/html: every notebook executed in the smoke profile, as a website (jupyter-book, offline)
book: $(STAMP)
	$(MAKE) install EXTRAS=book
	$(PY) -m dpo_lab.book

clean:
	rm -rf build results
