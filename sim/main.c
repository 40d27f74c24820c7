/* fedmesh-sim: runs a scenario of N fedmesh nodes on a simulated network
 * and writes what happened (docs/SIMULATION.md). This file is the command
 * line: options, finding scenario files, and the order of the run. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "scenario.h"
#include "sim.h"

#ifndef FM_SCENARIO_DIR
#define FM_SCENARIO_DIR "/usr/local/share/fedmesh/scenarios"
#endif
#ifndef FM_SCENARIO_SRCDIR
#define FM_SCENARIO_SRCDIR ""
#endif
#ifndef FM_SIM_BUILDDIR
#define FM_SIM_BUILDDIR ""
#endif

#define DIRS_MAX 5
#define OVERRIDES_MAX 64

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: fedmesh-sim --scenario NAME|FILE [options]\n"
	        "       fedmesh-sim --list-scenarios\n"
	        "\n"
	        "Runs N instances of the fedmesh protocol core on a simulated "
	        "network.\n"
	        "Same seed + same build = identical results.\n"
	        "\n"
	        "  -s, --scenario NAME|FILE  a scenario name (see "
	        "--list-scenarios) or an INI file\n"
	        "  -n, --nodes N             override [scenario] nodes\n"
	        "      --seed S              override [scenario] seed\n"
	        "  -d, --duration D          simulated time: 90s, 5m, 2h "
	        "(bare number: seconds)\n"
	        "  -o, --out DIR             write results.json, CSV files "
	        "and plots into DIR\n"
	        "      --set SECTION.KEY=VALUE  override any scenario key "
	        "(repeatable)\n"
	        "      --strategy S          job routing: random, "
	        "round_robin, least_pending,\n"
	        "                            p2c, or all (one run per "
	        "strategy, same seed)\n"
	        "  -q, --quiet               no progress line, no summary\n"
	        "  -v, --verbose             core log lines on stderr "
	        "(-vv: debug)\n"
	        "      --list-scenarios      list the scenarios found and "
	        "exit\n"
	        "  -h, --help                this text\n"
	        "      --version             print the version and exit\n"
	        "\n"
	        "Scenario names are looked up in $FEDMESH_SIM_SCENARIOS, "
	        "then the source\n"
	        "tree when run from the build tree, then %s.\n"
	        "docs/SIMULATION.md describes the models, the keys and the "
	        "output files.\n",
	        FM_SCENARIO_DIR);
}

static int is_dir(const char *path)
{
	DIR *d;

	if (path == NULL || *path == '\0')
		return 0;
	d = opendir(path);
	if (d == NULL)
		return 0;
	closedir(d);
	return 1;
}

/* Where scenario names are looked up, in order. */
static int scenario_dirs(const char *dirs[DIRS_MAX], char *exe_share,
                         size_t exe_share_len)
{
	static char exe_dir[PATH_MAX], build_dir[PATH_MAX];
	const char *env = getenv("FEDMESH_SIM_SCENARIOS");
	char exe[PATH_MAX];
	ssize_t n;
	int count = 0, from_build = 0;

	if (env != NULL && *env != '\0')
		dirs[count++] = env;
	exe_share[0] = '\0';
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(exe_dir, sizeof(exe_dir), "%s", exe);
			if (snprintf(exe_share, exe_share_len,
			             "%s/../share/fedmesh/scenarios",
			             exe_dir) >= (int)exe_share_len)
				exe_share[0] = '\0';
			if (*FM_SIM_BUILDDIR != '\0' &&
			    realpath(FM_SIM_BUILDDIR, build_dir) != NULL &&
			    strcmp(build_dir, exe_dir) == 0)
				from_build = 1;
		}
	}
	if (from_build && *FM_SCENARIO_SRCDIR != '\0')
		dirs[count++] = FM_SCENARIO_SRCDIR;
	dirs[count++] = FM_SCENARIO_DIR;
	if (exe_share[0] != '\0')
		dirs[count++] = exe_share;
	if (!from_build && *FM_SCENARIO_SRCDIR != '\0')
		dirs[count++] = FM_SCENARIO_SRCDIR;
	return count;
}

