/*
 * rkt-wait: what the kvm stage1 runner becomes once the hypervisor runs (host side).
 *
 *   rkt-wait PID PYTHON WAITER_PY SPEC_JSON
 *
 * The runner (Python, ~25 MiB) execs this static program instead of waiting itself:
 * same pid, so the hypervisor PID stays our child and the pod lock fd stays open,
 * at a few hundred KiB of RSS for the pod's whole life. It has one job: wait.
 * Every decision stays in Python (waiter.py), started only when there is work:
 *   - the first SIGTERM/SIGHUP/SIGINT: a child runs
 *     `PYTHON -I -S WAITER_PY --stop SPEC_JSON SIGNUM` (graceful stop through the agent;
 *     it kills the hypervisor if that fails); a second one: SIGTERM to the hypervisor;
 *   - the hypervisor exited with RC: exec `PYTHON -I -S WAITER_PY --finish RC SPEC_JSON`
 *     (exit codes, network teardown), whose exit status is the pod's.
 * The fast path, when the runner set
 * RKT_WAIT_FAST_BENEATH="AGENT_SOCKET\nSTAGE1_ROOTFS\nAPP..." (no network to tear
 * down, no --debug; an environment variable so that an older rkt-wait ignores it): the
 * hypervisor exited with 0 (never after a death by signal) and every app left its exit
 * code in STAGE1_ROOTFS/rkt/status/APP; then rkt-wait removes AGENT_SOCKET and exits
 * with the code of the app that failed first (the oldest non-zero status file; app
 * order between equals), as finish.finish_pod would, without
 * starting Python (~0.05 s). Anything else (a missing or unreadable code, a hypervisor
 * failure or death) goes to Python.
 * The status files are the guest's to write, so each is opened as pyrkt.linux.beneath
 * does: openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) under the
 * stage1 rootfs's fd (O_NOFOLLOW at each component where openat2 is missing), O_PATH
 * first, fstat: a regular file of at most 16 bytes, then reopened through
 * /proc/self/fd and read once. A symlink, FIFO, device, socket or big file is left to
 * Python, which refuses it with a message.
 * RKT_WAIT_RMDIR="DIR\n..." (the hypervisor's cgroups, leaf first): removed once the
 * hypervisor exited, before anything else (a busy one stays for `rkt gc`).
 * The runner blocks SIGTERM and SIGHUP (and SIGINT, unless it left it ignored: an
 * interactive pod's) before the exec (the mask survives it), so no signal is lost in
 * between; here they are taken synchronously with sigwaitinfo.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	_exit(254);
}

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define CODE_MAX 16 /* bytes: "255\n" is 4 */

struct how {
	unsigned long long flags, mode, resolve;
};

/* An O_PATH fd for REL under ROOT, no symlink followed, or -1. */
static int open_beneath(int root, const char *rel) {
	static int no_openat2;
	if (!no_openat2) {
		struct how h = {O_PATH | O_CLOEXEC, 0,
				RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
		long fd = syscall(SYS_openat2, root, rel, &h, sizeof h);
		if (fd >= 0 || errno != ENOSYS)
			return (int)fd;
		no_openat2 = 1;
	}
	/* No openat2 (Linux < 5.6): one component at a time, O_NOFOLLOW. */
	char buf[4096];
	if (snprintf(buf, sizeof buf, "%s", rel) >= (int)sizeof buf)
		return -1;
	int fd = root;
	char *save = NULL, *comp = strtok_r(buf, "/", &save);
	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		int flags = O_PATH | O_NOFOLLOW | O_CLOEXEC | (next ? O_DIRECTORY : 0);
		int nfd = strcmp(comp, "..") ? openat(fd, comp, flags) : -1;
		if (fd != root)
			close(fd);
		if (nfd < 0)
			return -1;
		fd = nfd;
		comp = next;
	}
	return fd == root ? -1 : fd;
}

/* The exit code in ROOT/rkt/status/APP ("N\n"), or -1 when missing, not a regular
 * file, larger than CODE_MAX or not a number 0-255; when it was written in *when. */
