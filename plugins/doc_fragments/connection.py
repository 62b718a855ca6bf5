# -*- coding: utf-8 -*-
# Copyright (c) kvmops.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """The connection options shared by every kvmops.kvm module (KVM_COMMON_ARGS)."""

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor to manage, for example V(qemu:///system),
        V(qemu+ssh://root@hv01/system) or V(qemu+tcp://10.0.0.2/system).
      - If not set, the environment variable E(LIBVIRT_DEFAULT_URI) is used, and when that is unset too,
        V(qemu:///system).
      - Set it once for a play with C(module_defaults) and the action group C(group/kvmops.kvm.kvm).
      - Only the V(qemu) and V(test) drivers over the local socket, V(unix), V(ssh), V(libssh), V(libssh2),
        V(tls) or V(tcp) are accepted; anything else is refused before a connection is attempted.
    type: str
  uri_allow_ext:
    description:
      - Accept URIs that make libvirt run a program on the node that runs the module, the V(ext)
        transport (V(qemu+ext:///system?command=/path)) and the C(command=) and C(netcat=) parameters.
      - Off by default because a URI is often a survey answer or an inventory value; turn it on only when
        the playbook author wrote the URI. See SECURITY.md.
    type: bool
    default: false
    version_added: 1.0.0
requirements:
  - libvirt-python (on the managed host)
  - lxml (on the managed host)
notes:
  - Every libvirt error is reported as one failure naming the URI, the object and libvirt's message.
'''
