/* The services fedmeshd can run: the built-ins (echo, sha256, sleep) and the
 * operator's exec services from [service.NAME] sections of the config
 * file, with their limits. This header holds their configuration (parsed
 * by config.c through fmd_jobs_config_set) and the two ways of running
 * them: a built-in computed on the loop or in libuv's thread pool, and an
 * exec service as a child process. The executor (jobs.c) decides when. */
#ifndef FMD_SERVICES_H
#define FMD_SERVICES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "exec_child.h"
#include "fedmesh/fedmesh.h"

/* Built-in services, always present. */
#define FMD_BUILTIN_COUNT 3
/* Exec services: what is left of the record's service list. */
#define FMD_EXEC_SERVICES_MAX (FM_NODE_SERVICES_MAX - FMD_BUILTIN_COUNT)
/* The command: an absolute path, no PATH search. */
#define FMD_SERVICE_COMMAND_MAX 256
/* Fixed arguments: at most this many, in at most this many bytes with
 * their NULs. */
#define FMD_SERVICE_ARGS_MAX 32
#define FMD_SERVICE_ARGS_BYTES 1024
/* Limits and defaults of the [jobs] section. */
#define FMD_JOBS_KEEP_DEFAULT_MS (24ULL * 3600 * 1000)
#define FMD_JOBS_TIMEOUT_DEFAULT_MS (60ULL * 1000)
/* The core's ceiling (a longer timeout is refused). */
#define FMD_JOBS_TIMEOUT_MAX_MS (24ULL * 3600 * 1000)
#define FMD_JOBS_SLOTS_MAX 1024
/* Defaults of an exec service. */
#define FMD_EXEC_TIMEOUT_DEFAULT_MS (60ULL * 1000)
#define FMD_EXEC_OUTPUT_DEFAULT_BYTES (1024ULL * 1024)
#define FMD_EXEC_STDERR_DEFAULT_BYTES (64ULL * 1024)
/* Between SIGTERM and SIGKILL when a run times out or is cancelled. */
#define FMD_EXEC_KILL_GRACE_MS 1000
/* The environment of an exec service: nothing of the daemon's. */
#define FMD_EXEC_PATH "/usr/bin:/bin"

typedef struct fmd_exec_service {
	char name[FM_SERVICE_NAME_MAX + 1];
	char command[FMD_SERVICE_COMMAND_MAX];
	/* argc NUL-terminated strings, back to back. */
	char args[FMD_SERVICE_ARGS_BYTES];
	size_t args_len;
	uint32_t argc;
	uint64_t timeout_ms;
	uint64_t output_max;     /* bytes of stdout; over it the run fails */
	uint64_t stderr_max;     /* bytes of stderr kept */
	int offer;               /* offered to peers; default no */
	uint32_t max_concurrent; /* 0: the number of CPUs */
	uint64_t rlimit_cpu_s;   /* 0: not set (inherited) */
	uint64_t rlimit_as_bytes;
	uint64_t rlimit_nofile;
} fmd_exec_service;

typedef struct fmd_jobs_config {
	int builtins;           /* run the built-ins at all; default yes */
	int offer_builtin;      /* built-ins offered to peers; default yes */
	uint32_t builtin_slots; /* 0: the number of CPUs */
	uint64_t keep_ms;       /* how long results are kept */
	uint64_t input_max;     /* bytes, at most FM_JOB_INPUT_MAX */
	uint64_t timeout_ms;    /* of a job whose client gave none */
	fmd_exec_service services[FMD_EXEC_SERVICES_MAX];
	size_t service_count;
} fmd_jobs_config;

void fmd_jobs_config_defaults(fmd_jobs_config *cfg);
/* One key of [jobs] or of [service.NAME]. -EINVAL with a message in err
 * for an unknown key or a bad value. */
int fmd_jobs_config_set(fmd_jobs_config *cfg, const char *section,
                        const char *key, const char *value, char *err,
                        size_t err_len);
/* 1 when section belongs to this module ("jobs", "service.NAME"). */
int fmd_jobs_config_owns(const char *section);
/* After every source was applied: each exec service has a command. */
int fmd_jobs_config_check(const fmd_jobs_config *cfg, char *err,
                          size_t err_len);