static int read_code(int root, const char *app, struct timespec *when) {
	char rel[4096], buf[CODE_MAX + 1];
	if (!*app || strchr(app, '/') || !strcmp(app, "..") || !strcmp(app, "."))
		return -1;
	if (snprintf(rel, sizeof rel, "rkt/status/%s", app) >= (int)sizeof rel)
		return -1;
	int pfd = open_beneath(root, rel);
	if (pfd < 0)
		return -1;
	struct stat st;
	if (fstat(pfd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CODE_MAX) {
		close(pfd);
		return -1;
	}
	*when = st.st_mtim;
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
	int fd = open(proc, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	close(pfd);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0 || n > CODE_MAX)
		return -1;
	buf[n] = 0;
	char *end;
	errno = 0;
	long v = strtol(buf, &end, 10);
	while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
		end++;
	if (errno || end == buf || *end || v < 0 || v > 255)
		return -1;
	return (int)v;
}

/* Remove the folders RKT_WAIT_RMDIR names, in order. */
static void remove_dirs(void) {
	const char *env = getenv("RKT_WAIT_RMDIR");
	char *dirs = env ? strdup(env) : NULL, *save = NULL;
	if (!dirs)
		return;
	for (char *d = strtok_r(dirs, "\n", &save); d; d = strtok_r(NULL, "\n", &save))
		rmdir(d);
	free(dirs);
}

/* The fast path's exit code, or -1 to let Python finish the pod. */
static int fast_finish(int status) {
	const char *env = getenv("RKT_WAIT_FAST_BENEATH");
	/* Only a clean exit: a death by signal (WIFSIGNALED) is for Python to report. */
	if (!env || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	char *spec = strdup(env), *save = NULL;
	if (!spec)
		return -1;
	char *sock = strtok_r(spec, "\n", &save);
	char *rootfs = strtok_r(NULL, "\n", &save);
	if (!sock || !rootfs)
		return -1;
	int root = open(rootfs, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0)
		return -1;
	/* The app that failed first (finish.first_failure): the guest stops the others
	 * only after it wrote that app's code; app order between equal times. */
	int first = 0;
	struct timespec first_at = {0, 0};
	for (char *app; (app = strtok_r(NULL, "\n", &save));) {
		struct timespec at;
		int c = read_code(root, app, &at);
		if (c < 0) {
			close(root);
			return -1;
		}
		if (c && (!first || at.tv_sec < first_at.tv_sec ||
			  (at.tv_sec == first_at.tv_sec && at.tv_nsec < first_at.tv_nsec))) {
			first = c;
			first_at = at;
		}
	}
	close(root);
	unlink(sock);
	return first;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: rkt-wait PID PYTHON WAITER_PY SPEC_JSON\n");
		return 254;
	}
	pid_t hv = (pid_t)atoi(argv[1]);
	char *python = argv[2], *waiter = argv[3], *spec = argv[4];
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGINT); /* never pending when ignored */
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		die("rkt-wait: sigprocmask");
	int asked = 0, status = 0;
	for (;;) {
		/* Reap every child that ended (the hypervisor, stop helpers). */
		pid_t p;
		while ((p = waitpid(-1, &status, WNOHANG)) > 0)
			if (p == hv)
				goto exited;
		if (p < 0 && errno == ECHILD)
			die("rkt-wait: the hypervisor is not our child");
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			die("rkt-wait: sigwaitinfo");
		}
		if (sig == SIGCHLD)
			continue;
		if (asked++) {
			kill(hv, SIGTERM);
			continue;
		}
		char signum[16];
		snprintf(signum, sizeof signum, "%d", sig);
		pid_t c = fork();
		if (c < 0) {
			kill(hv, SIGTERM);
		} else if (c == 0) {
			sigprocmask(SIG_UNBLOCK, &set, NULL);
			execl(python, python, "-I", "-S", waiter, "--stop", spec, signum, (char *)NULL);
			perror("rkt-wait: exec");
			kill(hv, SIGTERM);
			_exit(254);
		}
	}
exited:;
	remove_dirs();
	int code = fast_finish(status);
	if (code >= 0)
		return code;
	/* os.waitstatus_to_exitcode's convention: -N for a death by signal N. */
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
	char rcs[16];
	snprintf(rcs, sizeof rcs, "%d", rc);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	signal(SIGCHLD, SIG_DFL);
	execl(python, python, "-I", "-S", waiter, "--finish", rcs, spec, (char *)NULL);
	die("rkt-wait: exec");
	return 254;
}
