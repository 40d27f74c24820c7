/* The machine block the benchmark programs print (machine.h). */
#include "machine.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_print_machine(void)
{
	char line[256], model[256] = "unknown";
	struct utsname u;
	FILE *f;

	f = fopen("/proc/cpuinfo", "r");
	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			char *colon = strchr(line, ':');
			if (strncmp(line, "model name", 10) != 0 ||
			    colon == NULL)
				continue;
			snprintf(model, sizeof(model), "%s", colon + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
		fclose(f);
	}
	printf("nproc=%ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("cpu_model=%s\n", model);
	if (uname(&u) == 0)
		printf("kernel=%s %s %s\n", u.sysname, u.release, u.machine);
	printf("libsodium=%s\n", sodium_version_string());
	printf("compiler=gcc %s\n", __VERSION__);
}
