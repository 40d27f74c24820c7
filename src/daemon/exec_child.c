/* The child side of an exec service: between fork and exec, what uv_spawn
 * cannot do. It runs as fedmesh-exec (a small program that links libc
 * only, so it starts in a fraction of the time fedmeshd takes to load its
 * libraries), or as fedmeshd --exec-child when the helper is missing. It
 * sets the operator's resource limits (setrlimit), asks for SIGKILL when
 * the daemon dies (PR_SET_PDEATHSIG), closes every descriptor but stdio
 * and the report pipe, and execs the command. A failure before the exec is
 * written to fd 3, which is close-on-exec: the daemon tells "could not
 * start" from "exited 127" by whether anything arrived there. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "exec_child.h"

/* The most a report says. */
#define FMD_EXEC_CHILD_REPORT_MAX 256
/* Descriptors closed before the exec: the daemon's are close-on-exec
 * anyway; this is the belt to those braces. */
#define FMD_EXEC_CHILD_FD_MAX 1024

/* Reports why the command did not start on fd 3 and exits 127. */
static int child_fail(const char *what, int err)
{
	char msg[FMD_EXEC_CHILD_REPORT_MAX];
	int n;

	n = snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
	if (n > 0)
		(void)!write(3, msg,
		             (size_t)n < sizeof(msg) ? (size_t)n
		                                     : sizeof(msg) - 1);
	_exit(127);
}

static int child_limit(int resource, const char *text, const char *name)
{
	struct rlimit rl;
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return child_fail("bad limit argument", EINVAL);
	if (v == 0)
		return 0;
	/* Both limits: the program may not raise its own soft limit past
	 * what the operator set. */
	rl.rlim_cur = (rlim_t)v;
	rl.rlim_max = (rlim_t)v;
	if (resource == RLIMIT_CPU)
		rl.rlim_max = (rlim_t)v + 1; /* SIGXCPU first, SIGKILL next */
	if (setrlimit(resource, &rl) != 0)
		return child_fail(name, errno);
	return 0;
}

int fmd_exec_child_main(int argc, char **argv)
{
	int fd;

	/* fedmeshd --exec-child CPU AS NOFILE -- COMMAND [ARGS...] */
	if (argc < 7 || strcmp(argv[1], FMD_EXEC_CHILD_FLAG) != 0 ||
	    strcmp(argv[5], "--") != 0)
		return child_fail("fedmeshd --exec-child: bad arguments",
		                  EINVAL);
	(void)fcntl(3, F_SETFD, FD_CLOEXEC);
	/* Die with the daemon: a kill -9 of fedmeshd must not leave its
	 * jobs running unsupervised. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return child_fail("fedmeshd exited", ESRCH);
	child_limit(RLIMIT_CPU, argv[2], "setrlimit(RLIMIT_CPU)");
	child_limit(RLIMIT_AS, argv[3], "setrlimit(RLIMIT_AS)");
	child_limit(RLIMIT_NOFILE, argv[4], "setrlimit(RLIMIT_NOFILE)");
	/* Nothing of the daemon's but stdio and the report pipe. */
	for (fd = 4; fd < FMD_EXEC_CHILD_FD_MAX; fd++)
		(void)close(fd);
	signal(SIGPIPE, SIG_DFL);
	execv(argv[6], argv + 6);
	return child_fail(argv[6], errno);
}
