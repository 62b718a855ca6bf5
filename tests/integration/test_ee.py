"""Execution environment: ansible-builder sees the collection's requirements and creates a build context.

No container engine is needed: `ansible-builder introspect` reads the installed
collection the way the image build does, and `ansible-builder create` only
writes the build context (Containerfile and _build/).
"""

import glob
import os
import re
import subprocess

import pytest
import yaml

from conftest import ROOT

BIN = os.path.join(ROOT, '.venv', 'bin')

# The image definition an operator writes is the one docs/getting-started.md shows: AWX's EE image at a
# fixed release, the tested ansible-core, plus this collection from its galaxy tarball (no galaxy server).
GUIDE = os.path.join(ROOT, 'docs', 'getting-started.md')
# A published release tag: digits and dots (24.6.1), optionally -suffixed; never latest, devel or a branch.
RELEASE_TAG = re.compile(r'^[0-9]+(\.[0-9]+)+(-[0-9A-Za-z.]+)?$')


def guide_definition():
    """The YAML block of docs/getting-started.md that starts with `# execution-environment.yml`."""
    with open(GUIDE) as handle:
        text = handle.read()
    blocks = [block for block in re.findall(r'```yaml\n(.*?)```', text, re.S)
              if block.startswith('# execution-environment.yml')]
    assert len(blocks) == 1, 'docs/getting-started.md: expected one execution-environment.yml block'
    return blocks[0]


def galaxy_version():
    with open(os.path.join(ROOT, 'galaxy.yml')) as handle:
        return yaml.safe_load(handle)['version']


def pinned_tag(image):
    """The tag of IMAGE if it is pinned to a release; an assertion names what is wrong otherwise."""
    assert '@' not in image or image.split('@', 1)[1].startswith('sha256:'), image
    if '@sha256:' in image:
        return image.split('@', 1)[1]
    name, tag = image.rpartition(':')[::2]
    assert name and '/' not in tag, 'base image %s has no tag (that means :latest)' % image
    assert tag != 'latest', 'base image %s is not pinned' % image
    assert RELEASE_TAG.match(tag), 'base image %s: %r is not a release tag' % (image, tag)
    return tag


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


def test_pinned_tag_refuses_moving_images():
    assert pinned_tag('quay.io/ansible/awx-ee:24.6.1') == '24.6.1'
    assert pinned_tag('quay.io/ansible/awx-ee@sha256:' + '0' * 64) == 'sha256:' + '0' * 64
    for image in ('quay.io/ansible/awx-ee:latest', 'quay.io/ansible/awx-ee', 'localhost:5000/awx-ee',
                  'quay.io/ansible/awx-ee:devel', 'quay.io/ansible/awx-ee:'):
        with pytest.raises(AssertionError):
            pinned_tag(image)


def test_guide_definition_is_pinned_and_current():
    definition = yaml.safe_load(guide_definition())
    assert definition['version'] == 3
    pinned_tag(definition['images']['base_image']['name'])
    # The ansible-core it installs is the tested one, and one this collection supports.
    with open(os.path.join(ROOT, 'requirements-dev.txt')) as handle:
        tested = [line.strip() for line in handle if line.startswith(('ansible-core==', 'ansible-runner=='))]
    deps = definition['dependencies']
    assert sorted([deps['ansible_core']['package_pip'], deps['ansible_runner']['package_pip']]) == sorted(tested)
    with open(os.path.join(ROOT, 'meta', 'runtime.yml')) as handle:
        requires = yaml.safe_load(handle)['requires_ansible']
    core = deps['ansible_core']['package_pip'].split('==')[1]
    assert requires.startswith('>=') and tuple(map(int, core.split('.'))) >= tuple(map(int, requires[2:].split('.')))
    # It names this version's tarball.
    name = 'kvmops-kvm-%s.tar.gz' % galaxy_version()
    assert deps['galaxy']['collections'][0]['name'] == '/build/collections/' + name
    assert definition['additional_build_files'][0]['src'] == name


def test_builder_create_writes_a_build_context(tarball, tmp_path):
    definition = tmp_path / 'execution-environment.yml'
    name = 'kvmops-kvm-%s.tar.gz' % galaxy_version()
    assert os.path.basename(tarball) == name
    # The guide's definition, run next to the built tarball (it names it relative to the definition).
    os.symlink(tarball, str(tmp_path / name))
    definition.write_text(guide_definition())
    context = tmp_path / 'context'
    run(os.path.join(BIN, 'ansible-builder'), 'create', '-f', str(definition), '-c', str(context),
        '--output-filename', 'Containerfile', cwd=str(tmp_path))
    containerfile = (context / 'Containerfile').read_text()
    base = yaml.safe_load(guide_definition())['images']['base_image']['name']
    assert 'ARG EE_BASE_IMAGE="%s"' % base in containerfile, containerfile[:600]
    assert ':latest' not in containerfile
    assert 'ansible-core==2.' in containerfile and 'ansible-runner==' in containerfile
    assert 'ansible-galaxy collection install' in containerfile
    # The galaxy requirements point at the tarball, which is in the context.
    assert (context / '_build' / 'collections' / os.path.basename(tarball)).is_file()
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert galaxy['collections'][0]['name'].endswith(os.path.basename(tarball))
    # The image build introspects the collections and installs their requirements.
    assert 'introspect' in containerfile
    assert (context / '_build' / 'scripts' / 'assemble').is_file()
