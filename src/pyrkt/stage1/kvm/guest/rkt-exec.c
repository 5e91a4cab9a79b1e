/*
 * rkt-exec: the guest's last step before an app runs (static, no dependencies).
 *
 *   rkt-exec ROOT CWD UID GID GROUPS CAPS NNP CGROUP -- ARGV...
 *
 * GROUPS: comma-separated gids or "-"; CAPS: comma-separated capability numbers to
 * retain, or "all" to leave them alone; NNP: 1 sets no_new_privs; CGROUP: a cgroup
 * folder to join, or "-". The environment is passed through unchanged (the pod script
 * builds it with `env -i`). Each failure prints the failing call and exits 127.
 * RKT_SECCOMP=FILE (taken out of the environment): the app's seccomp filter, a BPF
 * program (struct sock_filter[]) read before the chroot and loaded just before the exec.
 * RKT_RLIMITS=RES:SOFT:HARD,... (taken out too): resource limits set before the user
 * changes (RES: the RLIMIT_* number; a value of 18446744073709551615 is unlimited);
 * RKT_UMASK=OCTAL: the app's umask (the OCI runtime's process.rlimits and user.umask).
 * RKT_TTY_KEEPER=1: the app is on the pod's terminal (keep_tty below).
 *
 *   rkt-exec --tty PORT RID ROOT CWD ... -- ARGV...      (`rkt enter` with a terminal)
 *
 * runs ARGV as above on a new pty (its controlling terminal, in a new session) and relays
 * that pty to the host over the virtio-serial port named PORT, in frames of one type
 * byte, a 2-byte big-endian length and the payload:
 *   guest -> host: 'R' RID (ready), 'D' output, 'X' 4-byte exit code (128+N for signal N)
 *   host -> guest: 'W' rows cols (2 bytes each, the first frame), 'D' input
 * The host closing the port hangs the session up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what, const char *arg) {
    fprintf(stderr, "rkt-exec: %s %s: %s\n", what, arg, strerror(errno));
    exit(127);
}

static struct sock_fprog seccomp_prog;

static void read_seccomp(void) {
    const char *env = getenv("RKT_SECCOMP");
    if (!env) return;
    char *path = strdup(env);
    unsetenv("RKT_SECCOMP");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) die("open", path);
    size_t n = (size_t)st.st_size;
    if (n == 0 || n % sizeof(struct sock_filter) || n / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        fprintf(stderr, "rkt-exec: %s: not a seccomp program\n", path);
        exit(127);
    }
    char *buf = malloc(n);
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) die("read", path);
        got += (size_t)r;
    }
    close(fd);
    seccomp_prog.len = (unsigned short)(n / sizeof(struct sock_filter));
    seccomp_prog.filter = (struct sock_filter *)buf;
}

static void load_seccomp(void) {
    if (!seccomp_prog.filter) return;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &seccomp_prog, 0, 0) == 0) return;
    /* without CAP_SYS_ADMIN the kernel wants no_new_privs first */
    if (errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &seccomp_prog, 0, 0) < 0)
        die("prctl", "PR_SET_SECCOMP");
}

/* RKT_RLIMITS and RKT_UMASK (see the top), applied and taken out of the environment. */
static void apply_limits(void) {
    const char *env = getenv("RKT_RLIMITS");
    if (env) {
        char *list = strdup(env), *save = NULL;
        unsetenv("RKT_RLIMITS");
        for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *end;
            int res = (int)strtol(item, &end, 10);
            if (*end != ':') die("RKT_RLIMITS", item);
            struct rlimit rl;
            rl.rlim_cur = (rlim_t)strtoull(end + 1, &end, 10);
            if (*end != ':') die("RKT_RLIMITS", item);
            rl.rlim_max = (rlim_t)strtoull(end + 1, &end, 10);
            if (setrlimit(res, &rl) < 0) die("setrlimit", item);
        }
        free(list);
    }
    const char *um = getenv("RKT_UMASK");
    if (um) {
        umask((mode_t)strtoul(um, NULL, 8));
        unsetenv("RKT_UMASK");
    }
}

