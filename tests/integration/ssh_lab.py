"""A private lab host4 (private images behind a real sshd, reached as qemu+ssh) for one test module.

``private_host4(netns, net, state_base, prefix)`` starts host4 of a :class:`~lab_instance.LabInstance`
with the module's own netns names, /24 and state dir, yields it, and purges it afterwards (its state dir,
with the private image directory, is deleted). A module fixture wraps it::

    @pytest.fixture(scope='module')
    def host4():
        with private_host4('kvmvt', '10.254.83', '/var/lib/kvmops-lab-vol', 'kvmvt-') as lab:
            yield lab

``host4_images(lab)`` is host4's private ``/var/lib/libvirt/images`` as the main host sees it;
``pool_volumes(conn, prefix)`` lists the volumes of a connection's "default" pool whose names start with
``prefix``, ``files(directory, prefix)`` the files of a directory (used by the qemu+ssh and qemu+tls tests).
``PLAY`` is their one kvm_domain task on the remote URI, ``MAIN_IMAGES`` the main host's image directory.
"""

import contextlib
import os

from lab_instance import LabInstance

PLAY = """
- name: t
  kvmops.kvm.kvm_domain:
    uri: "{{ uri }}"
    name: "{{ name }}"
    state: "{{ state | default('running') }}"
    memory: 64MiB
    virt_type: "{{ virt }}"
    graphics: {type: none}
    disks: "{{ disks | default(omit) }}"
    cloud_init: "{{ cloud_init | default(omit) }}"
    remove_storage: "{{ remove_storage | default(omit) }}"
"""
MAIN_IMAGES = '/var/lib/libvirt/images'


@contextlib.contextmanager
def private_host4(netns, net, state_base, hostname_prefix):
    lab = LabInstance(netns, net, state_base, hostname_prefix)
    lab.start('host4')
    try:
        yield lab
    finally:
        lab.run('purge', 'host4')


def host4_images(lab):
    return os.path.join(lab.state_dir('host4'), 'images')


def pool_volumes(conn, prefix):
    pool = conn.storagePoolLookupByName('default')
    pool.refresh(0)
    return sorted(v for v in pool.listVolumes() if v.startswith(prefix))


def files(directory, prefix):
    return sorted(f for f in os.listdir(directory) if f.startswith(prefix)) if os.path.isdir(directory) else []
