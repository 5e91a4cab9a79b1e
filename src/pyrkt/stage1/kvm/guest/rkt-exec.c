/*
 * rkt-exec: the guest's last step before an app runs, and the guest's first process
 * (static, no dependencies).
 *
 *   rkt-exec [--tty PORT RID] [--ns FILE [--mounts PLAN]] ROOT CWD UID GID GROUPS CAPS NNP
 *            CGROUP -- ARGV...
 *
 * GROUPS: comma-separated gids or "-"; CAPS: comma-separated capability numbers to
 * retain, or "all" to leave them alone; NNP: 1 sets no_new_privs; CGROUP: a cgroup
 * folder to join, or "-". The environment is passed through unchanged (the pod script
 * builds it with `env -i`). Each failure prints the failing call and exits 127.
 * RKT_SECCOMP=FILE (taken out of the environment): the app's seccomp filter, a BPF
 * program (struct sock_filter[]) read before anything else and loaded just before the exec.
 * RKT_RLIMITS=RES:SOFT:HARD,... (taken out too): resource limits set before the user
 * changes (RES: the RLIMIT_* number; a value of 18446744073709551615 is unlimited);
 * RKT_UMASK=OCTAL: the app's umask (the OCI runtime's process.rlimits and user.umask).
 * RKT_TTY_KEEPER=1: the app is on the pod's terminal (keep_tty below).
 * RKT_DIAGNOSE=1 (taken out too): an app's start; when ARGV[0], an absolute path, cannot
 * be executed, one line says why as rkt's stage1 did (diagnose) and the exit status is 203.
 * Every file descriptor above 2 is closed first: nothing of the init's reaches the app.
 *
 * Where ARGV runs:
 *   --ns FILE --mounts PLAN   (an app's start) in a mount namespace of its own whose root
 *       is ROOT: ROOT is bound onto itself and made the root with pivot_root, the steps
 *       of PLAN are made under it, then the old root (the initramfs, the pod's 9p shares,
 *       the init's /proc, /sys, /dev, the other apps' roots) is unmounted (MNT_DETACH):
 *       nothing of it is left in the namespace, so a chroot escape leads nowhere. The
 *       namespace is then bound onto FILE in the init's view (the pod script made FILE
 *       empty beforehand; it is removed if the start fails before that).
 *   --ns FILE                 (`rkt enter`) joins the namespace bound at FILE (setns):
 *       the app's root and mounts, its /run and /dev/shm.
 *   neither                   a plain chroot into ROOT (host-side tests only).
 *
 * PLAN: one step per line, fields separated by one space (a space, tab, newline or
 * backslash in a field written \040, \011, \012, \134, as in fstab); targets are
 * absolute paths inside ROOT, symlinks resolved inside it (the host mounts /proc last,
 * so that no /proc/PID/root link can lead a target out while we have every capability):
 *   mount SOURCE TARGET FSTYPE OPTIONS   FSTYPE "none" for a bind, whose SOURCE is a path
 *                                        in the init's view; OPTIONS comma-separated, "-"
 *                                        for none (see mount_step)
 *   mknod TARGET MODE MAJOR MINOR        a character device (MODE octal)
 *   symlink TARGET LINKTO
 *   mkdir TARGET MODE
 *
 *   rkt-exec --tty PORT RID ...          (`rkt enter` with a terminal)
 *
 * runs ARGV as above on a new pty (its controlling terminal, in a new session) and relays
 * that pty to the host over the virtio-serial port named PORT, in frames of one type
 * byte, a 2-byte big-endian length and the payload:
 *   guest -> host: 'R' RID (ready), 'D' output, 'X' 4-byte exit code (128+N for signal N)
 *   host -> guest: 'W' rows cols (2 bytes each, the first frame), 'D' input
 * The host closing the port hangs the session up.
 *
 *   rkt-exec --restore SECONDS NANOSECONDS SEED [OLDMAC=NEWMAC...]
 *                      [disk=SERIAL:READAHEAD_KB:TARGET...]
 *
 * what a pod restored from a template does first (the words of its "go"): sets the wall
 * clock to the host's, mixes SEED (hex, up to 256 random bytes from the host) into the
 * kernel's entropy pool, credited, and reseeds its RNG at once (every clone of a template
 * starts with the template's RNG state), gives the NIC whose MAC is OLDMAC (the
 * template's) the pod's NEWMAC, and drops what the guest's page cache holds of each
 * virtio-blk disk (BLKFLSBUF): the template probed its disk slots with empty placeholders
 * behind them, the pod has its own disks there (templates/shape.py), and a mount must
 * read those, not the zeros the template's partition scan cached. With disk= words (the
 * pod's disks), a child of it mounts them in the background (mount_disks), while the
 * init mounts its shares: each disk, found by its serial number, at DISKS_DIR/SERIAL
 * (ext4, noatime, nodev), with READAHEAD_KB of read-ahead (0: the kernel's); once --go
 * mounted the shares, it moves each to its TARGET (an app's rootfs in the stage1 share,
 * or a volume's mount point: made if missing), so the pod script needs no `mount` (a
 * fork+exec); then it writes one line to the FIFO DISKS_DIR/ready, made before the child
 * starts: "ok", or "missing SERIAL" / "mount SERIAL" / "move SERIAL" (the first that
 * failed). The pod script waits for that line (guest/script.py disk_lines).
 *
 *   rkt-exec --go PORT MOUNTS                   (a template's init, templates/restore.py)
 *
 * the template's side of the handshake, started by the init before the template is
 * saved: says "ready" on PORT (the rkt.go port's device) and waits there; a pod restored
 * from the template resumes in that wait with the host's "go WORDS...", takes the words
 * as --restore does, answers "ok" ("failed" when it cannot; nothing, exit status 1, when
 * the host closed the port: the template's QEMU is done), then makes the steps of MOUNTS
 * (a mount plan, as --mounts: the pod's shares). So no fork+exec stands between the
 * restore and the pod script: under emulation the first ones after a restore cost tens
 * of milliseconds (the translations of the template's boot are not saved).
 *
 *   rkt-exec --mount MOUNTS                     (a booted pod's init: the same mounts)
 *
 *   rkt-exec --halter                           (the init's, stdin a FIFO)
 *
 * the VM's end, started by the init before a template is saved: waits for a line on
 * its stdin, then syncs the disks and resets the VM (fast_reset, else the kernel's
 * reboot; QEMU runs with -no-reboot: it ends), so that no fork+exec of `reboot` and no
 * shutdown of every device stand between a pod's last app and the VM's end. It ignores
 * every signal it can (an OCI `kill SIG all` is for the apps).
 *
 * As PID 1 (the kernel starts it as /init): makes the init's root a mount (see boot) and
 * execs the init script, /init.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/random.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PLAN_MAX (1 << 20)

/* The placeholder FILE of --ns while the app's start may still fail (then removed, so
 * that `rkt enter` fails at once instead of waiting for the namespace). */
