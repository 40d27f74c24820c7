/* The daemon's half of jobs. Two roles meet here:
 *
 * - The executor. The core decides that a job runs on this node (its own
 *   or a peer's) and calls fm_io.job_execute; the executor starts the
 *   service without blocking the loop and later reports the end with
 *   fm_node_job_finished. Reports are deferred to an idle callback so the
 *   core is never re-entered from inside one of its own calls. Exec runs
 *   are journalled (job_runs) before their process starts: a run this node
 *   finished is answered from the journal after a restart, and one a crash
 *   interrupted is not started twice here.
 *
 * - The durable queue. A job submitted through the API is committed to
 *   sqlite before it is handed to the core, its progress and result are
 *   written as fm_io.job_update reports them (batched: one transaction per
 *   loop iteration), and at start every unfinished job is resubmitted with
 *   its ID, which the executing node deduplicates. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "jobs.h"
#include "keyfile.h"
#include "log.h"
#include "metrics_text.h"
#include "net.h"
#include "services.h"

/* First size of the hash tables; they double past one entry a bucket. */
#define FMD_JOBS_HASH_INITIAL 256
/* Bytes of a generated job ID (hex-encoded: twice as many characters). */
#define FMD_JOBS_ID_RANDOM_BYTES 16
/* The core names a peer's job "<64 hex of the submitter>:<job ID>" when
 * it asks this node to run it; its own jobs by their ID. */
#define FMD_RUN_ID_MAX (2 * FM_NODE_ID_BYTES + 1 + FM_JOB_ID_MAX)
/* Path of a scratch directory: STATE_DIR/jobs/RUN_ID. */
#define FMD_JOBS_PATH_MAX (FMD_PATH_MAX + FMD_RUN_ID_MAX + 16)

static const double latency_bounds_s[FMD_JOBS_LATENCY_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5,   1,      2.5,   5,    10,    30,   60,  300};

/* ---- a small string-keyed hash table (SipHash, random key) --------------- */

typedef struct hentry {
	struct hentry *next;
	uint64_t hash;
	const char *key;
} hentry;

typedef struct hmap {
	hentry **buckets;
	size_t nbuckets;
	size_t count;
	uint8_t key[crypto_shorthash_KEYBYTES];
} hmap;

static int hmap_init(hmap *m)
{
	m->buckets = calloc(FMD_JOBS_HASH_INITIAL, sizeof(*m->buckets));
	if (m->buckets == NULL)
		return -ENOMEM;
	m->nbuckets = FMD_JOBS_HASH_INITIAL;
	m->count = 0;
	/* Job IDs are chosen by clients and peers: a keyed hash keeps them
	 * from aiming at one bucket. */
	randombytes_buf(m->key, sizeof(m->key));
	return 0;
}

