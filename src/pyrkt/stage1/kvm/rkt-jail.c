/*
 * rkt-jail: start the hypervisor confined (host side of the kvm stage1).
 *
 *   rkt-jail [OPTION...] -- PROGRAM [ARG...]
 *
 * jail.py decides everything (what the hypervisor may see, which capabilities it
 * keeps, its seccomp filter); this program only carries the decisions out, in a fixed
 * order, then execs PROGRAM (an absolute path inside the jail) with the environment it
 * was given. It runs as the first process of a new PID namespace (the runner unshares
 * CLONE_NEWPID before starting it), so the hypervisor is that namespace's init, and
 * its host pid is the one the runner saw: POD/pid, rkt-wait's child.
 * Any failure prints "rkt-jail: WHAT: ERROR" and exits 254: nothing runs unconfined.
 *
 * Options, in the order they take effect (each value is the next argument):
 *   --pdeathsig            SIGKILL when the parent (the runner, then rkt-wait) dies
 *   --seccomp-fd N         read a BPF program (struct sock_filter[]) from fd N, close it
 *   --netns PATH           join this network namespace; without it a new, empty one
 *   --cgroup FILE          write "0" to FILE (a group's tasks or cgroup.procs): join it
 *   --root DIR             an existing folder the jail's root (a tmpfs) is mounted on
 *                          before pivot_root; the host's DIR is visible again after it
 *   --symlink PATH TARGET  a symlink in the jail (how the host's links lead to the files)
 *   --ro PATH              bind the host's PATH at the same place: read-only, noexec
 *   --exec PATH            the same, executable (the hypervisor, its libraries)
 *   --rw PATH              read-write, noexec
 *   --ro-flat PATH, --rw-flat PATH   as --ro and --rw, without what is mounted below
 *                          PATH on the host (a non-recursive bind: recursive=false)
 *   --dev PATH             a device node: a read-only, noexec mount (the node itself
 *                          still opens read-write)
 *   --proc                 procfs of the new PID namespace on /proc (read-only, only
 *                          the processes: subset=pid where the kernel has it)
 *   --chdir PATH           the working folder inside the jail
 *   --caps MASK            hex: the capabilities kept (bounding, permitted, effective;
 *                          inheritable and ambient empty); every bind is nosuid, nodev
 * then: new mount, IPC, UTS and cgroup namespaces; the jail's root read-only;
 * no_new_privs; the seccomp filter; execve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#define OLD "/.rkt-jail-old" /* the host's root, until it is detached */
#define NR_MOUNT_SETATTR 442 /* x86_64, Linux 5.12 */
#define ATTR_RDONLY 0x1
#define ATTR_NOSUID 0x2
#define ATTR_NODEV 0x4
#define ATTR_NOEXEC 0x8
#define MAX_PROG (4096 * 8)

struct attr { /* struct mount_attr */
	uint64_t set, clr, propagation, userns_fd;
};

static void die(const char *what, const char *arg) {
	fprintf(stderr, "rkt-jail: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "",
		strerror(errno));
	_exit(254);
}

static void usage(const char *why) {
	fprintf(stderr, "rkt-jail: %s\nusage: rkt-jail [OPTION...] -- PROGRAM [ARG...]\n", why);
	_exit(254);
}

/* Make every missing folder of path (inside the jail's tmpfs). */
static void mkdir_p(const char *path) {
	char buf[4096];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		usage("path too long");
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			die("mkdir", buf);
		if (!c)
			return;
		*p = c;
	}
}

static void mkdir_parent(const char *path) {
	static char last[4096]; /* the folder made last: the sorted binds share parents */
	char buf[4096];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		usage("path too long");
	char *slash = strrchr(buf, '/');
	if (slash && slash != buf) {
		*slash = 0;
		if (strcmp(buf, last) != 0)
			mkdir_p(buf);
		memcpy(last, buf, sizeof last);
	}
}

/* Bind the host's path (under OLD) at the same place, with the mount flags attr, and
 * what is mounted below it on the host too unless flat. */
static void bind(const char *path, uint64_t attr, int flat) {
	char src[4096];
	struct stat st;
	if (snprintf(src, sizeof src, OLD "%s", path) >= (int)sizeof src)
		usage("path too long");
	if (stat(src, &st) != 0)
		die("stat", path);
	if (stat(path, &(struct stat){0}) != 0) { /* else: inside an earlier bind */
		mkdir_parent(path);
		if (S_ISDIR(st.st_mode) ? mkdir(path, 0755) : mknod(path, S_IFREG | 0644, 0))
			die("mount point", path);
	}
	if (mount(src, path, NULL, flat ? MS_BIND : MS_BIND | MS_REC, NULL) != 0)
		die("bind", path);
	struct attr a = {.set = attr};
	if (syscall(NR_MOUNT_SETATTR, AT_FDCWD, path, AT_RECURSIVE, &a, sizeof a) == 0)
		return;
	if (errno != ENOSYS)
		die("mount_setattr", path);
	/* Before Linux 5.12: the top mount only. */
	unsigned long fl = MS_REMOUNT | MS_BIND;
	fl |= (attr & ATTR_RDONLY ? MS_RDONLY : 0) | (attr & ATTR_NOSUID ? MS_NOSUID : 0) |
	      (attr & ATTR_NODEV ? MS_NODEV : 0) | (attr & ATTR_NOEXEC ? MS_NOEXEC : 0);
	if (mount(NULL, path, NULL, fl, NULL) != 0)
		die("remount", path);
}