static int ns_dirfd = -1;
static const char *ns_base;
/* --go: the rkt.go port while the host waits for the answer to its go. */
static int go_port = -1;

static void die(const char *what, const char *arg) {
    int e = errno;
    if (ns_dirfd >= 0) unlinkat(ns_dirfd, ns_base, 0);
    if (go_port >= 0 && write(go_port, "failed\n", 7) < 0) {} /* the host boots the pod */
    fprintf(stderr, "rkt-exec: %s %s: %s\n", what, arg, strerror(e));
    exit(127);
}

static void warn(const char *what, const char *arg) {
    fprintf(stderr, "rkt-exec: warning: %s %s: %s\n", what, arg, strerror(errno));
}

/* A whole file (at most max bytes, NUL-terminated); its size in *len. */
static char *read_file(const char *path, size_t max, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) die("open", path);
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        errno = EFBIG;
        die("read", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) die("malloc", path);
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read", path);
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    return buf;
}

static struct sock_fprog seccomp_prog;

static void read_seccomp(void) {
    const char *env = getenv("RKT_SECCOMP");
    if (!env) return;
    char *path = strdup(env);
    unsetenv("RKT_SECCOMP");
    size_t n;
    char *buf = read_file(path, BPF_MAXINSNS * sizeof(struct sock_filter), &n);
    if (n == 0 || n % sizeof(struct sock_filter)) {
        fprintf(stderr, "rkt-exec: %s: not a seccomp program\n", path);
        exit(127);
    }
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

/* Every fd above 2 closed, but keep (-1: none). */
static void close_fds(int keep) {
    if (keep > 3) syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u);
    syscall(SYS_close_range, (unsigned)(keep >= 3 ? keep + 1 : 3), ~0u, 0u);
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

/* The entry of the sysfs folder dir whose name starts with prefix and whose attribute
 * attr (one line) reads value, in entry (at most 32 bytes); 0 when found. */
static int sysfs_find(const char *dir, const char *prefix, const char *attr,
                      const char *value, char entry[32]) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
            strlen(e->d_name) >= 32)
            continue;
        char path[128], buf[128];
        snprintf(path, sizeof path, "%.40s/%.31s/%.40s", dir, e->d_name, attr);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        if (strcmp(buf, value) == 0) {
            snprintf(entry, 32, "%.31s", e->d_name);
            found = 0;
        }
    }
    closedir(d);
    return found;
}

/* The device (/dev/vportNpM) of the virtio-serial port whose name is `name`; "fd:N" is
 * the inherited fd N instead (tests on the host, over a socketpair). */
static int open_port(const char *name) {
    if (strncmp(name, "fd:", 3) == 0) {
        int fd = (int)strtol(name + 3, NULL, 10);
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) die("port", name);
        return fd;
    }
    char entry[32], path[48];
    if (sysfs_find("/sys/class/virtio-ports", "", "name", name, entry) < 0) {
        errno = ENOENT;
        die("virtio port", name);
    }
    snprintf(path, sizeof path, "/dev/%s", entry);
    int p = open(path, O_RDWR | O_CLOEXEC);
    if (p < 0) die("open", path);
    return p;
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

/* Returns in the child (with the pty as its stdio, every other fd closed but keep); the
 * parent relays and exits. The pty comes from the devpts of the namespace we are in (the
 * app's, once joined). */
static void tty_session(int port, const char *rid, int keep) {
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
            if (fd != sync[1] && fd != keep) close(fd);
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


/* ---- --ns: the app's mount namespace ---- */

/* Undoes the \NNN escapes of a plan field, in place. */
static char *unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
    return s;
}

/* mkdir -p, each folder with mode; whether the last one was made here. */
static int mkdir_p(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int made = 0;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        made = mkdir(buf, mode) == 0;
        if (!made && errno != EEXIST) return -1;
        *p = c;
        if (c == 0) return made;
    }
}