static uint64_t hmap_hash(const hmap *m, const char *key)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)key, strlen(key), m->key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static hentry *hmap_find(const hmap *m, const char *key)
{
	uint64_t h;
	hentry *e;

	if (m->buckets == NULL)
		return NULL;
	h = hmap_hash(m, key);
	for (e = m->buckets[h % m->nbuckets]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void hmap_grow(hmap *m)
{
	size_t n = m->nbuckets * 2;
	hentry **b = calloc(n, sizeof(*b));
	size_t i;

	if (b == NULL)
		return; /* longer chains, still correct */
	for (i = 0; i < m->nbuckets; i++) {
		hentry *e = m->buckets[i];

		while (e != NULL) {
			hentry *next = e->next;

			e->next = b[e->hash % n];
			b[e->hash % n] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

static void hmap_insert(hmap *m, hentry *e, const char *key)
{
	e->key = key;
	e->hash = hmap_hash(m, key);
	e->next = m->buckets[e->hash % m->nbuckets];
	m->buckets[e->hash % m->nbuckets] = e;
	if (++m->count > m->nbuckets)
		hmap_grow(m);
}

static void hmap_remove(hmap *m, hentry *e)
{
	hentry **p = &m->buckets[e->hash % m->nbuckets];

	for (; *p != NULL; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			m->count--;
			return;
		}
}

/* ---- state -----------------------------------------------------------------
 */

/* A job submitted here and not finished yet. */
typedef struct active_job {
	hentry h; /* first: entries are found by their hentry */
	char id[FM_JOB_ID_MAX + 1];
	uint64_t start_ns; /* uv_hrtime() at submission */
	fmd_job_waiter *waiters;
	int in_core; /* handed to the core (else in the backlog) */
} active_job;

/* Jobs the core had no room for (-ENOSPC): they wait in sqlite, and here
 * by ID, until an active job ends. */
typedef struct backlog_entry {
	struct backlog_entry *next;
	char id[FM_JOB_ID_MAX + 1];
} backlog_entry;

enum run_kind { RUN_ECHO, RUN_SHA256, RUN_SLEEP, RUN_EXEC };

/* A job the core asked this node to run. */
typedef struct run {
	hentry h; /* first */
	struct fmd_jobs *jobs;
	char id[FMD_RUN_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	enum run_kind kind;
	size_t exec_index; /* RUN_EXEC: index in cfg.jobs.services */
	uint8_t *input;
	size_t input_len;
	uint64_t timeout_ms;
	uint64_t queued_at_ms; /* loop clock at job_execute */
	int in_table;
	int queued;    /* RUN_EXEC waiting for a slot */
	int working;   /* RUN_SHA256 in the thread pool */
	int done;      /* result set, report pending */
	int launching; /* RUN_EXEC journalled, its process not started */
	int killed;
	int journal;       /* RUN_EXEC: a job_runs row to finish */
	uv_timer_t *timer; /* RUN_SLEEP */
	uv_work_t work;    /* RUN_SHA256 */
	fmd_exec *exec;
	struct run *qnext; /* exec wait queue, or the report queue */
	/* The result, reported from the idle callback. */
	enum fm_job_state state;
	int exit_status;
	uint8_t *output;
	size_t output_len;
	char error[FM_JOB_ERROR_MAX];
} run;

typedef struct exec_slots {
	uint32_t running;
	uint32_t max;
	run *qhead, *qtail;
	size_t qlen;
} exec_slots;

struct fmd_jobs {
	fmd *d;
	fmd_jobstore *js;
	uv_idle_t flush; /* reports and the batch commit */
	uv_timer_t sweep;
	uv_timer_t waits;  /* deadlines of the waiters */
	uv_timer_t resume; /* holds resubmission until peers are back */
	int flush_open, flush_active, sweep_open, waits_open, resume_open;
	/* The sweep of expired results runs at most this often, and only
	 * while there are results (or journalled runs) to expire. */
	uint64_t sweep_min_ms;
	int resume_hold;
	uint64_t resume_start_ms, resume_peer_ms;
	fmd_job_waiter *waiters; /* all of them */
	int wait_timer_armed;
	uint64_t wait_timer_due;
	int stopping;
	hmap active;
	hmap runs;
	run *done_head, *done_tail;
	run *launch_head, *launch_tail; /* exec runs to start after commit */
	backlog_entry *backlog_head, *backlog_tail;
	size_t backlog_len;
	exec_slots exec[FMD_EXEC_SERVICES_MAX];
	uint32_t builtin_slots;
	char scratch_root[FMD_PATH_MAX + 8];
	char helper[FMD_SERVICE_COMMAND_MAX + 64]; /* fmd_exec_helper_find */
	/* metrics */
	uint64_t latency_buckets[FMD_JOBS_LATENCY_BUCKETS];
	uint64_t latency_count;
	double latency_sum_s;
	uint64_t resubmitted;
	uint64_t runs_started;
	uint64_t runs_running;
	uint64_t runs_from_journal;
};

static void sweep_note(struct fmd_jobs *jobs);

static int64_t unix_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fmd_jobs_unix_ms(const fmd *d, uint64_t node_ms)
{
	return fmd_unix_from_node_ms(d, node_ms);
}

int fmd_job_id_valid(const char *id)
{
	size_t len = strnlen(id, FM_JOB_ID_MAX + 1);
	size_t i;

	if (len == 0 || len > FM_JOB_ID_MAX || id[0] == '.')
		return 0;
	for (i = 0; i < len; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= 'A' && id[i] <= 'Z') ||
		      (id[i] >= '0' && id[i] <= '9') || id[i] == '.' ||
		      id[i] == '_' || id[i] == '-'))
			return 0;
	return 1;
}

uint64_t fmd_jobs_input_max(const fmd *d)
{
	return d->cfg.jobs.input_max;
}

static void flush_schedule(struct fmd_jobs *jobs);

static void on_batch(void *ctx)
{
	flush_schedule(ctx);
}

/* ---- executor
 * ---------------------------------------------------------------- */

static void run_free(run *r)
{
	free(r->input);
	free(r->output);
	free(r);
}

static void run_unlink(run *r)
{
	if (r->in_table) {
		hmap_remove(&r->jobs->runs, &r->h);
		r->in_table = 0;
	}
}

/* Records the result; the report goes out from the idle callback. output
 * is taken over. */
static void run_complete(run *r, enum fm_job_state state, int exit_status,
                         uint8_t *output, size_t output_len, const char *error)
{
	struct fmd_jobs *jobs = r->jobs;

	if (r->done) {
		free(output);
		return;
	}
	r->done = 1;
	r->state = state;
	r->exit_status = exit_status;
	r->output = output;
	r->output_len = output_len;
	snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : "");
	r->qnext = NULL;
	if (jobs->done_tail != NULL)
		jobs->done_tail->qnext = r;
	else
		jobs->done_head = r;
	jobs->done_tail = r;
	flush_schedule(jobs);
}

static uint8_t *dup_bytes(const uint8_t *src, size_t len)
{
	uint8_t *p = malloc(len > 0 ? len : 1);

	if (p != NULL && len > 0)
		memcpy(p, src, len);
	return p;
}

static void sha256_work(uv_work_t *req)
{
	run *r = req->data;
	char hex[FMD_SHA256_HEX_LEN];

	fmd_sha256_hex(r->input, r->input_len, hex);
	free(r->input);
	r->input = dup_bytes((const uint8_t *)hex, sizeof(hex));
	r->input_len = r->input != NULL ? sizeof(hex) : 0;
}

static void sha256_after(uv_work_t *req, int status)
{
	run *r = req->data;
	uint8_t *hex = r->input;

	r->working = 0;
	if (r->jobs->stopping) {
		run_unlink(r);
		run_free(r);
		return;
	}
	r->input = NULL;
	if (status == UV_ECANCELED || r->killed)
		run_complete(r, FM_JOB_CANCELLED, -1, NULL, 0, "cancelled");
	else if (hex == NULL)
		run_complete(r, FM_JOB_FAILED, -1, NULL, 0, "out of memory");
	else
		run_complete(r, FM_JOB_DONE, 0, hex, FMD_SHA256_HEX_LEN, NULL);
	if (hex != NULL && (status == UV_ECANCELED || r->killed))
		free(hex);
}

static void sleep_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void sleep_timer_close(run *r)
{
	if (r->timer != NULL) {
		uv_close((uv_handle_t *)r->timer, sleep_timer_closed);
		r->timer = NULL;
	}
}

static void on_sleep_timer(uv_timer_t *t)
{
	run *r = t->data;
	uint64_t ms = 0;

	sleep_timer_close(r);
	/* The timer was the shorter of the sleep and the timeout. */
	(void)fmd_sleep_parse(r->input, r->input_len, &ms);
	if (r->timeout_ms > 0 && ms > r->timeout_ms) {
		char msg[64];

		snprintf(msg, sizeof(msg), "timed out after %" PRIu64 " ms",
		         r->timeout_ms);
		run_complete(r, FM_JOB_TIMED_OUT, -1, NULL, 0, msg);
		return;
	}
	run_complete(r, FM_JOB_DONE, 0, NULL, 0, NULL);
}

static void exec_done(void *ctx, fmd_exec *e, const fmd_exec_result *res);

static void scratch_path(const struct fmd_jobs *jobs, const char *id, char *out,
                         size_t len)
{
	/* IDs carry no '/', and none starts with '.' (an API rule; a peer's
	 * ID that does gets a prefix), so this stays inside jobs/. */
	snprintf(out, len, "%s/%s%s", jobs->scratch_root,
	         id[0] == '.' ? "_" : "", id);
}

/* Takes a slot and journals the run; the process starts from the idle
 * callback, after the commit, so the runs of one loop turn share one
 * commit and none starts before its journal row is durable. */
static void exec_start_one(run *r)
{
	struct fmd_jobs *jobs = r->jobs;
	const fmd_exec_service *svc =
	        &jobs->d->cfg.jobs.services[r->exec_index];
	uint64_t now = fmd_now_ms(jobs->d);
	uint64_t waited = now > r->queued_at_ms ? now - r->queued_at_ms : 0;
	char msg[FM_JOB_ERROR_MAX];
	int rc;

	/* The job's own timeout counts from job_execute, queue included. */
	if (r->timeout_ms > 0 && waited >= r->timeout_ms) {
		snprintf(msg, sizeof(msg),
		         "timed out after %" PRIu64
		         " ms waiting for a slot of %s",
		         r->timeout_ms, svc->name);
		run_complete(r, FM_JOB_TIMED_OUT, -1, NULL, 0, msg);
		return;
	}
	rc = fmd_jobstore_run_start(jobs->js, r->id, r->service, unix_now_ms());
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "cannot journal the run: %s",
		         strerror(-rc));
		run_complete(r, FM_JOB_FAILED, -1, NULL, 0, msg);
		return;
	}
	sweep_note(jobs);
	r->journal = 1;
	r->launching = 1;
	jobs->exec[r->exec_index].running++;
	r->qnext = NULL;
	if (jobs->launch_tail != NULL)
		jobs->launch_tail->qnext = r;
	else
		jobs->launch_head = r;
	jobs->launch_tail = r;
	flush_schedule(jobs);
}

static void exec_dequeue(struct fmd_jobs *jobs, size_t index);

/* The process of a journalled run (the journal is committed). */
static void exec_launch(run *r)
{
	struct fmd_jobs *jobs = r->jobs;
	const fmd_exec_service *svc =
	        &jobs->d->cfg.jobs.services[r->exec_index];
	char path[FMD_JOBS_PATH_MAX];
	uint64_t now = fmd_now_ms(jobs->d);
	uint64_t waited = now > r->queued_at_ms ? now - r->queued_at_ms : 0;
	uint64_t timeout = svc->timeout_ms;
	char msg[FM_JOB_ERROR_MAX];
	int rc = 0;

	r->launching = 0;
	if (r->timeout_ms > 0) {
		if (waited >= r->timeout_ms)
			waited = r->timeout_ms - 1;
		if (r->timeout_ms - waited < timeout)
			timeout = r->timeout_ms - waited;
	}
	if (!r->killed) {
		scratch_path(jobs, r->id, path, sizeof(path));
		rc = fmd_exec_start(jobs->d->loop, svc, jobs->helper, path,
		                    r->input, r->input_len, timeout, exec_done,
		                    r, &r->exec);
	}
	free(r->input);
	r->input = NULL;
	r->input_len = 0;
	if (r->killed || rc < 0) {
		jobs->exec[r->exec_index].running--;
		if (r->killed) {
			run_complete(r, FM_JOB_CANCELLED, -1, NULL, 0,
			             "cancelled");
		} else {
			snprintf(msg, sizeof(msg), "cannot start %s: %s",
			         svc->command, strerror(-rc));
			run_complete(r, FM_JOB_FAILED, -1, NULL, 0, msg);
		}
		exec_dequeue(jobs, r->exec_index);
		return;
	}
	jobs->runs_started++;
	jobs->runs_running++;
}

/* The runs journalled before the last commit; a launch that fails may
 * journal the next queued run, which waits for the next commit. */
static void launches_start(struct fmd_jobs *jobs)
{
	run *r = jobs->launch_head;

	jobs->launch_head = jobs->launch_tail = NULL;
	while (r != NULL) {
		run *next = r->qnext;

		r->qnext = NULL;
		if (!jobs->stopping)
			exec_launch(r);
		r = next;
	}
}

static void exec_dequeue(struct fmd_jobs *jobs, size_t index)
{
	exec_slots *slots = &jobs->exec[index];

	while (slots->qhead != NULL && slots->running < slots->max &&
	       !jobs->stopping) {
		run *r = slots->qhead;

		slots->qhead = r->qnext;
		if (slots->qhead == NULL)
			slots->qtail = NULL;
		slots->qlen--;
		r->qnext = NULL;
		r->queued = 0;
		exec_start_one(r);
	}
}

static void exec_done(void *ctx, fmd_exec *e, const fmd_exec_result *res)
{
	run *r = ctx;
	struct fmd_jobs *jobs = r->jobs;
	uint8_t *out = NULL;

	(void)e;
	r->exec = NULL;
	jobs->exec[r->exec_index].running--;
	jobs->runs_running--;
	if (res->output_len > 0) {
		out = dup_bytes(res->output, res->output_len);
		if (out == NULL) {
			run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
			             "out of memory");
			goto next;
		}
	}
	run_complete(r, res->state, res->exit_status, out, res->output_len,
	             res->error);
next:
	exec_dequeue(jobs, r->exec_index);
}