/* Every signal to its default action, none blocked: the pod script starts apps in the
 * background (`cmd &`), where a shell ignores SIGINT and SIGQUIT, and a process that
 * starts with a signal ignored cannot even trap it (a shell app); an app starts as a
 * container's process does, with a clean slate (Ctrl-C on its terminal, `kill -INT`). */
static void default_signals(void) {
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* RKT_TTY_KEEPER=1 (an app on the pod's terminal, fd 0-2 its controlling tty; taken out
 * of the environment): the kernel hangs a terminal up when its session leader exits,
 * and the hangup throws away what the serial port had not sent yet (the app's last
 * lines). So rkt-exec stays the session leader: the app runs in a child, in its own
 * process group, the terminal's foreground one (Ctrl-C reaches it alone); signals sent
 * to rkt-exec (the agent's `kill`) are passed on; once the app ended, the terminal's
 * output is drained and rkt-exec exits with the app's status (128+N for signal N). */
static volatile pid_t keeper_child;

static void keeper_forward(int sig) {
    if (keeper_child > 0) kill(keeper_child, sig);
}

static void keep_tty(void) {
    const char *env = getenv("RKT_TTY_KEEPER");
    if (!env) return;
    unsetenv("RKT_TTY_KEEPER");
    static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
                                    SIGCONT, SIGWINCH};
    struct sigaction sa = {0};
    sa.sa_handler = keeper_forward;
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &sa, NULL);
    signal(SIGTTOU, SIG_IGN); /* tcsetpgrp and tcdrain from outside the foreground */
    signal(SIGTTIN, SIG_IGN);
    signal(SIGTSTP, SIG_IGN);
    pid_t child = fork();
    if (child < 0) die("fork", "RKT_TTY_KEEPER");
    if (child == 0) {
        setpgid(0, 0);
        tcsetpgrp(0, getpid()); /* SIGTTOU still ignored; default_signals() follows */
        return;
    }
    keeper_child = child;
    setpgid(child, child);
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR) die("waitpid", "RKT_TTY_KEEPER");
    tcdrain(1);
    exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static int parse_list(const char *s, unsigned long *out, int max) {
    int n = 0;
    if (strcmp(s, "-") == 0 || *s == 0) return 0;
    while (*s && n < max) {
        char *end;
        out[n++] = strtoul(s, &end, 10);
        s = (*end == ',') ? end + 1 : end;
        if (*end != ',' && *end != 0) break;
    }
    return n;
}


/* ---- --tty: the pty relay (parent) and the session leader (child) ---- */

static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
    (void)sig;
    int e = errno;
    if (write(sigchld_pipe[1], "c", 1) < 0) {}
    errno = e;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) exit(127); /* the host is gone */
        p += w;
        n -= (size_t)w;
    }
}

static void send_frame(int port, char type, const void *data, size_t n) {
    unsigned char hdr[3] = {(unsigned char)type, (unsigned char)(n >> 8), (unsigned char)n};
    write_all(port, hdr, 3);
    if (n) write_all(port, data, n);
}

/* The device (/dev/vportNpM) of the virtio-serial port whose name is `name`; "fd:N" is
 * the inherited fd N instead (tests on the host, over a socketpair). */
static int open_port(const char *name) {
    if (strncmp(name, "fd:", 3) == 0) {
        int fd = (int)strtol(name + 3, NULL, 10);
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) die("port", name);
        return fd;
    }
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) die("opendir", "/sys/class/virtio-ports");
    struct dirent *e;
    char path[512], buf[128];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        if (strcmp(buf, name) != 0) continue;
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        closedir(d);
        int p = open(path, O_RDWR | O_CLOEXEC);
        if (p < 0) die("open", path);
        return p;
    }
    closedir(d);
    errno = ENOENT;
    die("virtio port", name);
    return -1;
}

static void set_winsize(int master, const unsigned char *p) {
    struct winsize ws = {0};
    ws.ws_row = (unsigned short)(p[0] << 8 | p[1]);
    ws.ws_col = (unsigned short)(p[2] << 8 | p[3]);
    ioctl(master, TIOCSWINSZ, &ws);
}

