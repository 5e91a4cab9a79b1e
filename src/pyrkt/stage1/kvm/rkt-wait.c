/*
 * rkt-wait: what the kvm stage1 runner becomes once the hypervisor runs (host side).
 *
 *   rkt-wait PID PYTHON WAITER_PY SPEC_JSON
 *
 * The runner (Python, ~25 MiB) execs this static program instead of waiting itself:
 * same pid, so the hypervisor PID stays our child and the pod lock fd stays open,
 * at a few hundred KiB of RSS for the pod's whole life. It has one job: wait.
 * Every decision stays in Python (waiter.py), started only when there is work:
 *   - the first SIGTERM/SIGHUP: a child runs `PYTHON -I -S WAITER_PY --stop SPEC_JSON`
 *     (graceful stop through the agent; it kills the hypervisor if that fails);
 *     a second one: SIGTERM to the hypervisor;
 *   - the hypervisor exited with RC: exec `PYTHON -I -S WAITER_PY --finish RC SPEC_JSON`
 *     (exit codes, network teardown), whose exit status is the pod's.
 * The runner blocks SIGTERM and SIGHUP before the exec (the mask survives it), so no
 * signal is lost in between; here they are taken synchronously with sigwaitinfo.
 * SIGINT stays ignored, as the runner left it (the hypervisor gets it too).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
	perror(what);
	_exit(254);
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
		pid_t c = fork();
		if (c < 0) {
			kill(hv, SIGTERM);
		} else if (c == 0) {
			sigprocmask(SIG_UNBLOCK, &set, NULL);
			execl(python, python, "-I", "-S", waiter, "--stop", spec, (char *)NULL);
			perror("rkt-wait: exec");
			kill(hv, SIGTERM);
			_exit(254);
		}
	}
exited:;
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
