/* Jobs in fedmeshd: the executor behind fm_io.job_execute / job_kill (runs
 * the services of services.h without blocking the loop and reports with
 * fm_node_job_finished), and the durable queue behind fm_io.job_update
 * (every job submitted here lives in sqlite from before its 202 until its
 * result expires, and is resubmitted with the same ID after a restart).
 * The routing, the job protocol and deduplication by ID are the core's;
 * this is the driver's half. */
#ifndef FMD_JOBS_H
#define FMD_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "jobstore.h"

typedef struct fmd_jobs fmd_jobs;

/* Inputs up to this size are hashed on the loop; larger ones in libuv's
 * thread pool, so one big job does not stall the API. */
#define FMD_JOBS_SHA256_INLINE_MAX (64 * 1024)
/* Exec runs waiting for a slot, per service; beyond it job_execute
 * refuses (-EBUSY) and the core tries another node. */
#define FMD_JOBS_EXEC_QUEUE_MAX 4096
/* Sweeps of expired results are at least min(keep / 2, this) apart; the
 * sweep is timed for the first result due to expire, never periodic. */
#define FMD_JOBS_SWEEP_MAX_MS (60 * 1000)
/* After a restart, unfinished jobs wait for the sessions to come back:
 * until a peer is connected plus SETTLE, at most WAIT (checked every
 * POLL). Without a known peer they go at once. */
#define FMD_JOBS_RESUME_POLL_MS 50
#define FMD_JOBS_RESUME_SETTLE_MS 500
#define FMD_JOBS_RESUME_WAIT_MS 5000
/* Upper bounds (seconds) of the job latency histogram. */
#define FMD_JOBS_LATENCY_BUCKETS 16

/* Creates the executor and opens the queue (d->store, d->loop and d->cfg
 * must be ready; d->node need not). Sets d->jobs. */
int fmd_jobs_new(fmd *d, char *err, size_t err_len);
/* Called by net.c while it builds the node: fills the job ops of io and
 * the services (offered and local-only) and capacity of ncfg. */
void fmd_jobs_attach(fmd *d, fm_io *io, fm_node_config *ncfg);
/* Once the node exists: every unfinished job is resubmitted with its ID
 * (once the sessions are back, FMD_JOBS_RESUME_*). Returns how many. */
int fmd_jobs_start(fmd *d);
/* Shutdown: running exec jobs are killed (their jobs stay unfinished in
 * the queue and resume at the next start), handles are closed and the
 * pending batch is committed. Nothing is reported to the core after. */
void fmd_jobs_stop(fmd *d);
/* Frees (after the loop has run the close callbacks). Accepts NULL. */
void fmd_jobs_free(fmd *d);

/* ---- for the HTTP API ---------------------------------------------------- */

typedef struct fmd_job_request {
	char id[FM_JOB_ID_MAX + 1]; /* "" to have one generated */
	char service[FM_SERVICE_NAME_MAX + 1];
	const uint8_t *input;
	size_t input_len;
	uint64_t timeout_ms; /* 0: the configured default */
	int idempotent;
} fmd_job_request;

/* Largest input accepted ([jobs] input_max). */
uint64_t fmd_jobs_input_max(const fmd *d);
/* 1 when id is a valid job ID ([A-Za-z0-9._-], 1 to FM_JOB_ID_MAX bytes,
 * not starting with '.'). */
int fmd_job_id_valid(const char *id);
/* Queues a job: written to sqlite (in the batch: fmd_jobs_commit() before
 * the answer), then handed to the core. Returns 0
 * for a new job, 1 when a job with that ID exists already (nothing is
 * submitted); either way req->id holds the ID. -EINVAL for a bad request,
 * another negative errno when the store fails. */
int fmd_jobs_submit(fmd *d, fmd_job_request *req);
/* Commits what is batched (a new job included); before an answer says a
 * job is queued. 0 or a negative errno. */
int fmd_jobs_commit(fmd *d);
/* 0: cancellation requested; -ENOENT: no such job; -EALREADY: finished. */
int fmd_jobs_cancel(fmd *d, const char *id);
/* The job as the store has it (progress is written as it happens). */
int fmd_jobs_get(fmd *d, const char *id, int with_output, fmd_job_row *row);
int fmd_jobs_list(fmd *d, int state, const char *service, size_t limit,
                  int (*cb)(void *ctx, const fmd_job_row *row), void *ctx);
/* Node clock (attempts) to Unix ms. */
int64_t fmd_jobs_unix_ms(const fmd *d, uint64_t node_ms);

/* A client waiting for a job to end (POST ?wait, GET ?wait). wake is
 * called once, from the loop, when the job reaches a final state, when
 * deadline_ms (loop clock) passes, or at shutdown (expired is then 1); the
 * waiter is unlinked before. */
typedef struct fmd_job_waiter {
	struct fmd_job_waiter *next, *prev;         /* on its job */
	struct fmd_job_waiter *all_next, *all_prev; /* every waiter */
	void *job; /* owned by jobs.c; NULL while not waiting */
	uint64_t deadline_ms;
	int expired;
	void (*wake)(struct fmd_job_waiter *w);
} fmd_job_waiter;

/* -ENOENT when the job is not active (finished, or unknown). */
int fmd_jobs_wait(fmd *d, const char *id, uint64_t deadline_ms,
                  fmd_job_waiter *w);
/* Stops waiting without a wake. Accepts a waiter that is not waiting. */
void fmd_jobs_unwait(fmd *d, fmd_job_waiter *w);
/* Wakes every waiter now (expired = 1): the API is stopping. */
void fmd_jobs_wake_all(fmd *d);

/* Appends the job metrics (Prometheus text) to buf, which holds len bytes
 * of cap. Returns the new length, or -ENOSPC when they do not fit. */
int fmd_jobs_metrics(const fmd *d, char *buf, size_t len, size_t cap);

#endif