/* Frames from the host: input for the pty, window sizes. */
struct inq {
    unsigned char frame[3 + 65535];
    size_t have;          /* bytes of the current frame read so far */
    unsigned char *pend;  /* input not yet written to the pty */
    size_t npend;
    unsigned char last;   /* the type of the last complete frame */
};

static size_t frame_len(const struct inq *q) { return (size_t)q->frame[1] << 8 | q->frame[2]; }

/* Reads from the port into q; returns 0 when the host closed it, 2 when a frame is
 * complete (its input, if any, in q->pend), else 1. */
static int read_port(int port, int master, struct inq *q) {
    size_t want = q->have < 3 ? 3 - q->have : 3 + frame_len(q) - q->have;
    ssize_t n = read(port, q->frame + q->have, want);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0) return 0;
    q->have += (size_t)n;
    if (q->have < 3 || q->have < 3 + frame_len(q)) return 1;
    size_t len = frame_len(q);
    q->last = q->frame[0];
    if (q->frame[0] == 'W' && len >= 4) set_winsize(master, q->frame + 3);
    if (q->frame[0] == 'D' && len > 0) {
        q->pend = q->frame + 3;
        q->npend = len;
    }
    if (q->frame[0] != 'D' || len == 0) q->have = 0; /* else: free once written */
    return 2;
}

static void flush_master(int master, struct inq *q) {
    while (q->npend > 0) {
        ssize_t w = write(master, q->pend, q->npend);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            q->npend = 0; /* the pty is gone: drop the input */
            break;
        }
        q->pend += w;
        q->npend -= (size_t)w;
    }
    q->have = 0;
}