/* The [jobs] and [service.NAME] sections, readable back. */
void fmd_jobs_config_print(const fmd_jobs_config *cfg, FILE *out);

/* "30s", "500ms", "5m", "24h", "2d"; a bare number is seconds. */
int fmd_parse_duration_ms(const char *text, uint64_t *out);
/* "1M", "64K", "1G", "1MiB", "512"; a bare number is bytes. */
int fmd_parse_size(const char *text, uint64_t *out);

/* The number of CPUs (at least 1): the default slots. */
uint32_t fmd_cpu_count(void);

/* ---- built-ins ------------------------------------------------------- */

enum fmd_builtin {
	FMD_BUILTIN_NONE = -1,
	FMD_BUILTIN_ECHO = 0,
	FMD_BUILTIN_SHA256,
	FMD_BUILTIN_SLEEP,
};

enum fmd_builtin fmd_builtin_find(const char *name);
const char *fmd_builtin_name(enum fmd_builtin b);
/* sha256: lowercase hex digest of input into out (64 bytes, no NUL). */
#define FMD_SHA256_HEX_LEN 64
void fmd_sha256_hex(const uint8_t *input, size_t len,
                    char out[FMD_SHA256_HEX_LEN]);
/* sleep: milliseconds as decimal text, surrounding whitespace allowed.
 * -EINVAL for anything else. */
int fmd_sleep_parse(const uint8_t *input, size_t len, uint64_t *ms);

/* ---- exec services ------------------------------------------------------ */

typedef struct fmd_exec fmd_exec;

/* How a run ended. DONE when the program ended by itself, with its exit
 * status (128 + N when signal N killed it); FAILED when it could not start
 * or its output was over the cap; TIMED_OUT or CANCELLED when the daemon
 * stopped it. exit_status is -1 when it is not DONE. */
typedef struct fmd_exec_result {
	enum fm_job_state state; /* DONE, FAILED, TIMED_OUT or CANCELLED */
	int exit_status;
	int term_signal;       /* 0 when it exited */
	const uint8_t *output; /* stdout; valid during the callback */
	size_t output_len;
	const char *error; /* NULL on success */
} fmd_exec_result;

typedef void (*fmd_exec_done_cb)(void *ctx, fmd_exec *run,
                                 const fmd_exec_result *result);

/* Starts svc in a fresh scratch directory scratch_dir (created here,
 * removed once the run is over) with input on its stdin; after at most
 * timeout_ms it is stopped (SIGTERM to its process group, SIGKILL after
 * FMD_EXEC_KILL_GRACE_MS). done is called exactly once, later, from the
 * loop, unless fmd_exec_abandon() is called first. helper is the program
 * that applies the limits and execs the command (exec_child.h):
 * fedmesh-exec, or fedmeshd itself. */
int fmd_exec_start(uv_loop_t *loop, const fmd_exec_service *svc,
                   const char *helper, const char *scratch_dir,
                   const uint8_t *input, size_t input_len, uint64_t timeout_ms,
                   fmd_exec_done_cb done, void *ctx, fmd_exec **out);
/* Stops a run (SIGTERM, then SIGKILL): done follows with CANCELLED. */
void fmd_exec_kill(fmd_exec *run);
/* Daemon shutdown: SIGKILL to the process group, handles closed, done is
 * never called. The scratch directory is removed. Accepts NULL. */
void fmd_exec_abandon(fmd_exec *run);
/* The helper to start exec services through: fedmesh-exec beside the
 * running fedmeshd (a build tree), else in FMD_EXEC_HELPER_PATH (where
 * make install puts it), else fedmeshd itself (/proc/self/exe, with
 * FMD_EXEC_CHILD_FLAG), which works but starts slower. */
void fmd_exec_helper_find(char *out, size_t len);

/* Removes a directory tree without following symbolic links (nftw with
 * FTW_PHYS). Blocking: call from the thread pool. 0 or a negative errno. */
int fmd_remove_tree(const char *path);

#endif