static void copy_file(int from, int to, const char *name) {
    static char buf[65536];
    int in = openat(from, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int out = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (in < 0 || out < 0) {
        warn("copy", name);
    } else {
        for (;;) {
            ssize_t n = read(in, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) warn("read", name);
            if (n <= 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(out, buf + off, (size_t)(n - off));
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) {
                    warn("write", name);
                    n = -1;
                    break;
                }
                off += w;
            }
            if (n < 0) break;
        }
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
}

/* What the folder from holds, copied into the folder to with its owners, modes and
 * times (cp -a; hard links are copied as files). Errors are said, not fatal. */
static void copy_tree(int from, int to, int depth) {
    int dup_fd = dup(from);
    DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
    if (!d || depth > 32) {
        warn("copy", "(folder)");
        if (d) closedir(d);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0) continue;
        struct stat st;
        if (fstatat(from, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            warn("stat", n);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (mkdirat(to, n, 0700) < 0) {
                warn("mkdir", n);
                continue;
            }
            int a = openat(from, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int b = openat(to, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (a >= 0 && b >= 0) copy_tree(a, b, depth + 1);
            else warn("open", n);
            if (a >= 0) close(a);
            if (b >= 0) close(b);
        } else if (S_ISREG(st.st_mode)) {
            copy_file(from, to, n);
        } else if (S_ISLNK(st.st_mode)) {
            char link[PATH_MAX];
            ssize_t len = readlinkat(from, n, link, sizeof link - 1);
            if (len < 0) {
                warn("readlink", n);
                continue;
            }
            link[len] = 0;
            if (symlinkat(link, to, n) < 0) {
                warn("symlink", n);
                continue;
            }
        } else if (mknodat(to, n, st.st_mode, st.st_rdev) < 0) {
            warn("mknod", n);
            continue;
        }
        if (fchownat(to, n, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) warn("chown", n);
        if (!S_ISLNK(st.st_mode) && fchmodat(to, n, st.st_mode & 07777, 0) < 0) warn("chmod", n);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(to, n, ts, AT_SYMLINK_NOFOLLOW);
    }
    closedir(d);
}

/* `mount SOURCE TARGET FSTYPE OPTIONS`. OPTIONS: the mount flags ro, nosuid, nodev,
 * noexec, bind, rbind, remount, strictatime, relatime; and
 *   mkdir     make the target folder when it is missing
 *   mkfile    make the target file when it is missing; skip the step when that fails
 *   copyup    copy what the target folder held into the new filesystem
 *   optional  skip the step when the kernel lacks the filesystem (ENODEV)
 *   file=NAME the filesystem (a share holding one file: a single-file volume) is only
 *             a way to NAME, which is bound onto the target (see mount_file)
 * anything else is the filesystem's data. A bind's SOURCE is resolved under the old root
 * (our working folder): the init's view. */
/* A single-file volume: the share holding the file is mounted on the old root's /mnt
 * (the initramfs's, whose mounts in this namespace are the app's own and go with the old
 * root), the file NAME in it bound onto the target (made, with its folders, when
 * missing), then the share is let go. */
static void mount_file(const char *source, const char *target, const char *type,
                       unsigned long flags, const char *data, const char *name) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "mnt/%s", name) >= (int)sizeof path || strchr(name, '/')) {
        errno = EINVAL;
        die("file= of", target);
    }
    if (mount(source, "mnt", type, flags, data) < 0) die("mount", target);
    int r = mount(path, target, NULL, MS_BIND, NULL);
    if (r < 0 && errno == ENOENT) {
        char *dir = strdup(target), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = 0;
            mkdir_p(dir, 0755);
        }
        free(dir);
        int fd = open(target, O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0644);
        if (fd >= 0) close(fd);
        r = mount(path, target, NULL, MS_BIND, NULL);
    }
    if (r < 0) die("mount", target);
    if ((flags & MS_RDONLY) &&
        mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & (MS_NOSUID | MS_NODEV)), NULL) < 0)
        die("remount", target);
    if (umount2("mnt", MNT_DETACH) < 0) die("umount2", "mnt");
}

static void mount_step(const char *src, const char *target, const char *fstype, char *opts) {
    static const struct { const char *name; unsigned long flag; } known[] = {
        {"ro", MS_RDONLY}, {"nosuid", MS_NOSUID}, {"nodev", MS_NODEV}, {"noexec", MS_NOEXEC},
        {"bind", MS_BIND}, {"rbind", MS_BIND | MS_REC}, {"remount", MS_REMOUNT},
        {"strictatime", MS_STRICTATIME}, {"relatime", MS_RELATIME}, {"defaults", 0},
    };
    unsigned long flags = 0;
    int want_dir = 0, want_file = 0, copyup = 0, optional = 0;
    const char *file = NULL;
    char data[1024] = "";
    size_t dlen = 0;
    for (char *o = strcmp(opts, "-") == 0 ? NULL : strtok(opts, ","); o; o = strtok(NULL, ",")) {
        size_t k, nk = sizeof known / sizeof known[0];
        for (k = 0; k < nk && strcmp(o, known[k].name) != 0; k++) {}
        if (k < nk) flags |= known[k].flag;
        else if (strcmp(o, "mkdir") == 0) want_dir = 1;
        else if (strcmp(o, "mkfile") == 0) want_file = 1;
        else if (strcmp(o, "copyup") == 0) copyup = 1;
        else if (strcmp(o, "optional") == 0) optional = 1;
        else if (strncmp(o, "file=", 5) == 0) file = o + 5;
        else dlen += (size_t)snprintf(data + dlen, sizeof data - dlen, "%s%s", dlen ? "," : "", o);
        if (dlen >= sizeof data) {
            errno = E2BIG;
            die("mount options for", target);
        }
    }
    if (file) {
        mount_file(src, target, strcmp(fstype, "none") == 0 ? NULL : fstype, flags,
                   dlen ? data : NULL, file);
        return;
    }
    int bind = (flags & MS_BIND) && !(flags & MS_REMOUNT);
    if (bind) {
        while (*src == '/') src++;
        if (!*src) src = ".";
    }
    const char *source = strcmp(src, "-") == 0 ? NULL : src;
    const char *type = strcmp(fstype, "none") == 0 ? NULL : fstype;
    unsigned long first = bind ? flags & (MS_BIND | MS_REC) : flags;
    int under = copyup ? open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int made = 0;
    int r = mount(source, target, type, first, dlen ? data : NULL);
    if (r < 0 && errno == ENOENT && want_dir) {
        made = mkdir_p(target, 0755) > 0;
        r = mount(source, target, type, first, dlen ? data : NULL);
    } else if (r < 0 && errno == ENOENT && want_file) {
        int fd = open(target, O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0644);
        if (fd < 0) return;
        close(fd);
        r = mount(source, target, type, first, dlen ? data : NULL);
    }
    if (r < 0 && (want_file || (optional && errno == ENODEV))) {
        if (made) rmdir(target);
        if (under >= 0) close(under);
        return;
    }
    if (r < 0) die("mount", target);
    if (bind && (flags & ~(MS_BIND | MS_REC)) &&
        mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | (flags & ~MS_REC), NULL) < 0)
        die("remount", target);
    if (under >= 0) {
        int top = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (top < 0) die("open", target);
        copy_tree(under, top, 0);
        close(top);
        close(under);
    }
}

