/* fedmesh-exec: the helper fedmeshd starts each exec service through
 * (exec_child.c says what it does and why). A program of its own so that
 * it links nothing but libc: a job pays its start, not fedmeshd's. */
#include "exec_child.h"

int main(int argc, char **argv)
{
	return fmd_exec_child_main(argc, argv);
}