static int find_exec(const fmd *d, const char *service, size_t *index)
{
	size_t i;

	for (i = 0; i < d->cfg.jobs.service_count; i++)
		if (strcmp(d->cfg.jobs.services[i].name, service) == 0) {
			*index = i;
			return 0;
		}
	return -ENOENT;
}

/* A run this node journalled before: its result again, or (interrupted by
 * a crash here) a refusal to start it a second time. 1 when answered. */
static int exec_from_journal(run *r)
{
	fmd_run_row row;
	int rc;

	rc = fmd_jobstore_run_get(r->jobs->js, r->id, r->service, &row);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
		             "cannot read the run journal");
		return 1;
	}
	r->jobs->runs_from_journal++;
	if (row.finished) {
		run_complete(r, row.state, row.exit_status, row.output,
		             row.output_len,
		             row.error[0] != '\0' ? row.error : NULL);
		row.output = NULL;
	} else {
		run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
		             "interrupted: fedmeshd stopped while this job ran "
		             "here; not started a second time");
	}
	fmd_run_row_clear(&row);
	return 1;
}

static int io_job_execute(void *ctx, const char *job_id, const char *service,
                          const uint8_t *input, size_t input_len,
                          uint64_t timeout_ms)
{
	fmd *d = fmd_net_daemon(ctx);
	struct fmd_jobs *jobs = d->jobs;
	enum fmd_builtin b;
	size_t index = 0;
	uint64_t ms;
	run *r;
	char hex[FMD_SHA256_HEX_LEN];

	if (jobs == NULL || jobs->stopping)
		return -ECANCELED;
	if (job_id == NULL ||
	    strnlen(job_id, FMD_RUN_ID_MAX + 1) > FMD_RUN_ID_MAX ||
	    job_id[0] == '\0' || strchr(job_id, '/') != NULL)
		return -EINVAL;
	if (hmap_find(&jobs->runs, job_id) != NULL)
		return -EEXIST;
	b = d->cfg.jobs.builtins ? fmd_builtin_find(service) : FMD_BUILTIN_NONE;
	if (b == FMD_BUILTIN_NONE && find_exec(d, service, &index) != 0)
		return -ENOENT;
	if (b == FMD_BUILTIN_NONE &&
	    jobs->exec[index].qlen >= FMD_JOBS_EXEC_QUEUE_MAX &&
	    jobs->exec[index].running >= jobs->exec[index].max)
		return -EBUSY;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->jobs = jobs;
	snprintf(r->id, sizeof(r->id), "%s", job_id);
	snprintf(r->service, sizeof(r->service), "%s", service);
	r->timeout_ms = timeout_ms;
	r->queued_at_ms = fmd_now_ms(d);
	hmap_insert(&jobs->runs, &r->h, r->id);
	r->in_table = 1;

	switch (b) {
	case FMD_BUILTIN_ECHO:
		r->kind = RUN_ECHO;
		r->output = NULL;
		{
			uint8_t *out = dup_bytes(input, input_len);

			if (out == NULL)
				run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
				             "out of memory");
			else
				run_complete(r, FM_JOB_DONE, 0, out, input_len,
				             NULL);
		}
		return 0;
	case FMD_BUILTIN_SHA256:
		r->kind = RUN_SHA256;
		if (input_len <= FMD_JOBS_SHA256_INLINE_MAX) {
			fmd_sha256_hex(input, input_len, hex);
			run_complete(
			        r, FM_JOB_DONE, 0,
			        dup_bytes((const uint8_t *)hex, sizeof(hex)),
			        sizeof(hex), NULL);
			return 0;
		}
		r->input = dup_bytes(input, input_len);
		r->input_len = input_len;
		r->work.data = r;
		if (r->input == NULL ||
		    uv_queue_work(d->loop, &r->work, sha256_work,
		                  sha256_after) != 0) {
			run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
			             "cannot queue the work");
			return 0;
		}
		r->working = 1;
		return 0;
	case FMD_BUILTIN_SLEEP:
		r->kind = RUN_SLEEP;
		if (fmd_sleep_parse(input, input_len, &ms) != 0) {
			run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
			             "sleep: the input must be a number of "
			             "milliseconds");
			return 0;
		}
		r->input = dup_bytes(input, input_len);
		r->input_len = input_len;
		r->timer = malloc(sizeof(*r->timer));
		if (r->input == NULL || r->timer == NULL ||
		    uv_timer_init(d->loop, r->timer) != 0) {
			free(r->timer);
			r->timer = NULL;
			run_complete(r, FM_JOB_FAILED, -1, NULL, 0,
			             "out of memory");
			return 0;
		}
		r->timer->data = r;
		if (timeout_ms > 0 && ms > timeout_ms)
			ms = timeout_ms;
		uv_timer_start(r->timer, on_sleep_timer, ms, 0);
		return 0;
	case FMD_BUILTIN_NONE:
		break;
	}

	r->kind = RUN_EXEC;
	r->exec_index = index;
	if (exec_from_journal(r))
		return 0;
	r->input = dup_bytes(input, input_len);
	r->input_len = input_len;
	if (r->input == NULL) {
		run_complete(r, FM_JOB_FAILED, -1, NULL, 0, "out of memory");
		return 0;
	}
	if (jobs->exec[index].running < jobs->exec[index].max) {
		exec_start_one(r);
		return 0;
	}
	r->queued = 1;
	if (jobs->exec[index].qtail != NULL)
		jobs->exec[index].qtail->qnext = r;
	else
		jobs->exec[index].qhead = r;
	jobs->exec[index].qtail = r;
	jobs->exec[index].qlen++;
	return 0;
}

static void exec_queue_remove(struct fmd_jobs *jobs, run *r)
{
	exec_slots *slots = &jobs->exec[r->exec_index];
	run **p;

	for (p = &slots->qhead; *p != NULL; p = &(*p)->qnext)
		if (*p == r) {
			*p = r->qnext;
			if (slots->qtail == r) {
				run *t = slots->qhead;

				while (t != NULL && t->qnext != NULL)
					t = t->qnext;
				slots->qtail = t;
			}
			slots->qlen--;
			r->qnext = NULL;
			r->queued = 0;
			return;
		}
}

static void io_job_kill(void *ctx, const char *job_id)
{
	fmd *d = fmd_net_daemon(ctx);
	struct fmd_jobs *jobs = d->jobs;
	hentry *e;
	run *r;

	if (jobs == NULL || jobs->stopping || job_id == NULL)
		return;
	e = hmap_find(&jobs->runs, job_id);
	if (e == NULL)
		return;
	r = (run *)e;
	if (r->done || r->killed)
		return;
	r->killed = 1;
	switch (r->kind) {
	case RUN_SLEEP:
		sleep_timer_close(r);
		run_complete(r, FM_JOB_CANCELLED, -1, NULL, 0, "cancelled");
		break;
	case RUN_SHA256:
		/* Reported by sha256_after; uv_cancel only helps while the
		 * work has not started. */
		if (r->working)
			(void)uv_cancel((uv_req_t *)&r->work);
		break;
	case RUN_EXEC:
		if (r->queued) {
			exec_queue_remove(jobs, r);
			run_complete(r, FM_JOB_CANCELLED, -1, NULL, 0,
			             "cancelled");
		} else if (r->launching) {
			/* exec_launch sees killed and reports. */
		} else if (r->exec != NULL) {
			fmd_exec_kill(r->exec);
		}
		break;
	case RUN_ECHO:
		break;
	}
}

