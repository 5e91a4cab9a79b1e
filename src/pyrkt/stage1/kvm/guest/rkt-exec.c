/*
 * rkt-exec: the guest's last step before an app runs (static, no dependencies).
 *
 *   rkt-exec ROOT CWD UID GID GROUPS CAPS NNP CGROUP -- ARGV...
 *
 * GROUPS: comma-separated gids or "-"; CAPS: comma-separated capability numbers to
 * retain, or "all" to leave them alone; NNP: 1 sets no_new_privs; CGROUP: a cgroup
 * folder to join, or "-". The environment is passed through unchanged (the pod script
 * builds it with `env -i`). Each failure prints the failing call and exits 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what, const char *arg) {
    fprintf(stderr, "rkt-exec: %s %s: %s\n", what, arg, strerror(errno));
    exit(127);
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

int main(int argc, char **argv) {
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
    execvp(argv[10], &argv[10]);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "rkt-exec: exec %s: %s\n", argv[10], strerror(errno));
    return code;
}