static void run_plan(char *plan, const char *path) {
    char *save_line;
    for (char *line = strtok_r(plan, "\n", &save_line); line;
         line = strtok_r(NULL, "\n", &save_line)) {
        if (line[0] == '#' || line[0] == 0) continue;
        char *f[6];
        int n = 0;
        char *save_field;
        for (char *t = strtok_r(line, " ", &save_field); t && n < 6;
             t = strtok_r(NULL, " ", &save_field))
            f[n++] = unescape(t);
        const char *target = n >= 3 ? f[strcmp(f[0], "mount") == 0 ? 2 : 1] : "";
        if (target[0] != '/') { /* relative: it would land under the old root */
            errno = EINVAL;
            die("step of", path);
        }
        if (n == 5 && strcmp(f[0], "mount") == 0) {
            mount_step(f[1], f[2], f[3], f[4]);
        } else if (n == 5 && strcmp(f[0], "mknod") == 0) {
            mode_t mode = (mode_t)strtoul(f[2], NULL, 8);
            dev_t dev = makedev(strtoul(f[3], NULL, 10), strtoul(f[4], NULL, 10));
            if (mknod(f[1], S_IFCHR | mode, dev) < 0 && errno != EEXIST) die("mknod", f[1]);
        } else if (n == 3 && strcmp(f[0], "symlink") == 0) {
            if (symlink(f[2], f[1]) < 0 && errno != EEXIST) die("symlink", f[1]);
        } else if (n == 3 && strcmp(f[0], "mkdir") == 0) {
            if (mkdir(f[1], (mode_t)strtoul(f[2], NULL, 8)) < 0 && errno != EEXIST)
                die("mkdir", f[1]);
        } else {
            errno = EINVAL;
            die("step of", path);
        }
    }
}

/* The app's own mount namespace with ROOT as its root (see the top of this file). */
static void new_ns(const char *root, const char *plan_path, const char *file) {
    size_t len;
    char *plan = read_file(plan_path, PLAN_MAX, &len);
    int init_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (init_ns < 0) die("open", "/proc/self/ns/mnt");
    char *dir = strdup(file), *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        errno = EINVAL;
        die("namespace file", file);
    }
    *slash = 0;
    ns_base = slash + 1;
    ns_dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ns_dirfd < 0) die("open", dir);
    if (unshare(CLONE_NEWNS) < 0) die("unshare", "CLONE_NEWNS");
    int app_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (app_ns < 0) die("open", "/proc/self/ns/mnt");
    /* nothing we do here reaches the init's mounts (or the host's, in tests) */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("mount", "/ (private)");
    if (mount(root, root, NULL, MS_BIND, NULL) < 0) die("mount", root);
    int old_root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (old_root < 0 || chdir(root) < 0) die("chdir", root);
    /* The old root ends up stacked on the new one; "/" is the new one from here on. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", root);
    if (fchdir(old_root) < 0) die("fchdir", "(old root)");
    mode_t mask = umask(0);
    run_plan(plan, plan_path);
    umask(mask);
    free(plan);
    if (umount2(".", MNT_DETACH) < 0) die("umount2", "(old root)");
    close(old_root);
    if (chdir("/") < 0) die("chdir", "/");
    /* Bind the namespace onto FILE in the init's view, for `rkt enter`, and come back:
     * setns puts our root and working folder at the namespace's root. */
    char src[64];
    snprintf(src, sizeof src, "/proc/self/fd/%d", app_ns);
    if (setns(init_ns, CLONE_NEWNS) < 0) die("setns", "(init)");
    int fd = open(file, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) die("open", file);
    close(fd);
    if (mount(src, file, NULL, MS_BIND, NULL) < 0) die("mount", file);
    close(ns_dirfd);
    ns_dirfd = -1;
    if (setns(app_ns, CLONE_NEWNS) < 0) die("setns", file);
    close(app_ns);
    close(init_ns);
    free(dir);
}

/* Joins the namespace bound at FILE; while FILE is still the pod script's empty
 * placeholder (the app is setting up), waits for it. */
