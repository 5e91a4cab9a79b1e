"""The only place with ctypes and raw syscalls. Each wrapper raises OSError naming the
syscall: `mount` (mount, umount2, pivot_root), `ns` (unshare, setns, sethostname),
`prctl` (no_new_privs, bounding set, ambient caps, death signal, subreaper), `caps`
(capget/capset, names), `cgroup` (v1, v2, hybrid; per-pod groups), `netif` (link up),
`libc` (the shared handle), `files` (fsync of a folder, non-blocking flock). `mountns` and
`netns` are stage0's and NET's helpers."""
