"""The fly stage1: rkt's chroot-only flavor (one app, no isolation). See `run`."""
