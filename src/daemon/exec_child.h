/* The exec helper's entry point (exec_child.c), shared by the fedmesh-exec
 * program and fedmeshd --exec-child. No libuv, no daemon state: it runs
 * in the child, between fork and the command's exec. */
#ifndef FMD_EXEC_CHILD_H
#define FMD_EXEC_CHILD_H

/* argv[1] of the helper; the arguments follow as below. */
#define FMD_EXEC_CHILD_FLAG "--exec-child"
/* The program's name, installed in pkglibexecdir. */
#define FMD_EXEC_HELPER_NAME "fedmesh-exec"

/* HELPER --exec-child CPU_S AS_BYTES NOFILE -- COMMAND ARGS...
 * (0: that limit is not set). Never returns on success; exits 127, the
 * reason on fd 3, when a limit or the exec fails. */
int fmd_exec_child_main(int argc, char **argv);

#endif
