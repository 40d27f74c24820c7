/* The services fedmeshd runs, and how. Built-ins are pure functions of
 * their input (sleep aside, which is a timer in jobs.c); exec services are
 * the operator's programs, run here without a shell and boxed in as far as
 * an unprivileged process can box another: a clean environment, a scratch
 * directory of their own, resource limits, an output cap, a timeout, and
 * their own process group so that a stop reaches their children too.
 *
 * uv_spawn offers no hook between fork and exec, so the limits are applied
 * by a helper (exec_child.c: fedmesh-exec, or fedmeshd --exec-child) that
 * calls setrlimit and prctl(PR_SET_PDEATHSIG) and then execs the command.
 * It reports a failed exec on an extra pipe (fd 3, close-on-exec), so "the
 * program could not be started" is told apart from "the program exited
 * 127". */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "services.h"

/* Read buffer of a child's pipes. */
#define FMD_EXEC_READ_BYTES 65536
/* After the process exited, how long its pipes may stay open (a
 * descendant that escaped the process group holds them) before they are
 * closed anyway. */
#define FMD_EXEC_PIPE_LINGER_MS 1000
/* The error text of a run: a prefix and the tail of stderr. */
#define FMD_EXEC_ERROR_MAX FM_JOB_ERROR_MAX
/* Depth of open directories nftw may hold. */
#define FMD_REMOVE_TREE_FDS 16
/* Passes that make every directory of a tree writable before removal (a
 * job may have made some unreadable). */
#define FMD_REMOVE_TREE_CHMOD_PASSES 3

static const char *const builtin_names[FMD_BUILTIN_COUNT] = {"echo", "sha256",
                                                             "sleep"};

/* ---- configuration --------------------------------------------------- */

void fmd_jobs_config_defaults(fmd_jobs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->builtins = 1;
	cfg->offer_builtin = 1;
	cfg->builtin_slots = 0;
	cfg->keep_ms = FMD_JOBS_KEEP_DEFAULT_MS;
	cfg->input_max = FM_JOB_INPUT_MAX;
	cfg->timeout_ms = FMD_JOBS_TIMEOUT_DEFAULT_MS;
}

uint32_t fmd_cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > FMD_JOBS_SLOTS_MAX ? FMD_JOBS_SLOTS_MAX : (uint32_t)n;
}

static int parse_u64(const char *text, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = text;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	*end = p;
	return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
	if (b != 0 && a > UINT64_MAX / b)
		return -ERANGE;
	*out = a * b;
	return 0;
}

int fmd_parse_duration_ms(const char *text, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1000},    {"ms", 1},      {"s", 1000},
	             {"m", 60000},  {"h", 3600000}, {"d", 86400000},
	             {"min", 60000}};
	const char *end;
	uint64_t v;
	size_t i;

	if (parse_u64(text, &v, &end) != 0)
		return -EINVAL;
	while (*end == ' ')
		end++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0)
			return mul_checked(v, units[i].ms, out) == 0 ? 0
			                                             : -EINVAL;
	return -EINVAL;
}

int fmd_parse_size(const char *text, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t bytes;
	} units[] = {{"", 1},
	             {"B", 1},
	             {"K", 1024},
	             {"KB", 1024},
	             {"KiB", 1024},
	             {"M", 1024 * 1024},
	             {"MB", 1024 * 1024},
	             {"MiB", 1024 * 1024},
	             {"G", 1024 * 1024 * 1024},
	             {"GB", 1024 * 1024 * 1024},
	             {"GiB", 1024 * 1024 * 1024}};
	const char *end;
	uint64_t v;
	size_t i;

	if (parse_u64(text, &v, &end) != 0)
		return -EINVAL;
	while (*end == ' ')
		end++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].unit) == 0)
			return mul_checked(v, units[i].bytes, out) == 0
			               ? 0
			               : -EINVAL;
	return -EINVAL;
}