/* The idle callback's first half: every finished run goes to the core. */
static void reports_send(struct fmd_jobs *jobs)
{
	fmd *d = jobs->d;
	run *r;

	while ((r = jobs->done_head) != NULL) {
		jobs->done_head = r->qnext;
		if (jobs->done_head == NULL)
			jobs->done_tail = NULL;
		run_unlink(r);
		if (r->journal)
			(void)fmd_jobstore_run_finish(
			        jobs->js, r->id, r->service, r->state,
			        r->exit_status, r->output, r->output_len,
			        r->error[0] != '\0' ? r->error : NULL,
			        unix_now_ms());
		if (d->node != NULL)
			fm_node_job_finished(
			        d->node, fmd_now_ms(d), r->id, r->state,
			        r->exit_status, r->output, r->output_len,
			        r->error[0] != '\0' ? r->error : NULL);
		run_free(r);
	}
}

/* ---- the durable queue -----------------------------------------------------
 */

static void active_free(struct fmd_jobs *jobs, active_job *job)
{
	hmap_remove(&jobs->active, &job->h);
	free(job);
}

static active_job *active_add(struct fmd_jobs *jobs, const char *id)
{
	active_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	snprintf(job->id, sizeof(job->id), "%s", id);
	job->start_ns = uv_hrtime();
	hmap_insert(&jobs->active, &job->h, job->id);
	return job;
}

/* JSON string body: what is not printable ASCII becomes '?' (errors may
 * come from peers). */
