"""Guest side of the kvm flavor: the initramfs (busybox, init, rkt-exec) and pod script."""