static void join_ns(const char *file) {
    for (int tries = 0;; tries++) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                fprintf(stderr, "rkt-exec: %s: the app's namespace is not there "
                                "(the app did not start)\n", file);
            else
                fprintf(stderr, "rkt-exec: open %s: %s\n", file, strerror(errno));
            exit(127);
        }
        int r = setns(fd, CLONE_NEWNS), e = errno;
        close(fd);
        if (r == 0) return;
        if (e != EINVAL || tries >= 3000) {
            errno = e;
            die("setns", file);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- PID 1 ---- */

/* The kernel starts the init on the initramfs, which is mounted on nothing: pivot_root
 * refuses to move such a root away. So the init's root becomes a bind mount of the
 * initramfs onto itself; each app's pivot_root then detaches it (and every mount on it)
 * from the app's namespace. Also mounts /proc, /sys, /dev (syscalls here instead of a
 * fork+exec each from the script), then execs the init script. */
static void boot(int argc, char **argv) {
    if (mount("/", "/mnt", NULL, MS_BIND, NULL) < 0 || chdir("/mnt") < 0 ||
        mount("/mnt", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
        warn("init:", "bind-mounting the initramfs onto itself");
    if (mount("proc", "/proc", "proc", 0, NULL) < 0) warn("mount", "/proc");
    if (mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) warn("mount", "/sys");
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) < 0) warn("mount", "/dev");
    char *args[argc + 2];
    args[0] = "sh";
    args[1] = "/init.sh";
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    execv("/bin/sh", args);
    warn("exec", "/bin/sh");
    exit(1);
}


static int hex_nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Hex text -> bytes; the count, or -1 when text is not (at most max bytes of) hex. */
static int parse_hex(const char *text, unsigned char *out, int max, int sep) {
    int n = 0;
    for (const char *p = text; *p;) {
        int hi = hex_nibble(p[0]), lo = hi < 0 ? -1 : hex_nibble(p[1]);
        if (lo < 0 || n == max) return -1;
        out[n++] = (unsigned char)(hi << 4 | lo);
        p += 2;
        if (sep && *p == sep) p++;
    }
    return n;
}

/* The interface whose hardware address is mac gets new_mac. */
static void set_mac(int sock, const unsigned char *mac, const unsigned char *new_mac,
                    const char *arg) {
    struct if_nameindex *ifs = if_nameindex();
    if (!ifs) die("if_nameindex", arg);
    for (struct if_nameindex *i = ifs; i->if_index; i++) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        strncpy(ifr.ifr_name, i->if_name, IFNAMSIZ - 1);
        if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0 || memcmp(ifr.ifr_hwaddr.sa_data, mac, 6))
            continue;
        memcpy(ifr.ifr_hwaddr.sa_data, new_mac, 6);
        ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        if (ioctl(sock, SIOCSIFHWADDR, &ifr) < 0) die("SIOCSIFHWADDR", arg);
        if_freenameindex(ifs);
        return;
    }
    errno = ENODEV;
    die("no NIC for", arg);
}

/* Drop the page cache of every virtio-blk disk (/dev/vd*): what the template read of
 * its empty slots. A disk being hot-plugged may have no node yet: nothing cached. */
static void flush_disks(void) {
    DIR *d = opendir("/sys/block");
    if (!d) die("opendir", "/sys/block");
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "vd", 2) != 0) continue;
        char dev[sizeof e->d_name + 5];
        snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
        int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENXIO || errno == ENODEV) continue;
            die("open", dev);
        }
        if (ioctl(fd, BLKFLSBUF, 0) < 0) die("BLKFLSBUF", dev);
        close(fd);
    }
    closedir(d);
}

#define DISKS_DIR "/run/rkt-disks"
#define DISK_WAIT_NS 10000000L /* 10 ms between looks for a disk being hot-plugged */
#define DISK_WAIT_STEPS 6000   /* a minute */

/* The device (/dev/vdX) of the virtio-blk disk whose serial number is serial, in dev
 * (48 bytes); 0 when found. */
static int find_disk(const char *serial, char *dev) {
    char entry[32];
    if (sysfs_find("/sys/block", "vd", "serial", serial, entry) < 0) return -1;
    snprintf(dev, 48, "/dev/%s", entry);
    return 0;
}

/* A disk of the pod, as a "disk=SERIAL:READAHEAD_KB:TARGET" word of --restore names it. */
struct pod_disk {
    const char *serial, *target;
    long read_ahead_kb; /* 0: the kernel's default */
};

/* Parse word (its "disk=" already skipped) into d, in place; 0 when it is well formed:
 * SERIAL of [a-z0-9-] (1-20, a virtio serial number), READAHEAD_KB a number up to 65536,
 * TARGET an absolute path of [A-Za-z0-9._/-] without a ".." (under PATH_MAX). */