static void mount_proc(void) {
	unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY;
	mkdir_p("/proc");
	if (mount("proc", "/proc", "proc", fl, "subset=pid") == 0)
		return;
	if (mount("proc", "/proc", "proc", fl, NULL) != 0) /* before Linux 5.8 */
		die("mount", "/proc");
}

static void keep_caps(uint64_t keep) {
	for (int c = 0; c < 64; c++)
		if (!(keep & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 &&
		    errno != EINVAL)
			die("PR_CAPBSET_DROP", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		die("PR_CAP_AMBIENT_CLEAR_ALL", NULL);
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {
		{(uint32_t)keep, (uint32_t)keep, 0},
		{(uint32_t)(keep >> 32), (uint32_t)(keep >> 32), 0},
	};
	if (syscall(SYS_capset, &h, d) != 0)
		die("capset", NULL);
}

static void join_cgroup(const char *file) {
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		die("join cgroup", file);
	close(fd);
}

int main(int argc, char **argv) {
	int sep = 1, pdeath = 0, netns_given = 0;
	while (sep < argc && strcmp(argv[sep], "--") != 0)
		sep++;
	if (sep + 1 >= argc)
		usage("no program");
	char *root = NULL, *dir = "/";
	uint64_t caps = 0;
	static unsigned char prog[MAX_PROG];
	ssize_t prog_len = 0;
	/* First pass: what happens before the mount namespace (in option order). */
	for (int i = 1; i < sep; i++) {
		const char *o = argv[i];
		int nargs = !strcmp(o, "--pdeathsig") || !strcmp(o, "--proc") ? 0
			  : !strcmp(o, "--symlink")			     ? 2
									     : 1;
		if (i + nargs >= sep)
			usage("an option lacks its value");
		if (!strcmp(o, "--pdeathsig")) {
			pdeath = 1;
		} else if (!strcmp(o, "--seccomp-fd")) {
			int fd = atoi(argv[i + 1]);
			for (ssize_t n; (n = read(fd, prog + prog_len, MAX_PROG - prog_len)) > 0;)
				prog_len += n;
			if (prog_len <= 0 || prog_len % sizeof(struct sock_filter))
				usage("bad seccomp program");
			close(fd);
		} else if (!strcmp(o, "--netns")) {
			int fd = open(argv[i + 1], O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
				die("setns", argv[i + 1]);
			close(fd);
			netns_given = 1;
		} else if (!strcmp(o, "--cgroup")) {
			join_cgroup(argv[i + 1]);
		} else if (!strcmp(o, "--root")) {
			root = argv[i + 1];
		} else if (!strcmp(o, "--chdir")) {
			dir = argv[i + 1];
		} else if (!strcmp(o, "--caps")) {
			caps = strtoull(argv[i + 1], NULL, 16);
		} else if (strcmp(o, "--symlink") && strcmp(o, "--ro") && strcmp(o, "--exec") &&
			   strcmp(o, "--rw") && strcmp(o, "--dev") && strcmp(o, "--proc") &&
			   strcmp(o, "--ro-flat") && strcmp(o, "--rw-flat")) {
			usage("unknown option");
		}
		i += nargs;
	}
	if (!root)
		usage("--root is required");
	if (pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		die("PR_SET_PDEATHSIG", NULL);
	int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
	if (unshare(flags | (netns_given ? 0 : CLONE_NEWNET)) != 0)
		die("unshare", NULL);
	/* The jail's root: a small tmpfs holding only mount points and symlinks. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		die("make / private", NULL);
	if (mount("rkt-jail", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=1m,nr_inodes=16384") != 0)
		die("mount tmpfs on", root);
	char old[4096];
	snprintf(old, sizeof old, "%s" OLD, root);
	if (mkdir(old, 0700) != 0 || syscall(SYS_pivot_root, root, old) != 0 || chdir("/") != 0)
		die("pivot_root", root);
	/* Second pass: the file view. */
	for (int i = 1; i < sep; i++) {
		const char *o = argv[i], *p = argv[i + 1];
		if (!strcmp(o, "--pdeathsig")) {
			continue;
		} else if (!strcmp(o, "--proc")) {
			mount_proc();
			continue;
		} else if (!strcmp(o, "--symlink")) {
			mkdir_parent(p);
			if (symlink(argv[i + 2], p) != 0)
				die("symlink", p);
			i++;
		} else if (!strcmp(o, "--ro") || !strcmp(o, "--ro-flat")) {
			bind(p, ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC, o[4] == '-');
		} else if (!strcmp(o, "--exec")) {
			bind(p, ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV, 0);
		} else if (!strcmp(o, "--rw") || !strcmp(o, "--rw-flat")) {
			bind(p, ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC, o[4] == '-');
		} else if (!strcmp(o, "--dev")) {
			bind(p, ATTR_RDONLY | ATTR_NOSUID | ATTR_NOEXEC, 0);
		}
		i++;
	}
	if (umount2(OLD, MNT_DETACH) != 0 || rmdir(OLD) != 0)
		die("detach the host's root", NULL);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV |
		  MS_NOEXEC, NULL) != 0)
		die("remount / read-only", NULL);
	if (chdir(dir) != 0)
		die("chdir", dir);
	keep_caps(caps);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("PR_SET_NO_NEW_PRIVS", NULL);
	if (prog_len) {
		struct sock_fprog fp = {(unsigned short)(prog_len / sizeof(struct sock_filter)),
					(struct sock_filter *)prog};
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) != 0)
			die("PR_SET_SECCOMP", NULL);
	}
	execve(argv[sep + 1], argv + sep + 1, environ);
	die("execve", argv[sep + 1]);
	return 254;
}
