"""Whether a value is kept from templating, on every ansible-core the collection supports (2.16 on).

Before 2.19, ``wrap_var`` marks a value unsafe with the ``AnsibleUnsafe`` types and only those escape
templating. From 2.19 on (data tagging) a string is templated only when it carries ``TrustedAsTemplate``
and ``wrap_var`` strips that trust, so "unsafe" means "not trusted as a template".
"""

from ansible.utils.unsafe_proxy import AnsibleUnsafe

try:
    from ansible.template import is_trusted_as_template, trust_as_template
except ImportError:  # ansible-core < 2.19
    is_trusted_as_template = None
    trust_as_template = None

DATA_TAGGING = is_trusted_as_template is not None


def is_unsafe(value):
    """True when templating will not evaluate VALUE."""
    if DATA_TAGGING:
        return not is_trusted_as_template(value)
    return isinstance(value, AnsibleUnsafe)


def template_text(text):
    """TEXT as a playbook's own template string (trusted on 2.19+, where untrusted text is not templated)."""
    return trust_as_template(text) if DATA_TAGGING else text
