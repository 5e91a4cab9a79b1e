/* The file I/O work of bench/kvm_fileio.py, run inside a pod, timed inside it
 * (CLOCK_MONOTONIC), so that every kind of pod does exactly the same thing and its
 * start is not counted:
 *   fileio run LABEL CMD ARGS...   run CMD (stdout to /dev/null), print "LABEL SECONDS"
 *   fileio fsync LABEL DIR N SIZE  write N files of SIZE bytes, fsync each
 *   fileio read LABEL FILE         read FILE sequentially (1 MiB reads)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int run(char **argv) {
	pid_t p = fork();
	if (p == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	if (p < 0 || waitpid(p, &st, 0) < 0)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int fsync_files(const char *dir, int n, int size) {
	char *buf = malloc(size), path[4096];
	memset(buf, 'x', size);
	mkdir(dir, 0755);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/f%d", dir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, buf, size) != size || fsync(fd) != 0 || close(fd) != 0) {
			perror(path);
			return 1;
		}
	}
	return 0;
}

static int read_file(const char *file) {
	static char buf[1 << 20];
	int fd = open(file, O_RDONLY);
	ssize_t n;
	if (fd < 0) {
		perror(file);
		return 1;
	}
	while ((n = read(fd, buf, sizeof buf)) > 0)
		;
	return n < 0;
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: fileio run|fsync|read LABEL ...\n");
		return 2;
	}
	double t0 = now();
	int rc;
	if (strcmp(argv[1], "run") == 0)
		rc = run(argv + 3);
	else if (strcmp(argv[1], "fsync") == 0 && argc == 6)
		rc = fsync_files(argv[3], atoi(argv[4]), atoi(argv[5]));
	else if (strcmp(argv[1], "read") == 0)
		rc = read_file(argv[3]);
	else
		return 2;
	printf("%s %.3f%s\n", argv[2], now() - t0, rc ? " FAILED" : "");
	return rc;
}