static int parse_disk(char *word, struct pod_disk *d) {
    char *c1 = strchr(word, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2) return -1;
    *c1 = *c2 = 0;
    d->serial = word;
    d->target = c2 + 1;
    size_t sn = strlen(word), tn = strlen(d->target);
    if (!sn || sn > 20 || strspn(word, "abcdefghijklmnopqrstuvwxyz0123456789-") != sn) return -1;
    char *end;
    d->read_ahead_kb = strtol(c1 + 1, &end, 10);
    if (end == c1 + 1 || *end || d->read_ahead_kb < 0 || d->read_ahead_kb > 65536) return -1;
    if (d->target[0] != '/' || tn >= PATH_MAX - 64 || strstr(d->target, "..") ||
        strspn(d->target, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-")
            != tn)
        return -1;
    return 0;
}

/* The background child of --restore: mount each disk at DISKS_DIR/SERIAL (while the
 * init mounts its shares) and give it its read-ahead; once the shares are mounted (the
 * parent closed its end of shares, after --go's mounts), move each to its TARGET; then
 * say how it went on the FIFO DISKS_DIR/ready (its open waits for the pod script). */
static void mount_disks(const struct pod_disk *disks, int n, int shares) {
    char result[96] = "ok";
    for (int i = 0; i < n && strcmp(result, "ok") == 0; i++) {
        const char *sn = disks[i].serial;
        char dev[48], dir[96];
        int step = 0;
        while (find_disk(sn, dev) < 0) {
            if (++step >= DISK_WAIT_STEPS) break;
            struct timespec ts = {0, DISK_WAIT_NS};
            nanosleep(&ts, NULL);
        }
        if (step >= DISK_WAIT_STEPS) {
            snprintf(result, sizeof result, "missing %s", sn);
            break;
        }
        snprintf(dir, sizeof dir, "%s/%s", DISKS_DIR, sn);
        if ((mkdir(dir, 0700) < 0 && errno != EEXIST) ||
            mount(dev, dir, "ext4", MS_NOATIME | MS_NODEV, NULL) < 0) {
            warn("mount", dev);
            snprintf(result, sizeof result, "mount %s", sn);
            break;
        }
        if (disks[i].read_ahead_kb > 0) { /* the queue of /dev/vdX: /sys/block/vdX */
            char ra[96];
            snprintf(ra, sizeof ra, "/sys/block/%.40s/queue/read_ahead_kb", dev + 5);
            int fd = open(ra, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || dprintf(fd, "%ld\n", disks[i].read_ahead_kb) < 0) warn("write", ra);
            if (fd >= 0) close(fd);
        }
    }
    char c;
    while (read(shares, &c, 1) < 0 && errno == EINTR) {} /* end of file: shares mounted */
    close(shares);
    for (int i = 0; i < n && strcmp(result, "ok") == 0; i++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/%s", DISKS_DIR, disks[i].serial);
        if (mkdir_p(disks[i].target, 0755) < 0 ||
            mount(dir, disks[i].target, NULL, MS_MOVE, NULL) < 0) {
            warn("move", disks[i].target);
            snprintf(result, sizeof result, "move %s", disks[i].serial);
        }
    }
    int fd = open(DISKS_DIR "/ready", O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open", DISKS_DIR "/ready");
    dprintf(fd, "%s\n", result);
    close(fd);
}

/* --go's end of the pipe the disks' child waits on (closed once the shares are mounted). */
static int shares_fd = -1;

static int restore_main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: rkt-exec --restore SECONDS NANOSECONDS SEED [OLDMAC=NEWMAC...] "
                        "[disk=SERIAL:READAHEAD_KB:TARGET...]\n");
        return 127;
    }
    struct timespec ts = {(time_t)strtoll(argv[2], NULL, 10), strtol(argv[3], NULL, 10)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) die("clock_settime", argv[2]);
    struct {
        struct rand_pool_info info;
        unsigned char buf[256];
    } seed;
    int n = parse_hex(argv[4], seed.buf, (int)sizeof seed.buf, 0);
    if (n <= 0) {
        errno = EINVAL;
        die("seed", argv[4]);
    }
    seed.info.entropy_count = n * 8;
    seed.info.buf_size = n;
    int rnd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (rnd < 0) die("open", "/dev/urandom");
    if (ioctl(rnd, RNDADDENTROPY, &seed.info) < 0) die("RNDADDENTROPY", "/dev/urandom");
    /* ENODATA: the RNG was not initialized yet; the credited seed just initialized it. */
    if (ioctl(rnd, RNDRESEEDCRNG) < 0 && errno != ENODATA) die("RNDRESEEDCRNG", "/dev/urandom");
    close(rnd);
    struct pod_disk disk[argc];
    int disks = 0, sock = -1;
    for (int i = 5; i < argc; i++) {
        if (strncmp(argv[i], "disk=", 5) == 0) {
            if (parse_disk(argv[i] + 5, &disk[disks]) < 0) {
                errno = EINVAL;
                die("disk", argv[i]);
            }
            disks++;
            continue;
        }
        if (sock < 0 && (sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            die("socket", "AF_INET");
        unsigned char macs[12];
        const char *eq = strchr(argv[i], '=');
        char old[18];
        if (!eq || eq - argv[i] != 17) {
            errno = EINVAL;
            die("MAC pair", argv[i]);
        }
        memcpy(old, argv[i], 17);
        old[17] = 0;
        if (parse_hex(old, macs, 6, ':') != 6 || parse_hex(eq + 1, macs + 6, 6, ':') != 6) {
            errno = EINVAL;
            die("MAC pair", argv[i]);
        }
        set_mac(sock, macs, macs + 6, argv[i]);
    }
    flush_disks();
    if (disks == 0) return 0;
    if ((mkdir(DISKS_DIR, 0700) < 0 && errno != EEXIST) ||
        mkfifo(DISKS_DIR "/ready", 0600) < 0)
        die("mkfifo", DISKS_DIR "/ready");
    int shares[2];
    if (pipe2(shares, O_CLOEXEC) < 0) die("pipe2", "");
    pid_t pid = fork();
    if (pid < 0) die("fork", "");
    if (pid == 0) { /* the init's fds (its ports, --go's) are not the child's business */
        go_port = -1;
        for (int fd = 0; fd < 256; fd++)
            if (fd != 2 && fd != shares[0]) close(fd);
        mount_disks(disk, disks, shares[0]);
        _exit(0);
    }
    close(shares[0]);
    shares_fd = shares[1];
    return 0;
}

#define GO_MAX 4096  /* bytes of the go line */
#define GO_WORDS 64  /* its words: the NICs' MAC pairs but 4 */

/* Runs the steps of the mount plan at path (the init's own mounts: the pod's shares). */
static void init_mounts(const char *path) {
    size_t len;
    char *plan = read_file(path, PLAN_MAX, &len);
    run_plan(plan, path);
    free(plan);
}

static int go_main(const char *port_path, const char *mounts) {
    int port = open(port_path, O_RDWR | O_CLOEXEC);
    if (port < 0) die("open", port_path);
    write_all(port, "ready\n", 6);
    static char line[GO_MAX];
    size_t n = 0;
    char *nl = NULL;
    while (!nl) {
        if (n == sizeof line - 1) {
            go_port = port;
            errno = E2BIG;
            die("go", "(line)");
        }
        ssize_t r = read(port, line + n, sizeof line - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 1; /* the host closed the port: no go will come */
        nl = memchr(line + n, '\n', (size_t)r);
        n += (size_t)r;
    }
    *nl = 0;
    go_port = port;
    /* "go WORDS...": --restore's arguments */
    char *words[GO_WORDS + 2] = {"rkt-exec", "--restore"}, *save;
    char *w = strtok_r(line, " ", &save);
    if (!w || strcmp(w, "go") != 0) {
        errno = EINVAL;
        die("go", w ? w : "(empty)");
    }
    int nw = 2;
    while ((w = strtok_r(NULL, " ", &save)) != NULL) {
        if (nw == GO_WORDS + 2) {
            errno = E2BIG;
            die("go", "(words)");
        }
        words[nw++] = w;
    }
    if (restore_main(nw, words) != 0) die("go", "(too few words)");
    write_all(port, "ok\n", 3);
    go_port = -1;
    close(port);
    init_mounts(mounts);
    if (shares_fd >= 0) close(shares_fd); /* the disks' child moves them into place now */
    return 0;
}

/* The reset the kernel's reboot ends with on QEMU's pc machine (its ACPI reset register:
 * the PIIX3's reset control, I/O port 0xcf9, written through /dev/port), without the
 * kernel's shutdown of every device first (~15 ms under emulation): nothing is left to
 * flush after the sync (the 9p shares are written through; what the apps write to
 * their virtio-serial ports reaches QEMU as it is written: ioeventfd=off,
 * hypervisors/qemu.py). Only where the PIIX3 is (PCI 00:01.0, 8086:7000); elsewhere (or
 * if QEMU did not end) the kernel's reboot. */
static void fast_reset(void) {
    static const char *const id[][2] = {
        {"/sys/bus/pci/devices/0000:00:01.0/vendor", "0x8086\n"},
        {"/sys/bus/pci/devices/0000:00:01.0/device", "0x7000\n"},
    };
    for (size_t i = 0; i < 2; i++) {
        char buf[16] = "";
        int fd = open(id[i][0], O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0) close(fd);
        if (n <= 0 || strcmp(buf, id[i][1]) != 0) return;
    }
    int port = open("/dev/port", O_WRONLY | O_CLOEXEC);
    if (port < 0 || pwrite(port, "\x06", 1, 0xcf9) != 1) {
        if (port >= 0) close(port);
        return;
    }
    struct timespec ts = {1, 0}; /* QEMU ends meanwhile */
    nanosleep(&ts, NULL);
}

static int halter_main(void) {
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_IGN);
    close_fds(-1);
    char c;
    while (read(0, &c, 1) < 0 && errno == EINTR) {}
    sync();
    fast_reset();
    reboot(RB_AUTOBOOT);
    die("reboot", "");
    return 127;
}

static void join_cgroup(int fd, const char *cgroup) {
    if (fd < 0) return;
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (write(fd, pid, (size_t)len) < 0) die("join cgroup", cgroup);
    close(fd);
}

static unsigned long long diag_uint(const unsigned char *p, int off, int size, int big) {
    unsigned long long v = 0;
    for (int i = 0; i < size; i++) v |= (unsigned long long)p[off + (big ? size - 1 - i : i)] << (8 * i);
    return v;
}

/* ---- the diagnostic of an app that cannot be executed ---- */

#define EXIT_EXEC 203 /* rkt's (systemd's) exit status for it */
#define DIAG_DEPTH 10 /* interpreters of interpreters */

/* One step of the diagnostic (stage1/container/diagnose.py says the same): PATH's
 * interpreter (its #! line or its ELF PT_INTERP) into next and 1, or what is wrong
 * with PATH into msg and 0. */
static int diag_step(const char *path, char *next, size_t nlen, char *msg, size_t mlen) {
    unsigned char head[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        snprintf(msg, mlen, "Unable to open \"%s\": %s", path, strerror(errno));
        return 0;
    }
    ssize_t n = fstat(fd, &st) < 0 ? -1 : pread(fd, head, sizeof head, 0);
    next[0] = 0;
    if (n < 0) snprintf(msg, mlen, "Unable to read \"%s\": %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) snprintf(msg, mlen, "\"%s\" is not a regular file", path);
    else if (!(st.st_mode & 0111)) snprintf(msg, mlen, "\"%s\" is not executable", path);
    else if (n >= 2 && head[0] == '#' && head[1] == '!') {
        unsigned char *end = memchr(head, '\n', (size_t)n);
        if (!end) snprintf(msg, mlen, "Shebang line too long");
        else {
            unsigned char *w = head + 2;
            while (w < end && (*w == ' ' || *w == '\t')) w++;
            size_t k = 0;
            while (w + k < end && w[k] != ' ' && w[k] != '\t' && w[k] != '\r') k++;
            snprintf(next, nlen, "%.*s", (int)k, (const char *)w);
        }
    } else if (n >= 4 && memcmp(head, "\x7f" "ELF", 4) == 0) {
        int bits = n > 4 ? head[4] : 0, big = n > 5 && head[5] == 2;
        if (n < 64 || head[6] != 1) snprintf(msg, mlen, "Unsupported ELF version: %x", n > 6 ? head[6] : 0);
        else if ((bits != 1 && bits != 2) || (head[5] != 1 && head[5] != 2))
            snprintf(msg, mlen, "Unsupported ELF format");
        else {
#define DIAG_U(off, size) diag_uint(head, (off), (size), big)
            unsigned long long phoff = bits == 2 ? DIAG_U(0x20, 8) : DIAG_U(0x1c, 4);
            unsigned phentsize = (unsigned)(bits == 2 ? DIAG_U(0x36, 2) : DIAG_U(0x2a, 2));
            unsigned phnum = (unsigned)(bits == 2 ? DIAG_U(0x38, 2) : DIAG_U(0x2c, 2));
            unsigned char ph[64];
            for (unsigned i = 0; phoff && phentsize >= (bits == 2 ? 56u : 32u) && i < phnum && i < 256; i++) {
                if (pread(fd, ph, bits == 2 ? 56 : 32, (off_t)(phoff + (unsigned long long)i * phentsize)) <= 0) break;
                if (diag_uint(ph, 0, 4, big) != 3) continue; /* PT_INTERP */
                unsigned long long off = bits == 2 ? diag_uint(ph, 8, 8, big) : diag_uint(ph, 4, 4, big);
                unsigned long long size = bits == 2 ? diag_uint(ph, 32, 8, big) : diag_uint(ph, 16, 4, big);
                if (size >= nlen) size = nlen - 1;
                ssize_t got = pread(fd, next, (size_t)size, (off_t)off);
                next[got > 0 ? got : 0] = 0;
                break;
            }
#undef DIAG_U
        }
    } else snprintf(msg, mlen, "Unsupported file type");
    close(fd);
    if (msg[0]) return 0;
    if (!next[0]) {
        snprintf(msg, mlen, "Unable to determine interpreter for \"%s\"", path);
        return 0;
    }
    if (next[0] != '/') {
        snprintf(msg, mlen, "Path must be absolute: \"%s\"", next);
        return 0;
    }
    return 1;
}

/* An app whose exec failed (RKT_DIAGNOSE=1: an app's start, not a handler or `rkt
 * enter`): one line naming the first file on the way that cannot be run, as rkt's
 * stage1 printed it, and its exit status. */
static int diagnose(const char *path) {
    char cur[PATH_MAX], next[PATH_MAX], msg[PATH_MAX + 64];
    snprintf(cur, sizeof cur, "%s", path);
    for (int depth = 0; depth <= DIAG_DEPTH; depth++) {
        msg[0] = 0;
        if (!diag_step(cur, next, sizeof next, msg, sizeof msg)) {
            fprintf(stderr, "Error: %s\n", msg);
            return EXIT_EXEC;
        }
        memcpy(cur, next, sizeof cur);
    }
    fprintf(stderr, "Error: Excessive interpreter recursion, giving up\n");
    return EXIT_EXEC;
}

int main(int argc, char **argv) {
    if (getpid() == 1) boot(argc, argv);
    if (argc == 2 && strcmp(argv[1], "--halter") == 0) return halter_main();
    if (argc == 4 && strcmp(argv[1], "--go") == 0) return go_main(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "--mount") == 0) {
        init_mounts(argv[2]);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--restore") == 0)
        return restore_main(argc, argv);
    const char *port_name = NULL, *rid = NULL, *ns_file = NULL, *plan = NULL;
    int i = 1;
    for (;;) {
        if (i + 2 < argc && strcmp(argv[i], "--tty") == 0) {
            port_name = argv[i + 1];
            rid = argv[i + 2];
            i += 3;
        } else if (i + 1 < argc && strcmp(argv[i], "--ns") == 0) {
            ns_file = argv[i + 1];
            i += 2;
        } else if (i + 1 < argc && strcmp(argv[i], "--mounts") == 0) {
            plan = argv[i + 1];
            i += 2;
        } else {
            break;
        }
    }
    argv[i - 1] = argv[0];
    argv += i - 1;
    argc -= i - 1;
    if (argc < 11 || strcmp(argv[9], "--") != 0 || (plan && !ns_file)) {
        fprintf(stderr, "usage: rkt-exec [--tty PORT RID] [--ns FILE [--mounts PLAN]] "
                        "ROOT CWD UID GID GROUPS CAPS NNP CGROUP -- ARGV...\n");
        return 127;
    }
    close_fds(port_name && strncmp(port_name, "fd:", 3) == 0 ? atoi(port_name + 3) : -1);
    const char *root = argv[1], *cwd = argv[2], *cgroup = argv[8];
    uid_t uid = (uid_t)strtoul(argv[3], NULL, 10);
    gid_t gid = (gid_t)strtoul(argv[4], NULL, 10);
    unsigned long groups_ul[64];
    gid_t groups[64];
    int ngroups = parse_list(argv[5], groups_ul, 64);
    for (int g = 0; g < ngroups; g++) groups[g] = (gid_t)groups_ul[g];
    int all_caps = strcmp(argv[6], "all") == 0;
    unsigned long caps[64];
    int ncaps = all_caps ? 0 : parse_list(argv[6], caps, 64);
    int nnp = strcmp(argv[7], "1") == 0;
    read_seccomp();
    apply_limits();

    int cg = -1;
    if (strcmp(cgroup, "-") != 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
        cg = open(path, O_WRONLY | O_CLOEXEC);
        if (cg < 0) die("open", path);
    }
    int port = port_name ? open_port(port_name) : -1;
    if (port < 0) join_cgroup(cg, cgroup); /* an app's setup (its /run copy) counts in it */
    if (ns_file && plan) new_ns(root, plan, ns_file);
    else if (ns_file) join_ns(ns_file);
    else if (chroot(root) < 0) die("chroot", root);
    if (port >= 0) {
        tty_session(port, rid, cg); /* returns in the session's child */
        join_cgroup(cg, cgroup);
    }
    if (chdir("/") < 0 || chdir(cwd) < 0) die("chdir", cwd);

    __u32 set[2] = {0, 0};
    for (int c = 0; c < ncaps; c++)
        if (caps[c] < 64) set[caps[c] / 32] |= 1u << (caps[c] % 32);
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
        for (int d = 0; d < 2; d++) {
            data[d].effective = set[d];
            data[d].permitted = set[d];
            data[d].inheritable = set[d];
        }
        if (syscall(SYS_capset, &hdr, data) < 0) die("capset", argv[6]);
        if (uid != 0)
            for (int c = 0; c < ncaps; c++)
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[c], 0, 0) < 0) die("prctl", "PR_CAP_AMBIENT_RAISE");
    }
    if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("prctl", "PR_SET_NO_NEW_PRIVS");
    keep_tty(); /* returns in the app's process */
    default_signals(); /* before the app's filter, which may forbid rt_sigaction */
    load_seccomp();
    const char *diag = getenv("RKT_DIAGNOSE");
    if (diag) unsetenv("RKT_DIAGNOSE");
    execvp(argv[10], &argv[10]);
    if (diag && argv[10][0] == '/') return diagnose(argv[10]);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "rkt-exec: exec %s: %s\n", argv[10], strerror(errno));
    return code;
}