static void print_duration(FILE *out, const char *key, uint64_t ms)
{
	if (ms != 0 && ms % 86400000 == 0)
		fprintf(out, "%s = %" PRIu64 "d\n", key, ms / 86400000);
	else if (ms != 0 && ms % 3600000 == 0)
		fprintf(out, "%s = %" PRIu64 "h\n", key, ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		fprintf(out, "%s = %" PRIu64 "m\n", key, ms / 60000);
	else if (ms % 1000 == 0)
		fprintf(out, "%s = %" PRIu64 "s\n", key, ms / 1000);
	else
		fprintf(out, "%s = %" PRIu64 "ms\n", key, ms);
}

static void print_size(FILE *out, const char *key, uint64_t bytes)
{
	if (bytes != 0 && bytes % (1024 * 1024 * 1024) == 0)
		fprintf(out, "%s = %" PRIu64 "G\n", key,
		        bytes / (1024 * 1024 * 1024));
	else if (bytes != 0 && bytes % (1024 * 1024) == 0)
		fprintf(out, "%s = %" PRIu64 "M\n", key, bytes / (1024 * 1024));
	else if (bytes != 0 && bytes % 1024 == 0)
		fprintf(out, "%s = %" PRIu64 "K\n", key, bytes / 1024);
	else
		fprintf(out, "%s = %" PRIu64 "\n", key, bytes);
}

static int parse_bool(const char *text, int *out)
{
	if (strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0 ||
	    strcmp(text, "1") == 0 || strcasecmp(text, "on") == 0) {
		*out = 1;
		return 0;
	}
	if (strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0 ||
	    strcmp(text, "0") == 0 || strcasecmp(text, "off") == 0) {
		*out = 0;
		return 0;
	}
	return -EINVAL;
}

/* "auto" (0: the number of CPUs) or 1..FMD_JOBS_SLOTS_MAX. */
static int parse_slots(const char *text, uint32_t *out)
{
	const char *end;
	uint64_t v;

	if (strcmp(text, "auto") == 0) {
		*out = 0;
		return 0;
	}
	if (parse_u64(text, &v, &end) != 0 || *end != '\0' || v == 0 ||
	    v > FMD_JOBS_SLOTS_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int service_name_valid(const char *name)
{
	size_t len = strlen(name);
	size_t i;

	if (len == 0 || len > FM_SERVICE_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
		      name[i] == '.' || name[i] == '-'))
			return 0;
	return 1;
}

int fmd_jobs_config_owns(const char *section)
{
	return strcmp(section, "jobs") == 0 ||
	       strncmp(section, "service.", 8) == 0;
}

static int jobs_key_set(fmd_jobs_config *cfg, const char *key,
                        const char *value, char *err, size_t err_len)
{
	uint64_t v;

	if (strcmp(key, "builtins") == 0) {
		if (parse_bool(value, &cfg->builtins) != 0)
			goto bad;
	} else if (strcmp(key, "offer_builtin") == 0) {
		if (parse_bool(value, &cfg->offer_builtin) != 0)
			goto bad;
	} else if (strcmp(key, "builtin_slots") == 0) {
		if (parse_slots(value, &cfg->builtin_slots) != 0)
			goto bad;
	} else if (strcmp(key, "keep") == 0) {
		if (fmd_parse_duration_ms(value, &v) != 0 || v == 0)
			goto bad;
		cfg->keep_ms = v;
	} else if (strcmp(key, "input_max") == 0) {
		if (fmd_parse_size(value, &v) != 0 || v == 0 ||
		    v > FM_JOB_INPUT_MAX)
			goto bad;
		cfg->input_max = v;
	} else if (strcmp(key, "timeout") == 0) {
		if (fmd_parse_duration_ms(value, &v) != 0 || v == 0 ||
		    v > FMD_JOBS_TIMEOUT_MAX_MS)
			goto bad;
		cfg->timeout_ms = v;
	} else {
		snprintf(err, err_len, "unknown option [jobs] %s", key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(err, err_len,
	         "[jobs] %s: bad value '%s' (builtins, offer_builtin: true or "
	         "false; "
	         "builtin_slots: auto or 1 to %d; keep and timeout: a "
	         "duration such as 30s, 5m, 24h; input_max: a size such as "
	         "16M, at most %u bytes)",
	         key, value, FMD_JOBS_SLOTS_MAX, FM_JOB_INPUT_MAX);
	return -EINVAL;
}

/* Splits value on spaces and tabs into more fixed arguments; "..." keeps
 * spaces inside one argument (no escapes: an argument cannot hold '"'). */
static int args_append(fmd_exec_service *svc, const char *value, char *err,
                       size_t err_len)
{
	char buf[FMD_SERVICE_ARGS_BYTES];
	size_t len = svc->args_len;
	uint32_t argc = svc->argc;
	const char *p = value;

	memcpy(buf, svc->args, len);
	for (;;) {
		const char *start;
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		if (*p == '"') {
			start = ++p;
			while (*p != '\0' && *p != '"')
				p++;
			if (*p != '"') {
				snprintf(err, err_len,
				         "[service.%s] args: unterminated '\"'",
				         svc->name);
				return -EINVAL;
			}
			n = (size_t)(p - start);
			p++;
		} else {
			start = p;
			while (*p != '\0' && *p != ' ' && *p != '\t') {
				if (*p == '"') {
					snprintf(err, err_len,
					         "[service.%s] args: '\"' only "
					         "around a whole argument",
					         svc->name);
					return -EINVAL;
				}
				p++;
			}
			n = (size_t)(p - start);
		}
		if (argc >= FMD_SERVICE_ARGS_MAX || len + n + 1 > sizeof(buf)) {
			snprintf(err, err_len,
			         "[service.%s] args: at most %d arguments in "
			         "%d bytes",
			         svc->name, FMD_SERVICE_ARGS_MAX,
			         FMD_SERVICE_ARGS_BYTES);
			return -E2BIG;
		}
		memcpy(buf + len, start, n);
		buf[len + n] = '\0';
		len += n + 1;
		argc++;
	}
	memcpy(svc->args, buf, len);
	svc->args_len = len;
	svc->argc = argc;
	return 0;
}

static fmd_exec_service *service_get(fmd_jobs_config *cfg, const char *name,
                                     char *err, size_t err_len)
{
	fmd_exec_service *svc;
	size_t i;

	for (i = 0; i < cfg->service_count; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	if (!service_name_valid(name)) {
		snprintf(err, err_len,
		         "[service.%s]: a service name is 1 to %d characters "
		         "of a-z, 0-9, '_', '.' and '-'",
		         name, FM_SERVICE_NAME_MAX);
		return NULL;
	}
	if (fmd_builtin_find(name) != FMD_BUILTIN_NONE) {
		snprintf(err, err_len,
		         "[service.%s]: '%s' is a built-in service; choose "
		         "another name",
		         name, name);
		return NULL;
	}
	if (cfg->service_count >= FMD_EXEC_SERVICES_MAX) {
		snprintf(err, err_len, "[service.%s]: at most %d exec services",
		         name, FMD_EXEC_SERVICES_MAX);
		return NULL;
	}
	svc = &cfg->services[cfg->service_count++];
	memset(svc, 0, sizeof(*svc));
	snprintf(svc->name, sizeof(svc->name), "%s", name);
	svc->timeout_ms = FMD_EXEC_TIMEOUT_DEFAULT_MS;
	svc->output_max = FMD_EXEC_OUTPUT_DEFAULT_BYTES;
	svc->stderr_max = FMD_EXEC_STDERR_DEFAULT_BYTES;
	return svc;
}

static int service_key_set(fmd_exec_service *svc, const char *key,
                           const char *value, char *err, size_t err_len)
{
	const char *end;
	uint64_t v;

	if (strcmp(key, "command") == 0) {
		if (value[0] != '/' || strlen(value) >= sizeof(svc->command)) {
			snprintf(err, err_len,
			         "[service.%s] command must be an absolute "
			         "path (no shell, no PATH search) shorter "
			         "than %d bytes",
			         svc->name, FMD_SERVICE_COMMAND_MAX);
			return -EINVAL;
		}
		snprintf(svc->command, sizeof(svc->command), "%s", value);
		return 0;
	}
	if (strcmp(key, "args") == 0)
		return args_append(svc, value, err, err_len);
	if (strcmp(key, "timeout") == 0) {
		if (fmd_parse_duration_ms(value, &v) != 0 || v == 0 ||
		    v > FMD_JOBS_TIMEOUT_MAX_MS)
			goto bad;
		svc->timeout_ms = v;
	} else if (strcmp(key, "output_max") == 0) {
		if (fmd_parse_size(value, &v) != 0 || v > FM_JOB_OUTPUT_MAX)
			goto bad;
		svc->output_max = v;
	} else if (strcmp(key, "stderr_max") == 0) {
		if (fmd_parse_size(value, &v) != 0 || v > FM_JOB_OUTPUT_MAX)
			goto bad;
		svc->stderr_max = v;
	} else if (strcmp(key, "offer") == 0) {
		if (parse_bool(value, &svc->offer) != 0)
			goto bad;
	} else if (strcmp(key, "max_concurrent") == 0) {
		if (parse_slots(value, &svc->max_concurrent) != 0)
			goto bad;
	} else if (strcmp(key, "rlimit_cpu") == 0) {
		if (fmd_parse_duration_ms(value, &v) != 0 || v == 0)
			goto bad;
		svc->rlimit_cpu_s = (v + 999) / 1000;
	} else if (strcmp(key, "rlimit_as") == 0) {
		if (fmd_parse_size(value, &v) != 0 || v == 0)
			goto bad;
		svc->rlimit_as_bytes = v;
	} else if (strcmp(key, "rlimit_nofile") == 0) {
		if (parse_u64(value, &v, &end) != 0 || *end != '\0' || v < 4 ||
		    v > (1u << 20))
			goto bad;
		svc->rlimit_nofile = v;
	} else {
		snprintf(err, err_len, "unknown option [service.%s] %s",
		         svc->name, key);
		return -EINVAL;
	}
	return 0;
bad:
	snprintf(err, err_len,
	         "[service.%s] %s: bad value '%s' (timeout, rlimit_cpu: a "
	         "duration such as 30s; output_max, stderr_max, rlimit_as: "
	         "a size such as 1M; offer: true or false; max_concurrent: "
	         "auto or 1 to %d; rlimit_nofile: 4 to 1048576)",
	         svc->name, key, value, FMD_JOBS_SLOTS_MAX);
	return -EINVAL;
}

int fmd_jobs_config_set(fmd_jobs_config *cfg, const char *section,
                        const char *key, const char *value, char *err,
                        size_t err_len)
{
	fmd_exec_service *svc;

	if (strcmp(section, "jobs") == 0)
		return jobs_key_set(cfg, key, value, err, err_len);
	if (strncmp(section, "service.", 8) != 0) {
		snprintf(err, err_len, "unknown section [%s]", section);
		return -EINVAL;
	}
	svc = service_get(cfg, section + 8, err, err_len);
	if (svc == NULL)
		return -EINVAL;
	return service_key_set(svc, key, value, err, err_len);
}

int fmd_jobs_config_check(const fmd_jobs_config *cfg, char *err, size_t err_len)
{
	size_t i;

	for (i = 0; i < cfg->service_count; i++)
		if (cfg->services[i].command[0] == '\0') {
			snprintf(err, err_len,
			         "[service.%s] has no command = "
			         "/path/to/program",
			         cfg->services[i].name);
			return -EINVAL;
		}
	return 0;
}

void fmd_jobs_config_print(const fmd_jobs_config *cfg, FILE *out)
{
	size_t i;
	size_t off;

	fprintf(out, "\n[jobs]\nbuiltins = %s\noffer_builtin = %s\n",
	        cfg->builtins ? "true" : "false",
	        cfg->offer_builtin ? "true" : "false");
	if (cfg->builtin_slots == 0)
		fprintf(out, "builtin_slots = auto\n");
	else
		fprintf(out, "builtin_slots = %" PRIu32 "\n",
		        cfg->builtin_slots);
	print_duration(out, "keep", cfg->keep_ms);
	print_size(out, "input_max", cfg->input_max);
	print_duration(out, "timeout", cfg->timeout_ms);
	for (i = 0; i < cfg->service_count; i++) {
		const fmd_exec_service *svc = &cfg->services[i];

		fprintf(out, "\n[service.%s]\ncommand = %s\n", svc->name,
		        svc->command);
		/* One argument a line: a long list would not fit a line. */
		for (off = 0; off < svc->args_len;
		     off += strlen(svc->args + off) + 1) {
			const char *a = svc->args + off;

			/* Quoted when inih would trim it, take it for a
			 * comment (";x" after "= "), or the splitter would cut
			 * it (after a quoted argument one may start with any
			 * white space: "a"\rb is "a" and "\rb"). Found by
			 * fuzz/fuzz_config.c. */
			if (a[0] == '\0' || a[0] == ';' ||
			    strpbrk(a, " \t\n\v\f\r") != NULL)
				fprintf(out, "args = \"%s\"\n", a);
			else
				fprintf(out, "args = %s\n", a);
		}
		print_duration(out, "timeout", svc->timeout_ms);
		print_size(out, "output_max", svc->output_max);
		print_size(out, "stderr_max", svc->stderr_max);
		fprintf(out, "offer = %s\n", svc->offer ? "true" : "false");
		if (svc->max_concurrent == 0)
			fprintf(out, "max_concurrent = auto\n");
		else
			fprintf(out, "max_concurrent = %" PRIu32 "\n",
			        svc->max_concurrent);
		if (svc->rlimit_cpu_s != 0)
			print_duration(out, "rlimit_cpu",
			               svc->rlimit_cpu_s * 1000);
		if (svc->rlimit_as_bytes != 0)
			print_size(out, "rlimit_as", svc->rlimit_as_bytes);
		if (svc->rlimit_nofile != 0)
			fprintf(out, "rlimit_nofile = %" PRIu64 "\n",
			        svc->rlimit_nofile);
	}
}

/* ---- built-ins --------------------------------------------------------- */

enum fmd_builtin fmd_builtin_find(const char *name)
{
	int i;

	for (i = 0; i < FMD_BUILTIN_COUNT; i++)
		if (strcmp(name, builtin_names[i]) == 0)
			return (enum fmd_builtin)i;
	return FMD_BUILTIN_NONE;
}

const char *fmd_builtin_name(enum fmd_builtin b)
{
	if (b < 0 || (int)b >= FMD_BUILTIN_COUNT)
		return "?";
	return builtin_names[b];
}

void fmd_sha256_hex(const uint8_t *input, size_t len,
                    char out[FMD_SHA256_HEX_LEN])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[crypto_hash_sha256_BYTES];
	size_t i;

	crypto_hash_sha256(digest, input, len);
	for (i = 0; i < sizeof(digest); i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
}

int fmd_sleep_parse(const uint8_t *input, size_t len, uint64_t *ms)
{
	size_t i = 0;
	uint64_t v = 0;
	int digits = 0;

	while (i < len && (input[i] == ' ' || input[i] == '\t' ||
	                   input[i] == '\n' || input[i] == '\r'))
		i++;
	for (; i < len && input[i] >= '0' && input[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(input[i] - '0');
		digits++;
	}
	while (i < len && (input[i] == ' ' || input[i] == '\t' ||
	                   input[i] == '\n' || input[i] == '\r'))
		i++;
	if (digits == 0 || i != len)
		return -EINVAL;
	*ms = v;
	return 0;
}

/* ---- removing a scratch directory ---------------------------------------- */

static int chmod_dirs(const char *path, const struct stat *st, int type,
                      struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_D || type == FTW_DNR)
		(void)chmod(path, S_IRWXU);
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int type,
                      struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP || type == FTW_DNR)
		(void)rmdir(path);
	else
		(void)unlink(path);
	return 0;
}

int fmd_remove_tree(const char *path)
{
	struct stat st;
	int pass;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) == 0 ? 0 : -errno;
	for (pass = 0; pass < FMD_REMOVE_TREE_CHMOD_PASSES; pass++)
		(void)nftw(path, chmod_dirs, FMD_REMOVE_TREE_FDS, FTW_PHYS);
	(void)nftw(path, remove_one, FMD_REMOVE_TREE_FDS, FTW_DEPTH | FTW_PHYS);
	if (lstat(path, &st) == 0)
		return -ENOTEMPTY;
	return 0;
}

/* ---- exec: the daemon side ---------------------------------------------- */

struct fmd_exec {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, out, err, report;
	uv_timer_t timer;
	int handles_open; /* close callbacks still to come */
	int pid;
	int exited;
	int out_open, err_open, report_open, in_open, proc_open;
	int64_t exit_status;
	int term_signal;
	/* Why the daemon stopped it: TIMED_OUT, CANCELLED or FAILED (output
	 * cap); QUEUED while it did not. */
	enum fm_job_state forced;
	int kill_stage; /* 0, 1: SIGTERM sent, 2: SIGKILL sent */
	uint64_t timeout_ms;
	uint8_t *input;
	size_t input_len;
	uv_write_t write_req;
	uint8_t *out_buf;
	size_t out_len;
	size_t out_cap;
	uint64_t out_max;
	char *err_buf; /* the last err_max bytes of stderr */
	size_t err_len;
	uint64_t err_max;
	char report_msg[FMD_EXEC_ERROR_MAX];
	size_t report_len;
	char read_buf[FMD_EXEC_READ_BYTES];
	char scratch[FMD_SERVICE_COMMAND_MAX + 1024];
	fmd_exec_done_cb done;
	void *ctx;
	int finished; /* done was called, or abandoned */
};

static void exec_on_timer(uv_timer_t *t);

static void exec_signal(fmd_exec *run, int sig)
{
	/* The whole process group (UV_PROCESS_DETACHED made it the
	 * leader), so a shell script's children stop too. */
	if (run->pid > 0 && kill(-run->pid, sig) != 0 && !run->exited)
		(void)kill(run->pid, sig);
}

static void remove_work(uv_work_t *req)
{
	char *path = req->data;

	if (fmd_remove_tree(path + sizeof(uv_work_t)) != 0)
		fmd_log(FM_LOG_WARN, "jobs", "cannot remove scratch dir %s",
		        path + sizeof(uv_work_t));
}

static void remove_after(uv_work_t *req, int status)
{
	(void)status;
	free(req);
}

/* In the thread pool: a job's scratch tree may be large. */
static void scratch_remove_async(uv_loop_t *loop, const char *path)
{
	size_t len = strlen(path) + 1;
	uv_work_t *req = malloc(sizeof(uv_work_t) + len);

	if (req == NULL) {
		(void)fmd_remove_tree(path);
		return;
	}
	memcpy((char *)req + sizeof(uv_work_t), path, len);
	req->data = req;
	if (uv_queue_work(loop, req, remove_work, remove_after) != 0) {
		(void)fmd_remove_tree(path);
		free(req);
	}
}

static void exec_on_closed(uv_handle_t *h)
{
	fmd_exec *run = h->data;

	if (--run->handles_open > 0)
		return;
	if (run->scratch[0] != '\0')
		scratch_remove_async(run->loop, run->scratch);
	free(run->input);
	free(run->out_buf);
	free(run->err_buf);
	free(run);
}

static void exec_close(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, exec_on_closed);
}

static void exec_close_all(fmd_exec *run)
{
	if (run->in_open) {
		run->in_open = 0;
		exec_close((uv_handle_t *)&run->in);
	}
	if (run->out_open) {
		run->out_open = 0;
		exec_close((uv_handle_t *)&run->out);
	}
	if (run->err_open) {
		run->err_open = 0;
		exec_close((uv_handle_t *)&run->err);
	}
	if (run->report_open) {
		run->report_open = 0;
		exec_close((uv_handle_t *)&run->report);
	}
	exec_close((uv_handle_t *)&run->timer);
	if (run->proc_open) {
		run->proc_open = 0;
		exec_close((uv_handle_t *)&run->proc);
	}
}

static const char *signal_name(int sig)
{
	const char *name = sigabbrev_np(sig);

	return name != NULL ? name : "?";
}

/* The error text: a prefix and the last line(s) of stderr that fit. */
static void exec_error_text(const fmd_exec *run, const char *prefix, char *out,
                            size_t out_len)
{
	size_t n = run->err_len;
	const char *tail = run->err_buf;
	size_t room;
	int w;

	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
		n--;
	w = snprintf(out, out_len, "%s", prefix);
	if (w < 0 || (size_t)w >= out_len || n == 0)
		return;
	room = out_len - (size_t)w - 3;
	if (n > room) {
		tail += n - room;
		n = room;
	}
	snprintf(out + w, out_len - (size_t)w, ": %.*s", (int)n, tail);
}

static void exec_finish(fmd_exec *run)
{
	char prefix[96];
	char error[FMD_EXEC_ERROR_MAX];
	fmd_exec_result r;

	if (run->finished || !run->exited || run->out_open || run->err_open ||
	    run->report_open)
		return;
	run->finished = 1;
	memset(&r, 0, sizeof(r));
	r.exit_status = -1;
	r.term_signal = run->term_signal;
	r.output = run->out_buf;
	r.output_len = run->out_len;
	error[0] = '\0';
	if (run->report_len > 0) {
		r.state = FM_JOB_FAILED;
		snprintf(error, sizeof(error), "cannot start: %.*s",
		         (int)run->report_len, run->report_msg);
		r.output_len = 0;
	} else if (run->forced == FM_JOB_TIMED_OUT) {
		r.state = FM_JOB_TIMED_OUT;
		snprintf(prefix, sizeof(prefix),
		         "timed out after %" PRIu64 " ms", run->timeout_ms);
		exec_error_text(run, prefix, error, sizeof(error));
	} else if (run->forced == FM_JOB_CANCELLED) {
		r.state = FM_JOB_CANCELLED;
		snprintf(error, sizeof(error), "cancelled");
	} else if (run->forced == FM_JOB_FAILED) {
		r.state = FM_JOB_FAILED;
		snprintf(error, sizeof(error),
		         "output larger than output_max (%" PRIu64 " bytes)",
		         run->out_max);
		r.output_len = 0;
	} else if (run->term_signal != 0) {
		/* Killed by a signal of its own making (a crash, a resource
		 * limit): the program's answer, as a shell reports it, not a
		 * failure of this node to retry elsewhere. */
		r.state = FM_JOB_DONE;
		r.exit_status = 128 + run->term_signal;
		snprintf(prefix, sizeof(prefix), "killed by signal %d (SIG%s)",
		         run->term_signal, signal_name(run->term_signal));
		exec_error_text(run, prefix, error, sizeof(error));
	} else {
		/* The program ran: its exit status is its answer, and a
		 * non-zero one is not the node's failure. */
		r.state = FM_JOB_DONE;
		r.exit_status = (int)run->exit_status;
		if (run->exit_status != 0) {
			snprintf(prefix, sizeof(prefix), "exit status %d",
			         (int)run->exit_status);
			exec_error_text(run, prefix, error, sizeof(error));
		}
	}
	r.error = error[0] != '\0' ? error : NULL;
	if (run->done != NULL)
		run->done(run->ctx, run, &r);
	exec_close_all(run);
}

static void exec_on_exit(uv_process_t *proc, int64_t exit_status,
                         int term_signal)
{
	fmd_exec *run = proc->data;

	run->exited = 1;
	run->exit_status = exit_status;
	run->term_signal = term_signal;
	/* Whatever it left behind in its group goes too. */
	if (run->pid > 0)
		(void)kill(-run->pid, SIGKILL);
	run->pid = 0;
	if (run->out_open || run->err_open || run->report_open) {
		uv_timer_stop(&run->timer);
		run->kill_stage = 3;
		uv_timer_start(&run->timer, exec_on_timer,
		               FMD_EXEC_PIPE_LINGER_MS, 0);
	}
	exec_finish(run);
}

static void exec_stop(fmd_exec *run, enum fm_job_state why)
{
	if (run->forced == FM_JOB_QUEUED)
		run->forced = why;
	if (run->exited || run->kill_stage >= 1)
		return;
	run->kill_stage = 1;
	exec_signal(run, SIGTERM);
	uv_timer_stop(&run->timer);
	uv_timer_start(&run->timer, exec_on_timer, FMD_EXEC_KILL_GRACE_MS, 0);
}

static void exec_on_timer(uv_timer_t *t)
{
	fmd_exec *run = t->data;

	if (run->kill_stage == 3) {
		/* The process is gone but a descendant that left its group
		 * holds the pipes: stop waiting for them. */
		if (run->out_open) {
			run->out_open = 0;
			exec_close((uv_handle_t *)&run->out);
		}
		if (run->err_open) {
			run->err_open = 0;
			exec_close((uv_handle_t *)&run->err);
		}
		if (run->report_open) {
			run->report_open = 0;
			exec_close((uv_handle_t *)&run->report);
		}
		exec_finish(run);
		return;
	}
	if (run->kill_stage == 0) {
		exec_stop(run, FM_JOB_TIMED_OUT);
		return;
	}
	run->kill_stage = 2;
	exec_signal(run, SIGKILL);
}

static void exec_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	fmd_exec *run = h->data;

	(void)suggested;
	*buf = uv_buf_init(run->read_buf, sizeof(run->read_buf));
}

static void exec_pipe_eof(fmd_exec *run, uv_pipe_t *p, int *open_flag)
{
	if (*open_flag) {
		*open_flag = 0;
		exec_close((uv_handle_t *)p);
	}
	exec_finish(run);
}

static void exec_on_out(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	fmd_exec *run = s->data;
	size_t n = (size_t)nread;

	if (nread < 0) {
		exec_pipe_eof(run, &run->out, &run->out_open);
		return;
	}
	if (run->forced == FM_JOB_FAILED)
		return;
	if (run->out_len + n > run->out_max) {
		/* Over the cap: the run fails and stops now. */
		run->forced = FM_JOB_FAILED;
		run->kill_stage = 2;
		exec_signal(run, SIGKILL);
		return;
	}
	if (run->out_len + n > run->out_cap) {
		size_t cap = run->out_cap != 0 ? run->out_cap : 4096;
		uint8_t *grown;

		while (cap < run->out_len + n)
			cap *= 2;
		if (cap > run->out_max)
			cap = (size_t)run->out_max;
		grown = realloc(run->out_buf, cap);
		if (grown == NULL) {
			run->forced = FM_JOB_FAILED;
			exec_signal(run, SIGKILL);
			return;
		}
		run->out_buf = grown;
		run->out_cap = cap;
	}
	memcpy(run->out_buf + run->out_len, buf->base, n);
	run->out_len += n;
}

static void exec_on_err(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	fmd_exec *run = s->data;
	size_t n = (size_t)nread;

	if (nread < 0) {
		exec_pipe_eof(run, &run->err, &run->err_open);
		return;
	}
	if (run->err_max == 0)
		return;
	/* Keep the tail: that is where the reason usually is. */
	if (n >= run->err_max) {
		memcpy(run->err_buf, buf->base + n - run->err_max,
		       (size_t)run->err_max);
		run->err_len = (size_t)run->err_max;
		return;
	}
	if (run->err_len + n > run->err_max) {
		size_t drop = run->err_len + n - (size_t)run->err_max;

		memmove(run->err_buf, run->err_buf + drop, run->err_len - drop);
		run->err_len -= drop;
	}
	memcpy(run->err_buf + run->err_len, buf->base, n);
	run->err_len += n;
}

static void exec_on_report(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	fmd_exec *run = s->data;
	size_t n;

	if (nread < 0) {
		exec_pipe_eof(run, &run->report, &run->report_open);
		return;
	}
	n = (size_t)nread;
	if (n > sizeof(run->report_msg) - 1 - run->report_len)
		n = sizeof(run->report_msg) - 1 - run->report_len;
	memcpy(run->report_msg + run->report_len, buf->base, n);
	run->report_len += n;
}

static void exec_on_written(uv_write_t *req, int status)
{
	fmd_exec *run = req->data;

	(void)status; /* EPIPE: the program did not read it all; fine */
	free(run->input);
	run->input = NULL;
	if (run->in_open) {
		run->in_open = 0;
		exec_close((uv_handle_t *)&run->in);
	}
}

static int exec_init_pipe(fmd_exec *run, uv_pipe_t *p, int *open_flag)
{
	int rc = uv_pipe_init(run->loop, p, 0);

	if (rc != 0)
		return rc;
	p->data = run;
	run->handles_open++;
	*open_flag = 1;
	return 0;
}

void fmd_exec_helper_find(char *out, size_t len)
{
	char self[FMD_SERVICE_COMMAND_MAX + 64];
	char *slash;
	ssize_t n;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash != NULL) {
			snprintf(out, len, "%.*s/%s", (int)(slash - self), self,
			         FMD_EXEC_HELPER_NAME);
			if (access(out, X_OK) == 0)
				return;
		}
	}
