/* The durable job queue's SQL (schema version 4 of the store): the table of
 * jobs submitted on this node and the journal of exec runs started on it.
 * Writes that must be durable before an answer (a new job, the start of an
 * exec run) commit at once; progress and results are batched into one
 * transaction per loop iteration, committed by fmd_jobstore_commit(). */
#ifndef FMD_JOBSTORE_H
#define FMD_JOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"
#include "store.h"

typedef struct fmd_jobstore fmd_jobstore;

/* Text kept of a job's error, and of its attempts as JSON. */
#define FMD_JOB_ERROR_TEXT_MAX 512
#define FMD_JOB_ATTEMPTS_JSON_MAX 4096

typedef struct fmd_job_row {
	char id[FM_JOB_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	enum fm_job_state state;
	uint64_t timeout_ms;
	int idempotent;
	int64_t created_unix_ms;
	int64_t updated_unix_ms;
	int64_t finished_unix_ms; /* 0 while unfinished */
	size_t input_len;
	uint8_t *output; /* malloc'd by the reader; NULL when none */
	size_t output_len;
	int has_output;
	int has_exit_status;
	int exit_status;
	char ran_on[FM_NODE_ID_HEX_LEN + 1]; /* "" when not known */
	char error[FMD_JOB_ERROR_TEXT_MAX];  /* "" when none */
	/* [{"node_id","start_unix_ms","end_unix_ms","outcome","error"}] */
	char attempts_json[FMD_JOB_ATTEMPTS_JSON_MAX];
} fmd_job_row;

/* One exec run of the journal: started here, finished or not. */
typedef struct fmd_run_row {
	int finished;
	enum fm_job_state state;
	int exit_status; /* -1 when none */
	uint8_t *output; /* malloc'd; NULL when none */
	size_t output_len;
	char error[FMD_JOB_ERROR_TEXT_MAX];
} fmd_run_row;

/* on_batch is called when a batch transaction opens, so the owner can
 * arrange fmd_jobstore_commit() before the loop sleeps. */
int fmd_jobstore_open(fmd_store *store, void (*on_batch)(void *ctx), void *ctx,
                      fmd_jobstore **out);
/* Commits what is pending and frees. Accepts NULL. */
void fmd_jobstore_close(fmd_jobstore *js);
/* Commits the batch transaction, if one is open. */
int fmd_jobstore_commit(fmd_jobstore *js);
/* 1 while a batch transaction is open. */
int fmd_jobstore_pending(const fmd_jobstore *js);

/* Parses a state name ("queued", "done", ...). -EINVAL when unknown. */
int fmd_job_state_parse(const char *name, enum fm_job_state *out);
/* 1 for done, failed, timed_out, cancelled. */
int fmd_job_state_final(enum fm_job_state state);

/* A new job, in the batch: the caller commits (fmd_jobstore_commit)
 * before it tells anyone the job is queued. The row's output, result and
 * attempts are ignored. -EEXIST when the ID is taken. */
int fmd_jobstore_insert(fmd_jobstore *js, const fmd_job_row *row,
                        const uint8_t *input, size_t input_len);
/* Progress (batched). ran_on may be NULL. */
int fmd_jobstore_progress(fmd_jobstore *js, const char *id,
                          enum fm_job_state state, int64_t now_unix_ms,
                          const char *ran_on, const char *attempts_json);
/* The result (batched): row's state, finished/updated time, output,
 * exit status, ran_on, error and attempts. */
int fmd_jobstore_finish(fmd_jobstore *js, const fmd_job_row *row);
/* -ENOENT when absent. with_output: also read the output (malloc'd into
 * row->output; free it with fmd_job_row_clear()). */
int fmd_jobstore_get(fmd_jobstore *js, const char *id, int with_output,
                     fmd_job_row *row);
void fmd_job_row_clear(fmd_job_row *row);

/* Newest first; state < 0 and service NULL mean any. The rows carry no
 * output. cb returning non-zero stops the walk (and is returned). */
int fmd_jobstore_list(fmd_jobstore *js, int state, const char *service,
                      size_t limit,
                      int (*cb)(void *ctx, const fmd_job_row *row), void *ctx);
/* Every job not finished (queued, dispatched, running), oldest first;
 * rows without output. cb must not write to the store. */
int fmd_jobstore_foreach_unfinished(fmd_jobstore *js,
                                    int (*cb)(void *ctx,
                                              const fmd_job_row *row),
                                    void *ctx);
/* A job's input, malloc'd (NULL for an empty one). -ENOENT when absent. */
int fmd_jobstore_get_input(fmd_jobstore *js, const char *id, uint8_t **input,
                           size_t *input_len);
/* Deletes results (jobs and runs) finished before before_unix_ms, and
 * journalled runs started before it that never finished; returns how many
 * rows went, or a negative errno. */
int fmd_jobstore_sweep(fmd_jobstore *js, int64_t before_unix_ms);
/* The time from which fmd_jobstore_sweep() would delete something: the
 * oldest finish (of a job or a run) or start (of a run never finished).
 * Returns 1 and sets *oldest_unix_ms, 0 when there is nothing a sweep
 * could ever delete, or a negative errno. */
int fmd_jobstore_sweep_oldest(fmd_jobstore *js, int64_t *oldest_unix_ms);

/* The exec run journal. run_get: -ENOENT when this node never started
 * (id, service). run_start and run_finish are batched: the caller starts
 * the process only after fmd_jobstore_commit(). */
int fmd_jobstore_run_get(fmd_jobstore *js, const char *id, const char *service,
                         fmd_run_row *row);
int fmd_jobstore_run_start(fmd_jobstore *js, const char *id,
                           const char *service, int64_t now_unix_ms);
int fmd_jobstore_run_finish(fmd_jobstore *js, const char *id,
                            const char *service, enum fm_job_state state,
                            int exit_status, const uint8_t *output,
                            size_t output_len, const char *error,
                            int64_t now_unix_ms);
/* Drops a journal row: a run this node stopped itself (shutdown), which
 * may start again. */
int fmd_jobstore_run_forget(fmd_jobstore *js, const char *id,
                            const char *service);
void fmd_run_row_clear(fmd_run_row *row);

#endif
