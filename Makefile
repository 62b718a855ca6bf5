# kvmops.kvm — two commands for a fresh Debian/Ubuntu machine (run as root):
#   make demo   set everything up, then run playbooks/demo.yml against localhost
#   make test   set everything up, then run every test tier
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(VENV)/collections
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export ANSIBLE_FORCE_COLOR := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-python demo test unit integration lab-test sanity matrix lint build changelog docs docs-lint galaxy-import lab-start lab-stop clean image molecule molecule-changed

# Everything: system packages, libvirtd, /dev/kvm, the venv (root).
setup:
	@bash $(ROOT)/scripts/setup.sh

# The Python side only (venv, pip, collection link): no root needed once `make setup` has run.
setup-python:
	@bash $(ROOT)/scripts/setup.sh --python

demo: setup
	ansible-playbook $(ROOT)/playbooks/demo.yml

# Every tier. The matrix runs the unit tier and sanity on every ansible-core series the collection
# claims (the main venv's series: sanity only, its unit tier runs below). pytest runs last so the run
# ends with its summary line: unit and integration tiers on the main venv's ansible-core.
test: MATRIX_ARGS = --no-main-unit
# The molecule lane runs kvm_host/default and every scenario of the roles changed since the last
# release (scripts/molecule-changed.sh --list), beside the integration tier.
test: setup lint matrix build galaxy-import changelog docs docs-lint image
	changed=$$(bash $(ROOT)/scripts/molecule-changed.sh --list) && \
	KVMOPS_MOLECULE="kvm_host/default $$changed" HYPOTHESIS_PROFILE=ci \
		python -m pytest -p no:cacheprovider $(ROOT)/tests/unit $(ROOT)/tests/integration -ra

unit: setup-python
	python -m pytest -p no:cacheprovider $(ROOT)/tests/unit -ra

integration: setup
	python -m pytest -p no:cacheprovider $(ROOT)/tests/integration -ra $(PYTEST_ARGS)

sanity: setup-python
	@bash $(ROOT)/scripts/sanity.sh

# Unit tier + sanity per ansible-core series, each in .venv/matrix/<series> (scripts/matrix.sh;
# MATRIX_ARGS='2.16 2.19' picks series).
matrix: setup-python
	@bash $(ROOT)/scripts/matrix.sh $(MATRIX_ARGS)

lint: setup
	cd $(ROOT) && ansible-lint --profile production --strict

build: setup
	@bash $(ROOT)/scripts/build-check.sh

changelog: setup
	cd $(ROOT) && antsibull-changelog lint

# Docsite (antsibull-docs reference + docs/*.md guides) into build/docs/html; warnings fail it.
docs: setup
	@bash $(ROOT)/scripts/docs.sh

# antsibull-docs lint of every plugin's and role's docs (with rstcheck); fails on any finding.
docs-lint: setup
	@bash $(ROOT)/scripts/docs-lint.sh

# galaxy-importer with Automation Hub's settings on the built tarball; fails on any error or warning.
galaxy-import: setup
	@bash $(ROOT)/scripts/galaxy-import.sh

# The molecule scenarios of every role changed since the last release (scripts/molecule-changed.sh).
molecule-changed: setup
	@bash $(ROOT)/scripts/molecule-changed.sh

# Every role's molecule scenarios, each in real Debian 12 guests booted under TCG (docs/molecule.md).
molecule: setup
	@set -e; for dir in $(ROOT)/roles/*/molecule; do \
		echo "molecule: $$(basename $$(dirname $$dir))"; \
		(cd $$(dirname $$dir) && molecule test --all); \
	done

# The cached Debian 12 guest image the real-guest tests boot (rebuilt only when its recipe changes).
image: setup
	@bash $(ROOT)/tests/lab/image.sh build >/dev/null
	@bash $(ROOT)/tests/lab/image.sh paths | grep -q '^KVMOPS_IMAGE_READY=yes'

lab-start: setup
	@bash $(ROOT)/tests/lab/lab.sh start

lab-stop:
	@bash $(ROOT)/tests/lab/lab.sh stop

clean:
	rm -rf $(ROOT)/tests/output $(ROOT)/build
