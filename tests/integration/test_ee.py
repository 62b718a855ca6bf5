"""Execution environment: ansible-builder sees the collection's requirements and creates a build context.

No container engine is needed: `ansible-builder introspect` reads the installed
collection the way the image build does, and `ansible-builder create` only
writes the build context (Containerfile and _build/).
"""

import glob
import os
import subprocess

import pytest
import yaml

from conftest import ROOT

BIN = os.path.join(ROOT, '.venv', 'bin')

# The image definition an operator writes (see docs/getting-started.md): AWX's EE image plus
# this collection from its galaxy tarball, with no galaxy server needed.
EE_DEFINITION = """\
---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  galaxy:
    collections:
      - name: /build/collections/{tarball}
        type: file
additional_build_files:
  - src: {tarball_path}
    dest: collections
options:
  package_manager_path: /usr/bin/dnf
"""


def run(*cmd, cwd=None):
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, '%s: %s %s' % (' '.join(cmd), proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    run(os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', ROOT, '--output-path', str(out), '--force')
    return glob.glob(str(out / 'kvmops-kvm-*.tar.gz'))[0]


def requirement_lines(path):
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith('#')]


def test_collection_declares_its_requirements():
    with open(os.path.join(ROOT, 'meta', 'execution-environment.yml')) as handle:
        meta = yaml.safe_load(handle)
    assert meta['dependencies'] == {'python': 'requirements.txt', 'system': 'bindep.txt'}
    for name in meta['dependencies'].values():
        assert os.path.isfile(os.path.join(ROOT, name))
    python = ' '.join(requirement_lines(os.path.join(ROOT, 'requirements.txt')))
    assert 'libvirt-python' in python and 'lxml' in python


def test_bindep_resolves_on_both_families_and_here():
    lines = requirement_lines(os.path.join(ROOT, 'bindep.txt'))
    for family, names in (('rpm', ['libvirt-devel', 'pkgconf', 'gcc', 'python3-devel', 'libvirt-libs']),
                          ('dpkg', ['libvirt-dev', 'pkg-config', 'gcc', 'python3-dev', 'libvirt0'])):
        for name in names:
            assert any(line.split()[0] == name and 'platform:%s' % family in line for line in lines), (family, name)
    # This machine (Debian, set up by scripts/setup.sh) has everything bindep asks for, compile included.
    for profile in ([], ['compile']):
        proc = subprocess.run([os.path.join(BIN, 'bindep'), '-f', os.path.join(ROOT, 'bindep.txt'), '-b'] + profile,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, 'bindep %s reports missing: %s' % (profile, proc.stdout)


def test_builder_introspects_the_installed_collection(tarball, tmp_path):
    collections = tmp_path / 'collections'
    run(os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--force', tarball, '-p', str(collections))
    pip_out, bindep_out = tmp_path / 'pip.txt', tmp_path / 'bindep.txt'
    run(os.path.join(BIN, 'ansible-builder'), 'introspect', str(collections),
        '--write-pip', str(pip_out), '--write-bindep', str(bindep_out))
    pip = pip_out.read_text()
    assert 'libvirt-python' in pip and 'lxml' in pip and 'kvmops.kvm' in pip, pip
    system = bindep_out.read_text()
    assert 'libvirt-devel [compile platform:rpm]' in system and 'kvmops.kvm' in system, system


def test_builder_create_writes_a_build_context(tarball, tmp_path):
    definition = tmp_path / 'execution-environment.yml'
    definition.write_text(EE_DEFINITION.format(tarball=os.path.basename(tarball), tarball_path=tarball))
    context = tmp_path / 'context'
    run(os.path.join(BIN, 'ansible-builder'), 'create', '-f', str(definition), '-c', str(context),
        '--output-filename', 'Containerfile', cwd=str(tmp_path))
    containerfile = (context / 'Containerfile').read_text()
    assert 'quay.io/ansible/awx-ee:latest' in containerfile
    assert 'ansible-galaxy collection install' in containerfile
    # The galaxy requirements point at the tarball, which is in the context.
    assert (context / '_build' / 'collections' / os.path.basename(tarball)).is_file()
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert galaxy['collections'][0]['name'].endswith(os.path.basename(tarball))
    # The image build introspects the collections and installs their requirements.
    assert 'introspect' in containerfile
    assert (context / '_build' / 'scripts' / 'assemble').is_file()