#ifdef FMD_EXEC_HELPER_PATH
	snprintf(out, len, "%s", FMD_EXEC_HELPER_PATH);
	if (access(out, X_OK) == 0)
		return;
#endif
	snprintf(out, len, "/proc/self/exe");
}

int fmd_exec_start(uv_loop_t *loop, const fmd_exec_service *svc,
                   const char *helper, const char *scratch_dir,
                   const uint8_t *input, size_t input_len, uint64_t timeout_ms,
                   fmd_exec_done_cb done, void *ctx, fmd_exec **out)
{
	char cpu[24], as[24], nofile[24];
	char home[sizeof(((fmd_exec *)0)->scratch) + 8];
	char *args[FMD_SERVICE_ARGS_MAX + 8];
	char *env[4];
	uv_stdio_container_t stdio[4];
	uv_process_options_t opts;
	fmd_exec *run;
	size_t off;
	size_t n = 0;
	int rc;

	*out = NULL;
	if (strlen(scratch_dir) >= sizeof(run->scratch))
		return -ENAMETOOLONG;
	run = calloc(1, sizeof(*run));
	if (run == NULL)
		return -ENOMEM;
	run->loop = loop;
	run->done = done;
	run->ctx = ctx;
	run->forced = FM_JOB_QUEUED;
	run->timeout_ms = timeout_ms;
	run->out_max = svc->output_max;
	run->err_max = svc->stderr_max;
	if (run->err_max > 0) {
		run->err_buf = malloc((size_t)run->err_max);
		if (run->err_buf == NULL) {
			rc = -ENOMEM;
			goto fail_early;
		}
	}
	if (input_len > 0) {
		run->input = malloc(input_len);
		if (run->input == NULL) {
			rc = -ENOMEM;
			goto fail_early;
		}
		memcpy(run->input, input, input_len);
		run->input_len = input_len;
	}
	if (mkdir(scratch_dir, S_IRWXU) != 0) {
		/* Left over by a crash: start clean. */
		if (errno != EEXIST || fmd_remove_tree(scratch_dir) != 0 ||
		    mkdir(scratch_dir, S_IRWXU) != 0) {
			rc = -errno;
			if (rc == 0)
				rc = -EIO;
			goto fail_early;
		}
	}
	snprintf(run->scratch, sizeof(run->scratch), "%s", scratch_dir);

	snprintf(cpu, sizeof(cpu), "%" PRIu64, svc->rlimit_cpu_s);
	snprintf(as, sizeof(as), "%" PRIu64, svc->rlimit_as_bytes);
	snprintf(nofile, sizeof(nofile), "%" PRIu64, svc->rlimit_nofile);
	args[n++] = (char *)"fedmeshd";
	args[n++] = (char *)FMD_EXEC_CHILD_FLAG;
	args[n++] = cpu;
	args[n++] = as;
	args[n++] = nofile;
	args[n++] = (char *)"--";
	args[n++] = (char *)svc->command;
	for (off = 0;
	     off < svc->args_len && n < sizeof(args) / sizeof(*args) - 1;
	     off += strlen(svc->args + off) + 1)
		args[n++] = (char *)svc->args + off;
	args[n] = NULL;
	snprintf(home, sizeof(home), "HOME=%s", scratch_dir);
	env[0] = (char *)"PATH=" FMD_EXEC_PATH;
	env[1] = home;
	env[2] = (char *)"LANG=C";
	env[3] = NULL;

	rc = uv_timer_init(loop, &run->timer);
	if (rc != 0)
		goto fail_early;
	run->timer.data = run;
	run->handles_open++;
	if ((rc = exec_init_pipe(run, &run->in, &run->in_open)) != 0 ||
	    (rc = exec_init_pipe(run, &run->out, &run->out_open)) != 0 ||
	    (rc = exec_init_pipe(run, &run->err, &run->err_open)) != 0 ||
	    (rc = exec_init_pipe(run, &run->report, &run->report_open)) != 0)
		goto fail;
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&run->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&run->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&run->err;
	stdio[3].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[3].data.stream = (uv_stream_t *)&run->report;
	memset(&opts, 0, sizeof(opts));
	opts.exit_cb = exec_on_exit;
	opts.file = helper;
	opts.args = args;
	opts.env = env;
	opts.cwd = scratch_dir;
	opts.flags = UV_PROCESS_DETACHED;
	opts.stdio_count = 4;
	opts.stdio = stdio;
	run->proc.data = run;
	rc = uv_spawn(loop, &run->proc, &opts);
	if (rc != 0) {
		/* libuv initialised the handle: it must be closed too. */
		run->handles_open++;
		run->proc_open = 1;
		run->exited = 1;
		goto fail;
	}
	run->handles_open++;
	run->proc_open = 1;
	run->pid = run->proc.pid;
	uv_read_start((uv_stream_t *)&run->out, exec_on_alloc, exec_on_out);
	uv_read_start((uv_stream_t *)&run->err, exec_on_alloc, exec_on_err);
	uv_read_start((uv_stream_t *)&run->report, exec_on_alloc,
	              exec_on_report);
	if (run->input_len > 0) {
		uv_buf_t b = uv_buf_init((char *)run->input,
		                         (unsigned)run->input_len);

		run->write_req.data = run;
		rc = uv_write(&run->write_req, (uv_stream_t *)&run->in, &b, 1,
		              exec_on_written);
		if (rc != 0) {
			run->in_open = 0;
			exec_close((uv_handle_t *)&run->in);
		}
	} else {
		run->in_open = 0;
		exec_close((uv_handle_t *)&run->in);
	}
	uv_timer_start(&run->timer, exec_on_timer,
	               timeout_ms > 0 ? timeout_ms : 1, 0);
	*out = run;
	return 0;
fail:
	run->finished = 1;
	run->pid = 0;
	exec_close_all(run);
	return rc;
fail_early:
	free(run->input);
	free(run->err_buf);
	free(run);
	return rc;
}

void fmd_exec_kill(fmd_exec *run)
{
	if (run == NULL || run->finished)
		return;
	exec_stop(run, FM_JOB_CANCELLED);
}

void fmd_exec_abandon(fmd_exec *run)
{
	if (run == NULL)
		return;
	if (!run->exited)
		exec_signal(run, SIGKILL);
	run->done = NULL;
	if (!run->finished) {
		run->finished = 1;
		exec_close_all(run);
	}
}
