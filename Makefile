# The two set-up commands for a fresh machine are `make demo` and `make test`; both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A second venv for ColorVideoVDP (torch + torchvision built together, no diffusers); see
# requirements-metrics.txt. `gmodiff eval --extra cvvdp` runs cvvdp there in a subprocess.
METRICS_VENV := .venv-metrics
METRICS_STAMP := $(METRICS_VENV)/.installed

.PHONY: install metrics-env demo test bench clean train-default

install: $(STAMP)

$(STAMP): requirements.txt requirements-ui.txt requirements-dev.txt pyproject.toml scripts/install-system.sh tools/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt  # includes requirements-ui.txt (the `ui` extra)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	bash scripts/install-system.sh
	touch $(STAMP)

# Rebuilt from scratch when requirements-metrics.txt changes; the self-test scores two tiny
# pairs offline, so a broken install fails here and not in the middle of an evaluation.
metrics-env: $(METRICS_STAMP)

$(METRICS_STAMP): requirements-metrics.txt
	rm -rf $(METRICS_VENV)
	$(PYTHON) -m venv $(METRICS_VENV)
	$(METRICS_VENV)/bin/python -m pip install --quiet -r requirements-metrics.txt
	HF_HUB_OFFLINE=1 $(METRICS_VENV)/bin/python -I src/gmodiff/metrics/cvvdp_worker.py --self-test
	touch $(METRICS_STAMP)

demo: install
	$(PY) -m gmodiff.cli.demo --out demo-out

# metrics-env: the cvvdp tests run in it (created once, about 2 minutes, then cached).
test: install metrics-env
	HF_HUB_OFFLINE=1 GMODIFF_REQUIRE_METRICS_ENV=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

bench: install
	$(PY) benchmarks/baselines.py

clean:
	rm -rf demo-out .pytest_cache

# The bundled default model (src/gmodiff/weights/default), on this machine's CPU: tiny DaReg
# stage 1 → tiny diffusion prior (stage 0) → DaReg 1b (2-3 stop fine-tune) → 1c (longer fine-tune,
# wider motion) → stage 2 → refiner (stage 3) → DaReg 1d (9000 more steps) → stage 2 again on it
# → the refiner fine-tuned on that DaReg with a decaying learning rate → DaReg 1e/1f (canonical
# inputs + classical-merge slot, deep-shadow data) → its mask head (2c) → DaReg 1g (curve bends
# ±2 % instead of ±6 %) → its mask head (2d) → the refiner fine-tuned on it behind a zero-started
# residual gate → DaReg 1i (2d fine-tuned with lifted photographs and 1-3 stop spacing) → its
# mask head (2f) → bundle (the gate-tuned refiner with the 2f DaReg). DEFAULT_REFINE says
# whether the bundle refines by default (see the model card for why).
# Each stage resumes from its newest checkpoint in runs/, so stopping and re-running is safe.
DEFAULT_REFINE = --no-refine
# A smoke run of the whole recipe, in a scratch clone (it writes runs/ and the bundle folder):
#   make train-default TRAIN_FLAGS="--max-steps 2" PRIOR_FLAGS="--vae-steps 1 --unet-steps 1"
TRAIN_FLAGS ?=
PRIOR_FLAGS ?=
resume_flag = $$(test -n "$$(ls $(1)/checkpoints 2>/dev/null)" && echo --resume)
train-default: install
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train prior --config configs/default-prior.yaml --no-progress $(PRIOR_FLAGS) $(call resume_flag,runs/default-prior)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1b.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1b)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1c.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1c)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 2 --config configs/default-dareg-stage2.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage2)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train refiner --config configs/default-refiner.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-refiner)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1d.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1d)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 2 --config configs/default-dareg-stage2b.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage2b)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train refiner --config configs/default-refiner-ft.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-refiner-ft)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1e.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1e)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1f.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1f)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 2 --config configs/default-dareg-stage2c.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage2c)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1g.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1g)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 2 --config configs/default-dareg-stage2d.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage2d)
	$(PY) -m gmodiff train bundle --pipeline runs/default-refiner-ft/final --dareg runs/default-dareg-stage2d/final --out runs/default-v5-dareg-bundle --no-refine
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train refiner --config configs/default-refiner-gate.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-refiner-gate)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 1 --config configs/default-dareg-stage1i.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage1i)
	OMP_NUM_THREADS=2 $(PY) -m gmodiff train dareg --stage 2 --config configs/default-dareg-stage2f.yaml --no-progress $(TRAIN_FLAGS) $(call resume_flag,runs/default-dareg-stage2f)
	$(PY) -m gmodiff train bundle --pipeline runs/default-refiner-gate/final --dareg runs/default-dareg-stage2f/final --out src/gmodiff/weights/default $(DEFAULT_REFINE)
