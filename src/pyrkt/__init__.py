"""pyrkt: rkt, the daemonless pod-native container engine, with its KVM stage1."""

__version__ = "0.1.0"
# The appc spec version our manifests declare, and the stage1 interface we speak.
APPC_SPEC_VERSION = "0.8.11"