/* Returns in the child (with the pty as its stdio); the parent relays and exits. */
static void tty_session(const char *port_name, const char *rid) {
    int port = open_port(port_name);
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) die("posix_openpt", "");
    if (grantpt(master) < 0 || unlockpt(master) < 0) die("unlockpt", "");
    char *slave = ptsname(master);
    if (!slave) die("ptsname", "");
    send_frame(port, 'R', rid, strlen(rid));

    static struct inq q;
    int r;
    do { /* the first frame is the host's window size; nothing comes before it */
        r = read_port(port, master, &q);
        if (r == 0) exit(0);
        q.npend = 0;
        if (r == 2) q.have = 0;
    } while (!(r == 2 && q.last == 'W'));
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe", "");
    struct sigaction sa = {0};
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    int sync[2]; /* closed by the child's exec: input waits until the pty is its tty */
    if (pipe2(sync, O_CLOEXEC) < 0) die("pipe", "");
    pid_t child = fork();
    if (child < 0) die("fork", "");
    if (child == 0) {
        close(sync[0]);
        default_signals(); /* a terminal's command gets Ctrl-C, Ctrl-backslash */
        if (setsid() < 0) die("setsid", "");
        int s = open(slave, O_RDWR);
        if (s < 0) die("open", slave);
        if (ioctl(s, TIOCSCTTY, 0) < 0) die("ioctl", "TIOCSCTTY");
        for (int fd = 0; fd < 3; fd++)
            if (dup2(s, fd) < 0) die("dup2", slave);
        if (s > 2) close(s);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != sync[1]) close(fd);
        return;
    }
    close(sync[1]);
    char c;
    while (read(sync[0], &c, 1) < 0 && errno == EINTR) {}
    close(sync[0]);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    char buf[4096];
    int master_open = 1;
    for (;;) {
        struct pollfd p[3] = {
            {sigchld_pipe[0], POLLIN, 0},
            {q.npend ? -1 : port, POLLIN, 0},
            {master_open ? master : -1, (short)(POLLIN | (q.npend ? POLLOUT : 0)), 0},
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll", "");
        }
        if (p[0].revents) {
            int status;
            while (read(sigchld_pipe[0], buf, sizeof buf) > 0) {}
            if (waitpid(child, &status, WNOHANG) == child) {
                for (;;) { /* what the command wrote last */
                    ssize_t n = read(master, buf, sizeof buf);
                    if (n <= 0) break;
                    send_frame(port, 'D', buf, (size_t)n);
                }
                int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                unsigned char c[4] = {(unsigned char)(code >> 24), (unsigned char)(code >> 16),
                                      (unsigned char)(code >> 8), (unsigned char)code};
                send_frame(port, 'X', c, 4);
                exit(0);
            }
        }
        if (p[1].revents) {
            if (!read_port(port, master, &q)) { /* the host left: hang the session up */
                kill(-child, SIGHUP);
                kill(-child, SIGCONT);
                exit(0);
            }
        }
        if (master_open && p[2].revents) {
            if (q.npend) flush_master(master, &q);
            if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n = read(master, buf, sizeof buf);
                if (n > 0) send_frame(port, 'D', buf, (size_t)n);
                else if (n == 0 || (errno != EAGAIN && errno != EINTR)) master_open = 0;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc > 3 && strcmp(argv[1], "--tty") == 0) {
        tty_session(argv[2], argv[3]);
        argv[3] = argv[0];
        argv += 3;
        argc -= 3;
    }
    if (argc < 11 || strcmp(argv[9], "--") != 0) {
        fprintf(stderr, "usage: rkt-exec ROOT CWD UID GID GROUPS CAPS NNP CGROUP -- ARGV...\n");
        return 127;
    }
    const char *root = argv[1], *cwd = argv[2], *cgroup = argv[8];
    uid_t uid = (uid_t)strtoul(argv[3], NULL, 10);
    gid_t gid = (gid_t)strtoul(argv[4], NULL, 10);
    unsigned long groups_ul[64];
    gid_t groups[64];
    int ngroups = parse_list(argv[5], groups_ul, 64);
    for (int i = 0; i < ngroups; i++) groups[i] = (gid_t)groups_ul[i];
    int all_caps = strcmp(argv[6], "all") == 0;
    unsigned long caps[64];
    int ncaps = all_caps ? 0 : parse_list(argv[6], caps, 64);
    int nnp = strcmp(argv[7], "1") == 0;
    read_seccomp();
    apply_limits();

    if (strcmp(cgroup, "-") != 0) {
        char path[4096], pid[32];
        snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
        int fd = open(path, O_WRONLY);
        if (fd < 0) die("open", path);
        int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        if (write(fd, pid, (size_t)len) < 0) die("write", path);
        close(fd);
    }
    if (chroot(root) < 0) die("chroot", root);
    if (chdir("/") < 0 || chdir(cwd) < 0) die("chdir", cwd);

    __u32 set[2] = {0, 0};
    for (int i = 0; i < ncaps; i++)
        if (caps[i] < 64) set[caps[i] / 32] |= 1u << (caps[i] % 32);
    if (!all_caps) {
        for (unsigned long c = 0; c < 64; c++) {
            if (set[c / 32] & (1u << (c % 32))) continue;
            if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die("prctl", "PR_CAPBSET_DROP");
        }
    }
    if (setgroups((size_t)ngroups, groups) < 0) die("setgroups", argv[5]);
    if (setgid(gid) < 0) die("setgid", argv[4]);
    if (uid != 0 && !all_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("prctl", "PR_SET_KEEPCAPS");
    if (setuid(uid) < 0) die("setuid", argv[3]);
    if (!all_caps) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        for (int i = 0; i < 2; i++) {
            data[i].effective = set[i];
            data[i].permitted = set[i];
            data[i].inheritable = set[i];
        }
        if (syscall(SYS_capset, &hdr, data) < 0) die("capset", argv[6]);
        if (uid != 0)
            for (int i = 0; i < ncaps; i++)
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[i], 0, 0) < 0) die("prctl", "PR_CAP_AMBIENT_RAISE");
    }
    if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("prctl", "PR_SET_NO_NEW_PRIVS");
    keep_tty(); /* returns in the app's process */
    default_signals(); /* before the app's filter, which may forbid rt_sigaction */
    load_seccomp();
    execvp(argv[10], &argv[10]);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "rkt-exec: exec %s: %s\n", argv[10], strerror(errno));
    return code;
}