static size_t json_escape(const char *src, char *dst, size_t cap)
{
	size_t n = 0;

	for (; src != NULL && *src != '\0' && n + 3 < cap; src++) {
		unsigned char c = (unsigned char)*src;

		if (c == '"' || c == '\\') {
			dst[n++] = '\\';
			dst[n++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			dst[n++] = (char)c;
		} else {
			dst[n++] = '?';
		}
	}
	dst[n] = '\0';
	return n;
}

/* For the store: printable ASCII only (errors may come from peers); the
 * API escapes it when it writes JSON. */
static void text_clean(const char *src, char *dst, size_t cap)
{
	size_t n = 0;

	for (; src != NULL && *src != '\0' && n + 1 < cap; src++) {
		unsigned char c = (unsigned char)*src;

		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[n] = '\0';
}

static void attempts_to_json(const fmd *d, const fm_job_update *u, char *out,
                             size_t cap)
{
	static const char *const outcome[FM_JOB_STATE_COUNT] = {
	        "queued", "dispatched", "running",  "done",
	        "failed", "timed_out",  "cancelled"};
	char id[FM_NODE_ID_HEX_LEN + 1];
	char err[2 * sizeof(u->attempts[0].error) + 1];
	size_t len = 0;
	size_t i;
	int n;

	out[len++] = '[';
	for (i = 0; i < u->attempt_count && i < FM_JOB_ATTEMPTS_MAX; i++) {
		const fm_job_attempt *a = &u->attempts[i];
		char end[24] = "null";
		char error_text[sizeof(err) + 8] = "null";

		fm_hex_encode(a->node_id, FM_NODE_ID_BYTES, id);
		if (a->end_ms != 0)
			snprintf(end, sizeof(end), "%" PRId64,
			         fmd_jobs_unix_ms(d, a->end_ms));
		if (a->error[0] != '\0') {
			char tmp[sizeof(a->error) + 1];

			memcpy(tmp, a->error, sizeof(a->error));
			tmp[sizeof(a->error)] = '\0';
			json_escape(tmp, err, sizeof(err));
			snprintf(error_text, sizeof(error_text), "\"%s\"", err);
		}
		n = snprintf(out + len, cap - len,
		             "%s{\"node_id\":\"%s\",\"start_unix_ms\":%" PRId64
		             ",\"end_unix_ms\":%s,\"outcome\":\"%s\","
		             "\"error\":%s}",
		             i > 0 ? "," : "", id,
		             fmd_jobs_unix_ms(d, a->start_ms), end,
		             a->outcome < FM_JOB_STATE_COUNT
		                     ? outcome[a->outcome]
		                     : "failed",
		             error_text);
		if (n < 0 || (size_t)n >= cap - len - 2)
			break;
		len += (size_t)n;
	}
	out[len++] = ']';
	out[len] = '\0';
}

static void waiters_wake(struct fmd_jobs *jobs, active_job *job);

static void latency_observe(struct fmd_jobs *jobs, double s)
{
	size_t i;

	jobs->latency_count++;
	jobs->latency_sum_s += s;
	for (i = 0; i < FMD_JOBS_LATENCY_BUCKETS; i++)
		if (s <= latency_bounds_s[i]) {
			jobs->latency_buckets[i]++;
			break;
		}
}

static void io_job_update(void *ctx, const fm_job_update *u)
{
	fmd *d = fmd_net_daemon(ctx);
	struct fmd_jobs *jobs = d->jobs;
	char ran_on[FM_NODE_ID_HEX_LEN + 1] = "";
	fmd_job_row *row;
	active_job *job;
	hentry *e;
	int rc;

	if (jobs == NULL || jobs->stopping || u == NULL || u->id == NULL)
		return;
	e = hmap_find(&jobs->active, u->id);
	if (e == NULL) {
		fmd_log_ids(FM_LOG_DEBUG, "jobs", NULL, u->id,
		            "update for a job not active here");
		return;
	}
	job = (active_job *)e;
	if (u->ran_on != NULL)
		fm_hex_encode(u->ran_on, FM_NODE_ID_BYTES, ran_on);
	row = malloc(sizeof(*row));
	if (row == NULL)
		return;
	memset(row, 0, sizeof(*row));
	attempts_to_json(d, u, row->attempts_json, sizeof(row->attempts_json));
	if (!fmd_job_state_final(u->state)) {
		rc = fmd_jobstore_progress(jobs->js, u->id, u->state,
		                           unix_now_ms(), ran_on,
		                           row->attempts_json);
		if (rc < 0)
			fmd_log_ids(FM_LOG_WARN, "jobs", NULL, u->id,
			            "cannot store progress: %s", strerror(-rc));
		free(row);
		return;
	}
	snprintf(row->id, sizeof(row->id), "%s", u->id);
	row->state = u->state;
	row->finished_unix_ms = unix_now_ms();
	row->has_output = u->state == FM_JOB_DONE || u->output_len > 0;
	row->output = (uint8_t *)u->output;
	row->output_len = u->output != NULL ? u->output_len : 0;
	/* Only a job that ran to its end has an exit status; the core
	 * passes 0 for the others. */
	row->has_exit_status = u->state == FM_JOB_DONE && u->exit_status >= 0;
	row->exit_status = u->exit_status;
	snprintf(row->ran_on, sizeof(row->ran_on), "%s", ran_on);
	if (u->error != NULL)
		text_clean(u->error, row->error, sizeof(row->error));
	rc = fmd_jobstore_finish(jobs->js, row);
	if (rc < 0)
		fmd_log_ids(FM_LOG_WARN, "jobs", NULL, u->id,
		            "cannot store the result: %s", strerror(-rc));
	else
		sweep_note(jobs);
	row->output = NULL;
	free(row);
	latency_observe(jobs, (double)(uv_hrtime() - job->start_ns) / 1e9);
	waiters_wake(jobs, job);
	active_free(jobs, job);
	/* Room in the core for the backlog (from the idle callback, not
	 * from inside the core's). */
	if (jobs->backlog_head != NULL)
		flush_schedule(jobs);
}

/* A job the core does not have (refused, or never accepted) ends here. */
static void end_here(struct fmd_jobs *jobs, const char *id,
                     enum fm_job_state state, const char *why)
{
	fmd_job_row *row = calloc(1, sizeof(*row));
	hentry *e;

	if (row != NULL) {
		snprintf(row->id, sizeof(row->id), "%s", id);
		row->state = state;
		row->finished_unix_ms = unix_now_ms();
		snprintf(row->error, sizeof(row->error), "%s", why);
		snprintf(row->attempts_json, sizeof(row->attempts_json), "[]");
		if (fmd_jobstore_finish(jobs->js, row) == 0)
			sweep_note(jobs);
		free(row);
	}
	e = hmap_find(&jobs->active, id);
	if (e != NULL) {
		waiters_wake(jobs, (active_job *)e);
		active_free(jobs, (active_job *)e);
	}
}

static void fail_unsubmitted(struct fmd_jobs *jobs, const char *id,
                             const char *why)
{
	end_here(jobs, id, FM_JOB_FAILED, why);
}

static void backlog_push(struct fmd_jobs *jobs, const char *id)
{
	backlog_entry *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		fail_unsubmitted(jobs, id, "out of memory");
		return;
	}
	snprintf(b->id, sizeof(b->id), "%s", id);
	if (jobs->backlog_tail != NULL)
		jobs->backlog_tail->next = b;
	else
		jobs->backlog_head = b;
	jobs->backlog_tail = b;
	jobs->backlog_len++;
}

/* Hands an active job to the core. The core may report synchronously,
 * even a final state, so nothing of the job is touched afterwards.
 * Returns 1 when the core had no room and the job went to the backlog. */
static int core_submit(struct fmd_jobs *jobs, const char *id,
                       const char *service, const uint8_t *input,
                       size_t input_len, uint64_t timeout_ms, int idempotent)
{
	fmd *d = jobs->d;
	fm_job_spec spec;
	char why[FM_JOB_ERROR_MAX];
	hentry *e;
	int rc;

	if (d->node == NULL) {
		fail_unsubmitted(jobs, id, "the node is not running");
		return 0;
	}
	e = hmap_find(&jobs->active, id);
	if (e != NULL)
		((active_job *)e)->in_core = 1;
	memset(&spec, 0, sizeof(spec));
	snprintf(spec.id, sizeof(spec.id), "%s", id);
	snprintf(spec.service, sizeof(spec.service), "%s", service);
	spec.input = input;
	spec.input_len = input_len;
	spec.timeout_ms = timeout_ms;
	spec.idempotent = (uint8_t)(idempotent ? 1 : 0);
	/* A large body may have taken the handler a while: the job's clock
	 * starts now, not at the top of this loop turn. */
	uv_update_time(d->loop);
	rc = fm_node_job_submit(d->node, fmd_now_ms(d), &spec);
	if (rc == -EEXIST)
		return 0; /* the core has it already: its reports will come */
	if (rc == -ENOSPC) {
		e = hmap_find(&jobs->active, id);
		if (e != NULL)
			((active_job *)e)->in_core = 0;
		backlog_push(jobs, id);
		return 1;
	}
	if (rc < 0) {
		snprintf(why, sizeof(why), "the node refused the job: %s",
		         strerror(-rc));
		fail_unsubmitted(jobs, id, why);
	}
	return 0;
}

/* Moves backlog jobs to the core while it has room, oldest first. */
static void backlog_drain(struct fmd_jobs *jobs)
{
	backlog_entry *b;
	fmd_job_row *row = NULL;

	while ((b = jobs->backlog_head) != NULL && !jobs->stopping &&
	       !jobs->resume_hold) {
		hentry *e = hmap_find(&jobs->active, b->id);
		uint8_t *input = NULL;
		size_t len = 0;
		int rc;

		jobs->backlog_head = b->next;
		if (jobs->backlog_head == NULL)
			jobs->backlog_tail = NULL;
		jobs->backlog_len--;
		/* Cancelled meanwhile, or handed over already. */
		if (e == NULL || ((active_job *)e)->in_core) {
			free(b);
			continue;
		}
		if (row == NULL) {
			row = malloc(sizeof(*row));
			if (row == NULL) {
				free(b);
				break;
			}
		}
		rc = fmd_jobstore_get(jobs->js, b->id, 0, row);
		if (rc == 0)
			rc = fmd_jobstore_get_input(jobs->js, b->id, &input,
			                            &len);
		if (rc < 0) {
			fail_unsubmitted(jobs, b->id,
			                 "cannot read the job from the store");
			free(b);
			continue;
		}
		rc = core_submit(jobs, b->id, row->service, input, len,
		                 row->timeout_ms, row->idempotent);
		free(input);
		free(b);
		if (rc == 1)
			break; /* still full: it went back to the tail */
	}
	free(row);
}

int fmd_jobs_submit(fmd *d, fmd_job_request *req)
{
	struct fmd_jobs *jobs = d->jobs;
	uint8_t raw[FMD_JOBS_ID_RANDOM_BYTES];
	fmd_job_row *row;
	int rc;

	if (jobs == NULL || jobs->stopping)
		return -ECANCELED;
	if (req->id[0] == '\0') {
		randombytes_buf(raw, sizeof(raw));
		fm_hex_encode(raw, sizeof(raw), req->id);
	} else {
		if (!fmd_job_id_valid(req->id))
			return -EINVAL;
		/* An idempotency key seen before: that job, not a new one. */
		if (hmap_find(&jobs->active, req->id) != NULL)
			return 1;
	}
	if (req->input_len > d->cfg.jobs.input_max)
		return -EMSGSIZE;
	/* [limits] jobs_pending_max: the store, the backlog and the core
	 * hold every unfinished job; a client that submits faster than the
	 * jobs finish is told to come back later instead. */
	if (jobs->active.count >= d->cfg.limits.jobs_pending_max)
		return -EAGAIN;
	if (req->timeout_ms == 0)
		req->timeout_ms = d->cfg.jobs.timeout_ms;
	row = calloc(1, sizeof(*row));
	if (row == NULL)
		return -ENOMEM;
	snprintf(row->id, sizeof(row->id), "%s", req->id);
	snprintf(row->service, sizeof(row->service), "%s", req->service);
	row->state = FM_JOB_QUEUED;
	row->timeout_ms = req->timeout_ms;
	row->idempotent = req->idempotent;
	row->created_unix_ms = unix_now_ms();
	rc = fmd_jobstore_insert(jobs->js, row, req->input, req->input_len);
	free(row);
	if (rc == -EEXIST)
		return 1;
	if (rc < 0)
		return rc;
	if (active_add(jobs, req->id) == NULL) {
		fail_unsubmitted(jobs, req->id, "out of memory");
		return 0;
	}
	/* Behind the backlog, if there is one: first come, first served. */
	if (jobs->backlog_head != NULL)
		backlog_push(jobs, req->id);
	else
		core_submit(jobs, req->id, req->service, req->input,
		            req->input_len, req->timeout_ms, req->idempotent);
	fmd_net_kick(d);
	return 0;
}

int fmd_jobs_commit(fmd *d)
{
	if (d->jobs == NULL)
		return 0;
	return fmd_jobstore_commit(d->jobs->js);
}

int fmd_jobs_cancel(fmd *d, const char *id)
{
	struct fmd_jobs *jobs = d->jobs;
	fmd_job_row *row;
	int rc;

	if (jobs == NULL)
		return -ENOENT;
	if (hmap_find(&jobs->active, id) == NULL) {
		row = malloc(sizeof(*row));
		if (row == NULL)
			return -ENOMEM;
		rc = fmd_jobstore_get(jobs->js, id, 0, row);
		free(row);
		return rc == 0 ? -EALREADY : rc;
	}
	rc = d->node != NULL ? fm_node_job_cancel(d->node, fmd_now_ms(d), id)
	                     : -ENOENT;
	if (rc == -ENOENT) {
		/* The core does not know it (it was never accepted): end it
		 * here. */
		end_here(jobs, id, FM_JOB_CANCELLED, "cancelled");
		rc = 0;
	}
	fmd_net_kick(d);
	return rc;
}

int fmd_jobs_get(fmd *d, const char *id, int with_output, fmd_job_row *row)
{
	if (d->jobs == NULL)
		return -ENOENT;
	return fmd_jobstore_get(d->jobs->js, id, with_output, row);
}

int fmd_jobs_list(fmd *d, int state, const char *service, size_t limit,
                  int (*cb)(void *ctx, const fmd_job_row *row), void *ctx)
{
	if (d->jobs == NULL)
		return 0;
	return fmd_jobstore_list(d->jobs->js, state, service, limit, cb, ctx);
}

static void waits_rearm(struct fmd_jobs *jobs);

static void all_unlink(struct fmd_jobs *jobs, fmd_job_waiter *w)
{
	if (w->all_prev != NULL)
		w->all_prev->all_next = w->all_next;
	else if (jobs->waiters == w)
		jobs->waiters = w->all_next;
	if (w->all_next != NULL)
		w->all_next->all_prev = w->all_prev;
	w->all_next = w->all_prev = NULL;
}

/* Off its job's list and off the list of all waiters. */
static void waiter_unlink(struct fmd_jobs *jobs, fmd_job_waiter *w)
{
	active_job *job = w->job;

	if (job == NULL)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		job->waiters = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->job = NULL;
	all_unlink(jobs, w);
}

static void waiters_wake(struct fmd_jobs *jobs, active_job *job)
{
	fmd_job_waiter *w;

	while ((w = job->waiters) != NULL) {
		waiter_unlink(jobs, w);
		w->expired = 0;
		w->wake(w);
	}
}

int fmd_jobs_wait(fmd *d, const char *id, uint64_t deadline_ms,
                  fmd_job_waiter *w)
{
	struct fmd_jobs *jobs = d->jobs;
	active_job *job;
	hentry *e;

	if (jobs == NULL || jobs->stopping)
		return -ENOENT;
	e = hmap_find(&jobs->active, id);
	if (e == NULL)
		return -ENOENT;
	job = (active_job *)e;
	w->job = job;
	w->expired = 0;
	w->deadline_ms = deadline_ms;
	w->prev = NULL;
	w->next = job->waiters;
	if (job->waiters != NULL)
		job->waiters->prev = w;
	job->waiters = w;
	w->all_prev = NULL;
	w->all_next = jobs->waiters;
	if (jobs->waiters != NULL)
		jobs->waiters->all_prev = w;
	jobs->waiters = w;
	if (!jobs->wait_timer_armed || deadline_ms < jobs->wait_timer_due)
		waits_rearm(jobs);
	return 0;
}

void fmd_jobs_unwait(fmd *d, fmd_job_waiter *w)
{
	if (d->jobs != NULL)
		waiter_unlink(d->jobs, w);
}

void fmd_jobs_wake_all(fmd *d)
{
	struct fmd_jobs *jobs = d->jobs;
	fmd_job_waiter *w;

	if (jobs == NULL)
		return;
	while ((w = jobs->waiters) != NULL) {
		waiter_unlink(jobs, w);
		w->expired = 1;
		w->wake(w);
	}
}

/* One timer for every deadline: a few hundred waiters at most (the API's
 * connection limit), so a scan is cheaper than a heap. */
static void on_waits_timer(uv_timer_t *t)
{
	struct fmd_jobs *jobs = t->data;
	uint64_t now = fmd_now_ms(jobs->d);
	fmd_job_waiter *w = jobs->waiters;

	jobs->wait_timer_armed = 0;
	while (w != NULL) {
		fmd_job_waiter *next = w->all_next;

		if (w->deadline_ms <= now) {
			waiter_unlink(jobs, w);
			w->expired = 1;
			w->wake(w);
		}
		w = next;
	}
	waits_rearm(jobs);
}

static void waits_rearm(struct fmd_jobs *jobs)
{
	uint64_t now = fmd_now_ms(jobs->d);
	uint64_t due = UINT64_MAX;
	fmd_job_waiter *w;

	for (w = jobs->waiters; w != NULL; w = w->all_next)
		if (w->deadline_ms < due)
			due = w->deadline_ms;
	if (due == UINT64_MAX || !jobs->waits_open) {
		if (jobs->waits_open)
			uv_timer_stop(&jobs->waits);
		jobs->wait_timer_armed = 0;
		return;
	}
	jobs->wait_timer_armed = 1;
	jobs->wait_timer_due = due;
	uv_timer_start(&jobs->waits, on_waits_timer, due > now ? due - now : 0,
	               0);
}

/* ---- resuming after a restart ------------------------------------------- */

typedef struct resume_list {
	fmd_job_row *rows;
	size_t count;
	size_t cap;
} resume_list;

static int resume_collect(void *ctx, const fmd_job_row *row)
{
	resume_list *l = ctx;

	if (l->count == l->cap) {
		size_t cap = l->cap != 0 ? 2 * l->cap : 64;
		fmd_job_row *grown = realloc(l->rows, cap * sizeof(*grown));

		if (grown == NULL)
			return -ENOMEM;
		l->rows = grown;
		l->cap = cap;
	}
	l->rows[l->count++] = *row;
	return 0;
}

/* The held backlog goes to the core. */
static void resume_release(struct fmd_jobs *jobs, const char *why)
{
	fm_node_status st;

	memset(&st, 0, sizeof(st));
	if (jobs->d->node != NULL)
		fm_node_get_status(jobs->d->node, &st);
	jobs->resume_hold = 0;
	if (jobs->resume_open)
		uv_timer_stop(&jobs->resume);
	fmd_log(FM_LOG_INFO, "jobs",
	        "resubmitting %" PRIu64 " unfinished job(s) with their IDs "
	        "(%s; %" PRIu32 " peer(s) connected)",
	        jobs->resubmitted, why, st.peers_connected);
	flush_schedule(jobs);
}

/* After a restart the sessions take a moment to come back: resubmitted
 * jobs wait for the first peer (and FMD_JOBS_RESUME_SETTLE_MS for the
 * others), at most FMD_JOBS_RESUME_WAIT_MS, so that a job only peers can
 * run does not fail for want of a session not yet up again. */
static void on_resume_timer(uv_timer_t *t)
{
	struct fmd_jobs *jobs = t->data;
	uint64_t now = fmd_now_ms(jobs->d);
	fm_node_status st;

	memset(&st, 0, sizeof(st));
	if (jobs->d->node != NULL)
		fm_node_get_status(jobs->d->node, &st);
	if (st.peers_connected > 0 && jobs->resume_peer_ms == 0)
		jobs->resume_peer_ms = now;
	if (jobs->resume_peer_ms != 0 &&
	    now - jobs->resume_peer_ms >= FMD_JOBS_RESUME_SETTLE_MS)
		resume_release(jobs, "peers are back");
	else if (now - jobs->resume_start_ms >= FMD_JOBS_RESUME_WAIT_MS)
		resume_release(jobs, "waited for peers long enough");
}

int fmd_jobs_start(fmd *d)
{
	struct fmd_jobs *jobs = d->jobs;
	resume_list l = {0};
	size_t i;
	int rc;

	if (jobs == NULL)
		return -EINVAL;
	rc = fmd_jobstore_foreach_unfinished(jobs->js, resume_collect, &l);
	if (rc < 0) {
		fmd_log(FM_LOG_ERROR, "jobs",
		        "cannot read the unfinished jobs: %s", strerror(-rc));
		free(l.rows);
		return rc;
	}
	/* Active (so the API sees them and their IDs stay taken) and in the
	 * backlog, in submission order; the inputs are read from the store
	 * as each goes to the core. */
	for (i = 0; i < l.count; i++) {
		if (hmap_find(&jobs->active, l.rows[i].id) != NULL)
			continue;
		if (active_add(jobs, l.rows[i].id) == NULL)
			break;
		backlog_push(jobs, l.rows[i].id);
		jobs->resubmitted++;
	}
	free(l.rows);
	if (jobs->resubmitted == 0)
		return 0;
	if (d->node == NULL || fm_node_peer_count(d->node) == 0) {
		resume_release(jobs, "no known peer");
	} else {
		jobs->resume_hold = 1;
		jobs->resume_start_ms = fmd_now_ms(d);
		uv_timer_start(&jobs->resume, on_resume_timer,
		               FMD_JOBS_RESUME_POLL_MS,
		               FMD_JOBS_RESUME_POLL_MS);
	}
	return (int)jobs->resubmitted;
}

/* ---- flush, sweep, lifecycle -----------------------------------------------
 */

static void on_flush(uv_idle_t *h)
{
	struct fmd_jobs *jobs = h->data;

	reports_send(jobs);
	if (jobs->backlog_head != NULL)
		backlog_drain(jobs);
	(void)fmd_jobstore_commit(jobs->js);
	/* Only now: their journal rows are durable. */
	launches_start(jobs);
	if (jobs->done_head == NULL && jobs->launch_head == NULL) {
		uv_idle_stop(&jobs->flush);
		jobs->flush_active = 0;
	}
	fmd_net_kick(jobs->d);
}

static void flush_schedule(struct fmd_jobs *jobs)
{
	if (jobs->flush_active || !jobs->flush_open)
		return;
	jobs->flush_active = 1;
	uv_idle_start(&jobs->flush, on_flush);
}

static void on_sweep(uv_timer_t *t);

/* Arms the sweep for when the oldest result (or journalled run) expires,
 * no sooner than sweep_min_ms from now so that expiries are batched; stops
 * it while nothing could expire, so an idle daemon is not woken for it. */
static void sweep_arm(struct fmd_jobs *jobs)
{
	int64_t oldest = 0, due = 0;
	int rc;

	if (!jobs->sweep_open)
		return;
	rc = fmd_jobstore_sweep_oldest(jobs->js, &oldest);
	if (rc == 0) {
		uv_timer_stop(&jobs->sweep);
		return;
	}
	if (rc < 0)
		fmd_log(FM_LOG_WARN, "jobs",
		        "cannot find the oldest result: %s", strerror(-rc));
	else
		due = oldest + (int64_t)jobs->d->cfg.jobs.keep_ms + 1 -
		      unix_now_ms();
	if (due < (int64_t)jobs->sweep_min_ms)
		due = (int64_t)jobs->sweep_min_ms;
	uv_timer_start(&jobs->sweep, on_sweep, (uint64_t)due, 0);
}

/* A result or a journalled run was just stored: when the sweep is idle
 * (nothing older is stored), it is due once this one expires. */
static void sweep_note(struct fmd_jobs *jobs)
{
	uint64_t due = jobs->d->cfg.jobs.keep_ms + 1;

	if (!jobs->sweep_open || uv_is_active((uv_handle_t *)&jobs->sweep))
		return;
	if (due < jobs->sweep_min_ms)
		due = jobs->sweep_min_ms;
	uv_timer_start(&jobs->sweep, on_sweep, due, 0);
}

static void on_sweep(uv_timer_t *t)
{
	struct fmd_jobs *jobs = t->data;
	int64_t before = unix_now_ms() - (int64_t)jobs->d->cfg.jobs.keep_ms;
	int rc;

	rc = fmd_jobstore_sweep(jobs->js, before);
	if (rc > 0)
		fmd_log(FM_LOG_DEBUG, "jobs", "swept %d expired result(s)", rc);
	else if (rc < 0)
		fmd_log(FM_LOG_WARN, "jobs", "cannot sweep results: %s",
		        strerror(-rc));
	sweep_arm(jobs);
}

int fmd_jobs_new(fmd *d, char *err, size_t err_len)
{
	struct fmd_jobs *jobs;
	uint64_t sweep_ms;
	size_t i;
	int rc;

	jobs = calloc(1, sizeof(*jobs));
	if (jobs == NULL) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	jobs->d = d;
	if (hmap_init(&jobs->active) != 0 || hmap_init(&jobs->runs) != 0) {
		rc = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	rc = fmd_jobstore_open(d->store, on_batch, jobs, &jobs->js);
	if (rc < 0) {
		snprintf(err, err_len, "cannot open the job queue: %s",
		         strerror(-rc));
		goto fail;
	}
	jobs->builtin_slots = d->cfg.jobs.builtin_slots != 0
	                              ? d->cfg.jobs.builtin_slots
	                              : fmd_cpu_count();
	for (i = 0; i < d->cfg.jobs.service_count; i++)
		jobs->exec[i].max =
		        d->cfg.jobs.services[i].max_concurrent != 0
		                ? d->cfg.jobs.services[i].max_concurrent
		                : fmd_cpu_count();
	snprintf(jobs->scratch_root, sizeof(jobs->scratch_root), "%s/jobs",
	         d->cfg.state_dir);
	fmd_exec_helper_find(jobs->helper, sizeof(jobs->helper));
	if (d->cfg.jobs.service_count > 0)
		fmd_log(FM_LOG_INFO, "jobs",
		        "%zu exec service(s); their limits are applied by %s",
		        d->cfg.jobs.service_count, jobs->helper);
	if (d->cfg.jobs.service_count > 0) {
		rc = fmd_mkdir_private(jobs->scratch_root, err, err_len);
		if (rc != 0)
			goto fail;
	}
	uv_idle_init(d->loop, &jobs->flush);
	jobs->flush.data = jobs;
	jobs->flush_open = 1;
	uv_timer_init(d->loop, &jobs->sweep);
	jobs->sweep.data = jobs;
	jobs->sweep_open = 1;
	uv_timer_init(d->loop, &jobs->waits);
	jobs->waits.data = jobs;
	jobs->waits_open = 1;
	uv_timer_init(d->loop, &jobs->resume);
	jobs->resume.data = jobs;
	jobs->resume_open = 1;
	sweep_ms = d->cfg.jobs.keep_ms / 2;
	if (sweep_ms > FMD_JOBS_SWEEP_MAX_MS)
		sweep_ms = FMD_JOBS_SWEEP_MAX_MS;
	if (sweep_ms == 0)
		sweep_ms = 1;
	jobs->sweep_min_ms = sweep_ms;
	sweep_arm(jobs);
	/* The sweep alone must not keep the loop alive. */
	uv_unref((uv_handle_t *)&jobs->sweep);
	d->jobs = jobs;
	return 0;
fail:
	fmd_jobstore_close(jobs->js);
	free(jobs->active.buckets);
	free(jobs->runs.buckets);
	free(jobs);
	return rc;
}

static void add_service(fm_service *list, uint8_t *count, const char *name,
                        uint32_t slots)
{
	if (*count >= FM_NODE_SERVICES_MAX)
		return;
	snprintf(list[*count].name, sizeof(list[*count].name), "%s", name);
	list[*count].slots = slots;
	(*count)++;
}

void fmd_jobs_attach(fmd *d, fm_io *io, fm_node_config *ncfg)
{
	struct fmd_jobs *jobs = d->jobs;
	const fmd_jobs_config *cfg = &d->cfg.jobs;
	uint64_t capacity = 0;
	int b;
	size_t i;

	if (jobs == NULL)
		return;
	io->job_execute = io_job_execute;
	io->job_kill = io_job_kill;
	io->job_update = io_job_update;
	for (b = 0; cfg->builtins && b < FMD_BUILTIN_COUNT; b++) {
		const char *name = fmd_builtin_name((enum fmd_builtin)b);

		if (cfg->offer_builtin) {
			add_service(ncfg->services, &ncfg->service_count, name,
			            jobs->builtin_slots);
			capacity += jobs->builtin_slots;
		} else {
			add_service(ncfg->local_services,
			            &ncfg->local_service_count, name,
			            jobs->builtin_slots);
		}
	}
	for (i = 0; i < cfg->service_count; i++) {
		if (cfg->services[i].offer) {
			add_service(ncfg->services, &ncfg->service_count,
			            cfg->services[i].name, jobs->exec[i].max);
			capacity += jobs->exec[i].max;
		} else {
			add_service(ncfg->local_services,
			            &ncfg->local_service_count,
			            cfg->services[i].name, jobs->exec[i].max);
		}
	}
	ncfg->capacity =
	        capacity > UINT32_MAX ? UINT32_MAX : (uint32_t)capacity;
}

void fmd_jobs_stop(fmd *d)
{
	struct fmd_jobs *jobs = d->jobs;
	size_t i;

	if (jobs == NULL || jobs->stopping)
		return;
	jobs->stopping = 1;
	/* Runs: processes killed, timers closed. Their jobs' rows (here or
	 * on the submitting peer) stay unfinished and resume later; the
	 * journal rows of exec runs stopped here are dropped so that a
	 * resumed job may start again (it did not end by itself). */
	for (i = 0; i < jobs->runs.nbuckets; i++) {
		hentry *e = jobs->runs.buckets[i];

		while (e != NULL) {
			run *r = (run *)e;

			e = e->next;
			if (r->done)
				continue;
			if (r->exec != NULL) {
				fmd_exec_abandon(r->exec);
				r->exec = NULL;
			}
			if (r->journal)
				(void)fmd_jobstore_run_forget(jobs->js, r->id,
				                              r->service);
			sleep_timer_close(r);
		}
	}
	(void)fmd_jobstore_commit(jobs->js);
	if (jobs->flush_open) {
		uv_close((uv_handle_t *)&jobs->flush, NULL);
		jobs->flush_open = 0;
	}
	if (jobs->sweep_open) {
		uv_close((uv_handle_t *)&jobs->sweep, NULL);
		jobs->sweep_open = 0;
	}
	fmd_jobs_wake_all(d);
	if (jobs->waits_open) {
		uv_close((uv_handle_t *)&jobs->waits, NULL);
		jobs->waits_open = 0;
	}
	if (jobs->resume_open) {
		uv_close((uv_handle_t *)&jobs->resume, NULL);
		jobs->resume_open = 0;
	}
}

void fmd_jobs_free(fmd *d)
{
	struct fmd_jobs *jobs = d->jobs;
	size_t i;

	if (jobs == NULL)
		return;
	fmd_jobs_stop(d);
	for (i = 0; i < jobs->runs.nbuckets; i++) {
		hentry *e = jobs->runs.buckets[i];

		while (e != NULL) {
			run *r = (run *)e;

			e = e->next;
			/* Work still in the pool frees itself. */
			if (!r->working)
				run_free(r);
		}
	}
	for (i = 0; i < jobs->active.nbuckets; i++) {
		hentry *e = jobs->active.buckets[i];

		while (e != NULL) {
			hentry *next = e->next;

			free(e);
			e = next;
		}
	}
	while (jobs->backlog_head != NULL) {
		backlog_entry *b = jobs->backlog_head;

		jobs->backlog_head = b->next;
		free(b);
	}
	fmd_jobstore_close(jobs->js);
	free(jobs->active.buckets);
	free(jobs->runs.buckets);
	free(jobs);
	d->jobs = NULL;
}

/* ---- metrics ------------------------------------------------------------- */

int fmd_jobs_metrics(const fmd *d, char *buf, size_t len, size_t cap)
{
	static const enum fm_job_state finals[] = {
	        FM_JOB_DONE, FM_JOB_FAILED, FM_JOB_TIMED_OUT, FM_JOB_CANCELLED};
	static const char *const final_names[] = {"done", "failed", "timed_out",
	                                          "cancelled"};
	const struct fmd_jobs *jobs = d->jobs;
	fmd_mtext t = {.buf = buf, .len = len, .cap = cap};
	fm_node_stats stats;
	uint64_t cumulative = 0;
	size_t i;

	memset(&stats, 0, sizeof(stats));
	if (d->node != NULL)
		fm_node_get_stats(d->node, &stats);

	fmd_mtext_family(
	        &t, "fedmesh_jobs_submitted_total", "counter",
	        "Jobs submitted on this node (resubmissions included).");
	fmd_mtext_printf(&t, "fedmesh_jobs_submitted_total %" PRIu64 "\n",
	                 stats.jobs_submitted);
	fmd_mtext_family(
	        &t, "fedmesh_jobs_total", "counter",
	        "Jobs submitted here that reached a final state, by state.");
	for (i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
		fmd_mtext_printf(
		        &t, "fedmesh_jobs_total{state=\"%s\"} %" PRIu64 "\n",
		        final_names[i], stats.jobs_by_state[finals[i]]);
	fmd_mtext_family(&t, "fedmesh_jobs_active", "gauge",
	                 "Jobs submitted here and not finished.");
	fmd_mtext_printf(&t, "fedmesh_jobs_active %zu\n",
	                 jobs != NULL ? jobs->active.count : (size_t)0);
	fmd_mtext_family(
	        &t, "fedmesh_jobs_backlog", "gauge",
	        "Jobs waiting for room in the node (it holds 4096 at once).");
	fmd_mtext_printf(&t, "fedmesh_jobs_backlog %zu\n",
	                 jobs != NULL ? jobs->backlog_len : (size_t)0);
	fmd_mtext_family(&t, "fedmesh_job_attempts_total", "counter",
	                 "Attempts made for jobs submitted here.");
	fmd_mtext_printf(&t, "fedmesh_job_attempts_total %" PRIu64 "\n",
	                 stats.job_attempts);
	fmd_mtext_family(
	        &t, "fedmesh_job_retries_total", "counter",
	        "Attempts after the first (failover, retries, hedges).");
	fmd_mtext_printf(&t, "fedmesh_job_retries_total %" PRIu64 "\n",
	                 stats.job_retries);
	fmd_mtext_family(
	        &t, "fedmesh_job_ejections_total", "counter",
	        "Peers ejected by the job router after consecutive failures.");
	fmd_mtext_printf(&t, "fedmesh_job_ejections_total %" PRIu64 "\n",
	                 stats.job_ejections);
	fmd_mtext_family(&t, "fedmesh_jobs_ran_total", "counter",
	                 "Jobs submitted here, by where they ran.");
	fmd_mtext_printf(
	        &t, "fedmesh_jobs_ran_total{where=\"local\"} %" PRIu64 "\n",
	        stats.jobs_ran_local);
	fmd_mtext_printf(
	        &t, "fedmesh_jobs_ran_total{where=\"remote\"} %" PRIu64 "\n",
	        stats.jobs_ran_remote);
	fmd_mtext_family(&t, "fedmesh_jobs_served_total", "counter",
	                 "Peers' jobs run on this node.");
	fmd_mtext_printf(&t, "fedmesh_jobs_served_total %" PRIu64 "\n",
	                 stats.jobs_served);
	fmd_mtext_family(
	        &t, "fedmesh_jobs_deduplicated_total", "counter",
	        "Repeated requests for a job answered from its first run.");
	fmd_mtext_printf(&t, "fedmesh_jobs_deduplicated_total %" PRIu64 "\n",
	                 stats.jobs_deduplicated);
	fmd_mtext_family(&t, "fedmesh_job_processes_started_total", "counter",
	                 "Processes of exec services started.");
	fmd_mtext_printf(&t,
	                 "fedmesh_job_processes_started_total %" PRIu64 "\n",
	                 jobs != NULL ? jobs->runs_started : 0);
	fmd_mtext_family(&t, "fedmesh_job_processes_running", "gauge",
	                 "Processes of exec services running now.");
	fmd_mtext_printf(&t, "fedmesh_job_processes_running %" PRIu64 "\n",
	                 jobs != NULL ? jobs->runs_running : 0);
	fmd_mtext_family(
	        &t, "fedmesh_job_duration_seconds", "histogram",
	        "Time from submission here to the final state, measured by "
	        "the daemon.");
	for (i = 0; i < FMD_JOBS_LATENCY_BUCKETS; i++) {
		cumulative += jobs != NULL ? jobs->latency_buckets[i] : 0;
		fmd_mtext_printf(
		        &t,
		        "fedmesh_job_duration_seconds_bucket{le=\"%g\"} "
		        "%" PRIu64 "\n",
		        latency_bounds_s[i], cumulative);
	}
	fmd_mtext_printf(
	        &t,
	        "fedmesh_job_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64
	        "\n",
	        jobs != NULL ? jobs->latency_count : 0);
	fmd_mtext_printf(&t, "fedmesh_job_duration_seconds_sum %.6f\n",
	                 jobs != NULL ? jobs->latency_sum_s : 0.0);
	fmd_mtext_printf(&t, "fedmesh_job_duration_seconds_count %" PRIu64 "\n",
	                 jobs != NULL ? jobs->latency_count : 0);
	if (t.overflow)
		return -ENOSPC;
	return (int)t.len;
}
