/*
 * The wall time of one folded chmod (docs/benchmarks.md, "One folded chmod, timed"): N chmods
 * of one file, modes 0644 and 0600 in turn, three passes, ns a call each; with a third
 * argument `open`, N read-only open+close pairs of it instead. Run it as nobody
 * under no agent, `osprey run --bare-hooks` and `osprey run`, alternating; bpf_stats cannot
 * show what a second program on the same call costs, this can.
 *
 *   cc -O2 -o /tmp/chmod-loop xtask/scripts/chmod-loop.c
 *   d=$(mktemp -d -p /dev/shm) && chmod 777 "$d" && runuser -u nobody -- /tmp/chmod-loop 300000 "$d/f" [open]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "open"))) {
		fprintf(stderr, "usage: %s N FILE [open]\n", argv[0]);
		return 2;
	}
	int opens = argc == 4;
	int n = atoi(argv[1]);
	const char *f = argv[2];
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || n <= 0) {
		perror(f);
		return 1;
	}
	close(fd);
	for (int pass = 0; pass < 3; pass++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < n; i++) {
			if (opens)
				close(open(f, O_RDONLY));
			else
				chmod(f, (i & 1) ? 0644 : 0600);
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%.0f ", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	}
	printf(opens ? "ns/open+close\n" : "ns/chmod\n");
	return 0;
}
