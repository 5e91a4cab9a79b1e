#!/bin/sh
# pyrkt kvm guest init (busybox sh, PID 1 in the initramfs, exec'd by /init: rkt-exec,
# which made the init's root a mount and mounted /proc, /sys and /dev).
# Mounts the pod's stage1 rootfs shared by the host (9p tag rkt.stage1) at /stage1 and
# the pod's control folder (tag rkt.ctl) at /ctl, and sources the pod script the host
# wrote there (/ctl/pod.sh), which starts the apps (each in a mount namespace of its own
# that holds none of this), records their exit codes in /stage1/rkt/status and returns;
# then the VM ends. Shell builtins where possible: under emulation every fork+exec costs
# tens of milliseconds.
export PATH=/bin:/sbin
read -r rkt_cmdline </proc/cmdline
rkt_cmdline=" $rkt_cmdline "
case $rkt_cmdline in
*" rkt.probe=1 "*) reboot -f ;;
esac
rkt_say() { echo "rkt-init: $*" >/dev/console; }
# The virtio balloon reports free guest memory to the host, which drops it from QEMU's
# RSS; the kernel's default only reports free blocks of 4 MiB (pageblock_order), which
# never covers what boot touched and freed. From 256 KiB (order 6) up: as much back as
# from single pages (measured: within 1 MiB), with fewer reports and refaults for apps
# that allocate and free a lot. QEMU runs without huge pages (4 KiB on the host). The
# driver sets the order when it binds (before init), so this comes after.
rkt_pro=/sys/module/page_reporting/parameters/page_reporting_order
[ -w $rkt_pro ] && echo 6 >$rkt_pro
# QEMU runs with -no-reboot: a reboot ends it (works with and without ACPI). The halter
# (`rkt-exec --halter`, started below, before a template is saved: a restored pod has it
# already) resets the VM at a line on the FIFO /run/rkt-halt, after a sync (the disks of
# rootfs=block, pages written through a cache=mmap mapping on 9p): no fork+exec and no
# kernel shutdown of every device at the end of a pod. Without it (not started yet, or
# killed: an OCI `kill KILL all` ends every process but the init and the agent),
# busybox's `reboot -f`, which syncs too. An exec, no fork: were it to fail, PID 1
# ending panics the kernel, which reboots too.
rkt_halter=
rkt_halt() {
	if [ -n "$rkt_halter" ]; then
		kill -CONT "$rkt_halter" 2>/dev/null # a `kill STOP all` stopped it
		echo 1<>/run/rkt-halt && wait "$rkt_halter"
	fi
	exec reboot -f
}
rkt_modules=/etc/rkt-modules
case $rkt_cmdline in
*" rkt.net=1 "*) rkt_modules="$rkt_modules /etc/rkt-modules-net" ;;
esac
case $rkt_cmdline in
*" rkt.disks=1 "*) rkt_modules="$rkt_modules /etc/rkt-modules-disk" ;;
esac
for f in $rkt_modules; do
	while read -r m; do
		insmod "/lib/modules/$m" 2>/dev/null || rkt_say "cannot load $m"
	done <"$f"