static int resolve_scenario(const char *name, char *path, size_t path_len)
{
	const char *dirs[DIRS_MAX];
	char exe_share[PATH_MAX];
	int count, i;
	size_t len = strlen(name);

	if (strchr(name, '/') != NULL ||
	    (len > 4 && strcmp(name + len - 4, ".ini") == 0)) {
		snprintf(path, path_len, "%s", name);
		return access(path, R_OK) == 0 ? 0 : -ENOENT;
	}
	count = scenario_dirs(dirs, exe_share, sizeof(exe_share));
	for (i = 0; i < count; i++) {
		snprintf(path, path_len, "%s/%s.ini", dirs[i], name);
		if (access(path, R_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

static int list_scenarios(void)
{
	const char *dirs[DIRS_MAX];
	char exe_share[PATH_MAX];
	int count, i;

	count = scenario_dirs(dirs, exe_share, sizeof(exe_share));
	for (i = 0; i < count; i++) {
		struct dirent **names = NULL;
		int n, j;
		if (!is_dir(dirs[i]))
			continue;
		n = scandir(dirs[i], &names, NULL, alphasort);
		printf("%s:\n", dirs[i]);
		for (j = 0; j < n; j++) {
			const char *f = names[j]->d_name;
			size_t len = strlen(f);
			if (len > 4 && strcmp(f + len - 4, ".ini") == 0) {
				struct fms_scenario sc;
				char path[PATH_MAX + 256], err[192];
				snprintf(path, sizeof(path), "%s/%s", dirs[i],
				         f);
				fms_scenario_defaults(&sc);
				if (fms_scenario_load(&sc, path, err,
				                      sizeof(err)) != 0)
					snprintf(sc.description,
					         sizeof(sc.description),
					         "(unreadable: %s)", err);
				printf("  %-16.*s %s\n", (int)(len - 4), f,
				       sc.description);
			}
			free(names[j]);
		}
		free(names);
		return 0;
	}
	fprintf(stderr, "fedmesh-sim: no scenario directory found\n");
	return 1;
}

static int apply_override(struct fms_scenario *sc, const char *text)
{
	char buf[512], err[256];
	char *dot, *eq;

	if (strlen(text) >= sizeof(buf))
		goto bad;
	snprintf(buf, sizeof(buf), "%s", text);
	eq = strchr(buf, '=');
	if (eq == NULL)
		goto bad;
	*eq = '\0';
	dot = strchr(buf, '.');
	if (dot == NULL)
		goto bad;
	*dot = '\0';
	if (fms_scenario_set(sc, buf, dot + 1, eq + 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "fedmesh-sim: --set %s: %s\n", text, err);
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr,
	        "fedmesh-sim: --set wants SECTION.KEY=VALUE, got '%s'\n", text);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	enum { OPT_SEED = 256, OPT_SET, OPT_LIST, OPT_VERSION, OPT_STRATEGY };
	static const struct option opts[] = {
	        {"scenario", required_argument, NULL, 's'},
	        {"nodes", required_argument, NULL, 'n'},
	        {"seed", required_argument, NULL, OPT_SEED},
	        {"duration", required_argument, NULL, 'd'},
	        {"out", required_argument, NULL, 'o'},
	        {"set", required_argument, NULL, OPT_SET},
	        {"strategy", required_argument, NULL, OPT_STRATEGY},
	        {"quiet", no_argument, NULL, 'q'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"list-scenarios", no_argument, NULL, OPT_LIST},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, OPT_VERSION},
	        {NULL, 0, NULL, 0},
	};
	const char *scenario = NULL, *out_dir = NULL, *nodes = NULL,
	           *seed = NULL, *duration = NULL, *strategy = NULL;
	const char *overrides[OVERRIDES_MAX];
	int override_count = 0, quiet = 0, verbose = -1, c, i, rc;
	char path[PATH_MAX], err[512] = "";
	struct fms_scenario sc;
	struct fms_sim *sim = NULL;

	while ((c = getopt_long(argc, argv, "s:n:d:o:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			scenario = optarg;
			break;
		case 'n':
			nodes = optarg;
			break;
		case OPT_SEED:
			seed = optarg;
			break;
		case OPT_STRATEGY:
			strategy = optarg;
			break;
		case 'd':
			duration = optarg;
			break;
		case 'o':
			out_dir = optarg;
			break;
		case OPT_SET:
			if (override_count == OVERRIDES_MAX) {
				fprintf(stderr,
				        "fedmesh-sim: at most %d --set\n",
				        OVERRIDES_MAX);
				return 2;
			}
			overrides[override_count++] = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'v':
			verbose = verbose < FM_LOG_INFO ? FM_LOG_INFO
			                                : FM_LOG_DEBUG;
			break;
		case OPT_LIST:
			return list_scenarios();
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("fedmesh-sim %s\n", fm_version());
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || scenario == NULL) {
		if (optind < argc)
			fprintf(stderr,
			        "fedmesh-sim: unexpected argument '%s'\n",
			        argv[optind]);
		else
			fprintf(stderr,
			        "fedmesh-sim: --scenario is required\n");
		usage(stderr);
		return 2;
	}
	if (resolve_scenario(scenario, path, sizeof(path)) != 0) {
		fprintf(stderr,
		        "fedmesh-sim: scenario '%s' not found (try "
		        "--list-scenarios)\n",
		        scenario);
		return 2;
	}
	fms_scenario_defaults(&sc);
	if (fms_scenario_load(&sc, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "fedmesh-sim: %s\n", err);
		return 2;
	}
	for (i = 0; i < override_count; i++)
		if (apply_override(&sc, overrides[i]) != 0)
			return 2;
	if ((nodes != NULL && fms_scenario_set(&sc, "scenario", "nodes", nodes,
	                                       err, sizeof(err)) != 0) ||
	    (seed != NULL && fms_scenario_set(&sc, "scenario", "seed", seed,
	                                      err, sizeof(err)) != 0) ||
	    (duration != NULL &&
	     fms_scenario_set(&sc, "scenario", "duration", duration, err,
	                      sizeof(err)) != 0) ||
	    (strategy != NULL &&
	     fms_scenario_set(&sc, "jobs", "strategy", strategy, err,
	                      sizeof(err)) != 0) ||
	    fms_scenario_check(&sc, err, sizeof(err)) != 0) {
		fprintf(stderr, "fedmesh-sim: %s\n", err);
		return 2;
	}
	/* One run, or one per job routing strategy (jobs_workload.c). */
	rc = fms_jobs_run(&sc, !quiet, verbose, &sim);
	if (sim == NULL) {
		fprintf(stderr, "fedmesh-sim: cannot set up the run: %s\n",
		        strerror(-rc));
		return 1;
	}
	if (rc == 0 && out_dir != NULL)
		rc = fms_report_write(sim, out_dir, path, quiet, err,
		                      sizeof(err));
	if (rc != 0)
		fprintf(stderr, "fedmesh-sim: %s\n",
		        err[0] ? err : strerror(-rc));
	else if (!quiet)
		fms_report_summary(sim, stdout);
	fms_sim_free(sim);
	return rc == 0 ? 0 : 1;
}