done
# `rkt export` of a pod whose apps' rootfs are disks (rkt.export=1: stage1/kvm/
# diskexport.py): the disk with serial rkt-src (the pod's layer under a throwaway one,
# where its journal is replayed) tarred onto the raw disk with serial rkt-out. The host
# reads the tar only after "export done" (and checks every member).
case $rkt_cmdline in
*" rkt.export=1 "*)
	for b in /sys/block/vd*; do
		s=
		read -r s <"$b/serial" # no newline at the end: read says 1
		case $s in
		rkt-src) rkt_src=/dev/${b##*/} ;;
		rkt-out) rkt_out=/dev/${b##*/} ;;
		esac
	done
	mkdir -p /mnt/x/rootfs && mount -t ext4 "$rkt_src" /mnt/x/rootfs &&
		tar -cf "$rkt_out" -C /mnt/x rootfs && sync && rkt_say "export done"
	rkt_halt
	;;
esac
# $rkt_port_<name>: the device of the virtio-serial port the host named rkt.<name>
# (variables, not /dev symlinks: an `ln` per port is a fork+exec).
for p in /sys/class/virtio-ports/*; do
	[ -e "$p/name" ] || continue
	read -r n <"$p/name"
	case $n in
	rkt.out) rkt_port_out=/dev/${p##*/} ;;
	rkt.err) rkt_port_err=/dev/${p##*/} ;;
	rkt.agent) rkt_port_agent=/dev/${p##*/} ;;
	rkt.go) rkt_port_go=/dev/${p##*/} ;;
	esac
done
# The loopback interface and the halter, here rather than in the pod script: a template
# has them when a pod is restored from it.
ip link set lo up
rkt-exec --halter <>/run/rkt-halt &
rkt_halter=$!
# The enter/stop agent: one request line at a time on the rkt.agent port (defined
# before a template is saved: a restored pod has it parsed already). The commands
# (rkt-exec --ns: in the app's namespace) get none of the init's ports.
#   enter ID -> runs /ctl/enter/ID/cmd.sh, replies "done ID RC"
#   tty ID   -> starts /ctl/enter/ID/cmd.sh (rkt-exec --tty: a pty relayed on the rkt.tty
#               port) in the background, replies "started ID"
#   stop [SIG] -> replies "ok", sends SIGTERM (or signal number SIG) to the apps (SIGKILL
#               after the grace time)
#               (rkt_stop_apps and rkt_app_pids: functions of the pod script)
#   exec ID  -> starts /ctl/enter/ID/cmd.sh in the background, its output in files there
#               and its exit code in /ctl/enter/ID/rc when it ends; replies "started ID"
#               (the OCI runtime's `exec`: the agent stays free for other requests)
#   kill SIG [all|PID...] -> sends signal SIG to the apps (all: every process but init
#               and the agent; PIDs: those), replies "ok" (the OCI runtime's `kill`)
rkt_agent() {
	[ -n "$rkt_port_agent" ] || return
	exec 3<>"$rkt_port_agent" || return
	while :; do
		if ! read -r rkt_cmd rkt_arg <&3; then
			sleep 0.3
			continue
		fi
		case $rkt_cmd in
		enter)
			d=/ctl/enter/$rkt_arg
			sh "$d/cmd.sh" <"$d/stdin" >"$d/stdout" 2>"$d/stderr" 3>&- 4>&- 5>&-
			echo "done $rkt_arg $?" >&3
			;;
		tty)
			d=/ctl/enter/$rkt_arg
			sh "$d/cmd.sh" </dev/null >"$d/log" 2>&1 3>&- 4>&- 5>&- &
			echo "started $rkt_arg" >&3
			;;
		stop)
			echo "ok" >&3
			case $rkt_arg in
			'' | *[!0-9]*) rkt_stop_apps TERM ;;
			*) rkt_stop_apps "$rkt_arg" ;;
			esac
			;;
		exec)
			d=/ctl/enter/$rkt_arg
			(sh "$d/cmd.sh" <"$d/stdin" >"$d/stdout" 2>"$d/stderr"; echo $? >"$d/rc") \
				3>&- 4>&- 5>&- &
			echo "started $rkt_arg" >&3
			;;
		kill)
			set -- $rkt_arg
			rkt_app_pids
			rkt_sig=$1
			shift
			case $1 in
			"") kill -"$rkt_sig" $rkt_pids ;;
			all) kill -"$rkt_sig" -1 ;;
			*) kill -"$rkt_sig" "$@" ;;
			esac 2>/dev/null
			echo "ok" >&3
			;;
		ping) echo "pong" >&3 ;;
		*) echo "error unknown request" >&3 ;;
		esac
	done
}
# The pod's shares (rkt.stage1 at /stage1, rkt.ctl at /ctl: the mount plan
# /etc/rkt-mounts, initramfs.MOUNTS) mounted by rkt-exec with mount(2), no `mount`.
# A template (rkt.template=1: stage1/kvm/templates/) waits for its pod in `rkt-exec --go`,
# started before the host saves the VM: it says "ready" on the rkt.go port and waits
# there. A pod restored from the template resumes in that wait, with the host's "go
# SECONDS NANOSECONDS SEED [OLDMAC=NEWMAC...]": the clock, a reseeded RNG and the pod's
# MACs, then "ok", then the shares; and the pod starts as after a boot, without a
# fork+exec in between. The host gone (end of file) or a failure: power off.
case $rkt_cmdline in
*" rkt.template=1 "*)
	rkt-exec --go "$rkt_port_go" /etc/rkt-mounts || rkt_halt
	;;
*)
	if ! rkt-exec --mount /etc/rkt-mounts; then
		rkt_say "cannot mount the pod share"
		rkt_halt
	fi
	;;
esac
if [ -r /ctl/pod.sh ]; then
	. /ctl/pod.sh
else
	rkt_say "no pod script"
fi
rkt_halt
