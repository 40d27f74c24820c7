/* Jobs end to end inside one process: several cores wired through
 * memnet's in-memory streams on a virtual clock (memnet.h), each with a fake
 * executor behind fm_io.job_execute that finishes a job after a
 * configurable per-node service time (sha256 and echo for real, so outputs
 * can be checked), or fails it, or never finishes it. Nodes can be killed
 * (freed, their streams reset), cut off (their traffic lost), or have their
 * links reset. Linked with the core and libsodium/msgpack-c only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/core.h"
#include "core/jobs.h"
#include "core/router.h"
#include "core/wire.h"
#include "fedmesh/fedmesh.h"
#include "memnet.h"

#define TASKS_MAX 2048
#define RESULTS_MAX 1024
#define EXECS_MAX 4096
enum exec_mode { MODE_OK = 0, MODE_FAIL, MODE_HANG };

/* A job the fake executor runs. */
struct task {
	int used;
	int node;
	char id[FM_JOB_DRIVER_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	uint8_t *input;
	size_t len;
	uint64_t start_at; /* 0: queued behind the slots */
	uint64_t done_at;
	uint64_t timeout_ms;
	int killed;
	int hang;
	int fail;
};

/* What node 0 (or any) was told about its jobs. */
struct result {
	int node;
	char id[FM_JOB_ID_MAX + 1];
	int state;
	int updates;
	int final_updates;
	uint8_t ran_on[32];
	int has_ran_on;
	uint8_t *output;
	size_t output_len;
	int exit_status;
	char error[FM_JOB_ERROR_MAX];
	fm_job_attempt attempts[FM_JOB_ATTEMPTS_MAX];
	size_t attempt_count;
	uint64_t final_ms;
};

struct exec_rec {
	int node;
	char id[FM_JOB_DRIVER_ID_MAX + 1];
	int calls;
};

struct node_cfg {
	uint64_t service_ms;
	int slots; /* 0: unlimited */
	int mode;
	int sync; /* finish zero-time jobs inside job_execute */
	int sync_kill;
	int execs;
	int kills;
};

/* The fake executor and what the nodes were told. */
struct world {
	struct node_cfg cfg[MEMNET_NODES_MAX];
	struct task tasks[TASKS_MAX];
	struct result results[RESULTS_MAX];
	int result_count;
	struct exec_rec execs[EXECS_MAX];
	int exec_count;
	/* chain: submit the next job from inside job_update */
	int chain_left;
	int chain_next;
};

static struct world N;

/* ---- the fake executor ---------------------------------------------------
 */

static void sha256_hex(const uint8_t *in, size_t len, char out[65])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, in, len);
	fm_hex_encode(h, sizeof(h), out);
}

static void exec_count(int node, const char *id)
{
	int i;

	for (i = 0; i < N.exec_count; i++)
		if (N.execs[i].node == node && strcmp(N.execs[i].id, id) == 0) {
			N.execs[i].calls++;
			return;
		}
	assert_true(N.exec_count < EXECS_MAX);
	N.execs[N.exec_count].node = node;
	snprintf(N.execs[N.exec_count].id, sizeof(N.execs[0].id), "%s", id);
	N.execs[N.exec_count].calls = 1;
	N.exec_count++;
}

static int running_tasks(int node)
{
	int i, n = 0;

	for (i = 0; i < TASKS_MAX; i++)
		if (N.tasks[i].used && N.tasks[i].node == node &&
		    N.tasks[i].start_at != 0)
			n++;
	return n;
}

/* Runs the task now: its output, or its failure. */
static void task_finish(struct task *t)
{
	int node = t->node;
	char id[sizeof(t->id)];
	char hex[65];
	uint8_t *in = t->input;
	size_t len = t->len;

	snprintf(id, sizeof(id), "%s", t->id);
	t->used = 0;
	t->input = NULL;
	if (M.nodes[node] == NULL) {
		free(in);
		return;
	}
	if (t->killed) {
		fm_node_job_finished(M.nodes[node], M.now, id, FM_JOB_CANCELLED,
		                     -1, NULL, 0, "killed");
	} else if (t->fail) {
		fm_node_job_finished(M.nodes[node], M.now, id, FM_JOB_FAILED,
		                     -1, NULL, 0, "boom");
	} else if (t->done_at > t->start_at + t->timeout_ms) {
		fm_node_job_finished(M.nodes[node], M.now, id, FM_JOB_TIMED_OUT,
		                     -1, NULL, 0, "timed out");
	} else if (strcmp(t->service, "sha256") == 0 ||
	           strcmp(t->service, "exec1") == 0) {
		sha256_hex(in, len, hex);
		fm_node_job_finished(M.nodes[node], M.now, id, FM_JOB_DONE, 0,
		                     (const uint8_t *)hex, 64, NULL);
	} else {
		fm_node_job_finished(M.nodes[node], M.now, id, FM_JOB_DONE, 0,
		                     in, len, NULL);
	}
	free(in);
}

static void task_schedule(struct task *t)
{
	struct node_cfg *c = &N.cfg[t->node];

	t->start_at = M.now;
	t->done_at = M.now + c->service_ms;
	if (t->hang)
		t->done_at = FM_DEADLINE_NONE;
	if (t->done_at > M.now + t->timeout_ms)
		t->done_at = M.now + t->timeout_ms + 1;
	if (t->start_at == 0)
		t->start_at = 1;
}

static int io_job_execute(void *c, const char *job_id, const char *service,
                          const uint8_t *input, size_t input_len,
                          uint64_t timeout_ms)
{
	int node = memnet_node_of(c);
	struct node_cfg *cfg = &N.cfg[node];
	struct task *t = NULL;
	int i;

	if (strcmp(service, "sha256") != 0 && strcmp(service, "echo") != 0 &&
	    strcmp(service, "exec1") != 0)
		return -ENOENT;
	assert_true(timeout_ms > 0);
	cfg->execs++;
	exec_count(node, job_id);
	for (i = 0; i < TASKS_MAX; i++)
		if (!N.tasks[i].used) {
			t = &N.tasks[i];
			break;
		}
	if (t == NULL) {
		fail_msg("too many tasks");
		return -ENOSPC;
	}
	memset(t, 0, sizeof(*t));
	t->used = 1;
	t->node = node;
	snprintf(t->id, sizeof(t->id), "%s", job_id);
	snprintf(t->service, sizeof(t->service), "%s", service);
	t->input = malloc(input_len > 0 ? input_len : 1);
	assert_non_null(t->input);
	memcpy(t->input, input, input_len);
	t->len = input_len;
	t->timeout_ms = timeout_ms;
	t->hang = cfg->mode == MODE_HANG;
	t->fail = cfg->mode == MODE_FAIL;
	if (cfg->slots == 0 || running_tasks(node) < cfg->slots)
		task_schedule(t);
	if (cfg->sync && cfg->service_ms == 0 && t->start_at != 0 && !t->hang)
		task_finish(t); /* re-enters the core: queued there */
	return 0;
}

static void io_job_kill(void *c, const char *job_id)
{
	int node = memnet_node_of(c);
	int i;

	N.cfg[node].kills++;
	for (i = 0; i < TASKS_MAX; i++) {
		struct task *t = &N.tasks[i];
		if (!t->used || t->node != node || strcmp(t->id, job_id))
			continue;
		t->killed = 1;
		if (N.cfg[node].sync_kill) {
			task_finish(t);
		} else {
			if (t->start_at == 0)
				t->start_at = M.now;
			t->done_at = M.now;
		}
	}
}

static struct result *result_find(int node, const char *id)
{
	int i;

	for (i = 0; i < N.result_count; i++)
		if (N.results[i].node == node &&
		    strcmp(N.results[i].id, id) == 0)
			return &N.results[i];
	return NULL;
}

static void submit(int node, const char *id, const char *service,
                   const uint8_t *in, size_t len, uint64_t timeout_ms,
                   int idempotent, int expect);

static void io_job_update(void *c, const fm_job_update *u)
{
	int node = memnet_node_of(c);
	struct result *r = result_find(node, u->id);

	if (r == NULL) {
		assert_true(N.result_count < RESULTS_MAX);
		r = &N.results[N.result_count++];
		memset(r, 0, sizeof(*r));
		r->node = node;
		snprintf(r->id, sizeof(r->id), "%s", u->id);
	}
	assert_true(u->attempt_count <= FM_JOB_ATTEMPTS_MAX);
	r->updates++;
	r->state = (int)u->state;
	r->attempt_count = u->attempt_count;
	memcpy(r->attempts, u->attempts,
	       u->attempt_count * sizeof(u->attempts[0]));
	if (u->state < FM_JOB_DONE)
		return;
	/* a final state: exactly once */
	r->final_updates++;
	assert_int_equal(r->final_updates, 1);
	r->final_ms = M.now;
	r->exit_status = u->exit_status;
	snprintf(r->error, sizeof(r->error), "%s",
	         u->error != NULL ? u->error : "");
	if (u->ran_on != NULL) {
		memcpy(r->ran_on, u->ran_on, 32);
		r->has_ran_on = 1;
	}
	if (u->output_len > 0) {
		r->output = malloc(u->output_len);
		assert_non_null(r->output);
		memcpy(r->output, u->output, u->output_len);
		r->output_len = u->output_len;
	}
	if (N.chain_left > 0 && node == 0) {
		char id[32];
		N.chain_left--;
		snprintf(id, sizeof(id), "chain-%d", N.chain_next++);
		/* from inside the callback: queued by the core */
		submit(0, id, "echo", (const uint8_t *)id, strlen(id), 0, 0, 0);
	}
}

/* ---- nodes ----------------------------------------------------------------
 */

static void make_node(int i, const char *services, const char *local)
{
	static const uint8_t fedkey[32] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	                                   7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	                                   7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
	fm_node_config cfg;
	fm_io io;

	memnet_node_prepare(i, (uint8_t)(i + 1), fedkey, &cfg, &io);
	cfg.dht_disabled = 1;
	/* "a,b" with 4 slots each */
	while (services != NULL && *services != '\0') {
		fm_service *sv = &cfg.services[cfg.service_count++];
		size_t n = strcspn(services, ",");
		memcpy(sv->name, services, n);
		sv->slots = 4;
		services += n + (services[n] == ',');
	}
	while (local != NULL && *local != '\0') {
		fm_service *sv = &cfg.local_services[cfg.local_service_count++];
		size_t n = strcspn(local, ",");
		memcpy(sv->name, local, n);
		sv->slots = 4;
		local += n + (local[n] == ',');
	}
	cfg.capacity = 4;
	io.job_execute = io_job_execute;
	io.job_kill = io_job_kill;
	io.job_update = io_job_update;
	memnet_node_start(i, &cfg, &io);
}

/* Resets every stream of node i (as when its host vanishes with a RST),
 * optionally freeing the node (a crash). */
static void reset_links(int i, int free_node)
{
	int t;

	memnet_reset_links(i, free_node);
	if (!free_node)
		return;
	for (t = 0; t < TASKS_MAX; t++)
		if (N.tasks[t].used && N.tasks[t].node == i) {
			free(N.tasks[t].input);
			N.tasks[t].used = 0;
		}
}

/* Finishes the tasks that are due, and starts queued ones in free slots.
 * Returns the earliest time a task is due next. */
static uint64_t run_tasks(void)
{
	uint64_t next = FM_DEADLINE_NONE;
	int i, progress = 1;

	while (progress) {
		progress = 0;
		for (i = 0; i < TASKS_MAX; i++) {
			struct task *t = &N.tasks[i];
			if (!t->used)
				continue;
			if (t->start_at == 0) {
				struct node_cfg *c = &N.cfg[t->node];
				if (c->slots == 0 ||
				    running_tasks(t->node) < c->slots) {
					task_schedule(t);
					progress = 1;
				}
				continue;
			}
			if (t->done_at <= M.now) {
				task_finish(t);
				memnet_drain();
				progress = 1;
			}
		}
	}
	for (i = 0; i < TASKS_MAX; i++)
		if (N.tasks[i].used && N.tasks[i].start_at != 0 &&
		    N.tasks[i].done_at < next)
			next = N.tasks[i].done_at;
	return next;
}

static int setup(void **state)
{
	(void)state;
	memset(&N, 0, sizeof(N));
	memnet_reset();
	M.step = run_tasks;
	return 0;
}

static int teardown(void **state)
{
	int i;

	(void)state;
	memnet_free();
	for (i = 0; i < TASKS_MAX; i++)
		free(N.tasks[i].input);
	for (i = 0; i < N.result_count; i++)
		free(N.results[i].output);
	return 0;
}

static void connect(int a, int b)
{
	assert_int_equal(fm_node_add_contact(M.nodes[a], M.now, &M.addrs[b],
	                                     FM_SRC_INVITE),
	                 0);
}

static void submit(int node, const char *id, const char *service,
                   const uint8_t *in, size_t len, uint64_t timeout_ms,
                   int idempotent, int expect)
{
	fm_job_spec spec;

	memset(&spec, 0, sizeof(spec));
	snprintf(spec.id, sizeof(spec.id), "%s", id);
	snprintf(spec.service, sizeof(spec.service), "%s", service);
	spec.input = in;
	spec.input_len = len;
	spec.timeout_ms = timeout_ms;
	spec.idempotent = (uint8_t)idempotent;
	assert_int_equal(fm_node_job_submit(M.nodes[node], M.now, &spec),
	                 expect);
}

static fm_node_stats stats(int node)
{
	fm_node_stats st;

	fm_node_get_stats(M.nodes[node], &st);
	return st;
}

static int execs_of(int node, const char *suffix)
{
	int i, n = 0;

	for (i = 0; i < N.exec_count; i++) {
		size_t a = strlen(N.execs[i].id), b = strlen(suffix);
		if (N.execs[i].node == node && a >= b &&
		    strcmp(N.execs[i].id + a - b, suffix) == 0)
			n += N.execs[i].calls;
	}
	return n;
}

/* The input of job k and its expected sha256 output. */
static void job_input(int k, char *in, size_t cap)
{
	snprintf(in, cap, "input of job %d", k);
}

static void check_sha256(int node, const char *id, const char *in)
{
	struct result *r = result_find(node, id);
	char hex[65];

	assert_non_null(r);
	if (r->state != FM_JOB_DONE)
		fail_msg("job %s: %s (%s)", id,
		         fm_job_state_name((enum fm_job_state)r->state),
		         r->error);
	sha256_hex((const uint8_t *)in, strlen(in), hex);
	assert_int_equal(r->output_len, 64);
	assert_memory_equal(r->output, hex, 64);
}

static int session_to(int a, int b);

/* ---- tests ----------------------------------------------------------------
 */

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(fm_job_state_name(FM_JOB_QUEUED), "queued");
	assert_string_equal(fm_job_state_name(FM_JOB_DISPATCHED), "dispatched");
	assert_string_equal(fm_job_state_name(FM_JOB_RUNNING), "running");
	assert_string_equal(fm_job_state_name(FM_JOB_DONE), "done");
	assert_string_equal(fm_job_state_name(FM_JOB_FAILED), "failed");
	assert_string_equal(fm_job_state_name(FM_JOB_TIMED_OUT), "timed_out");
	assert_string_equal(fm_job_state_name(FM_JOB_CANCELLED), "cancelled");
	assert_string_equal(fm_job_state_name(FM_JOB_STATE_COUNT), "unknown");
}

static void test_alone_runs_locally(void **state)
{
	uint8_t self[32];
	char id[32], in[64];
	fm_node_stats st;
	struct result *r;
	int k;

	(void)state;
	make_node(0, "sha256", "exec1");
	N.cfg[0].service_ms = 5;
	memnet_node_id(0, self);
	for (k = 0; k < 10; k++) {
		snprintf(id, sizeof(id), "alone-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, k % 2 ? "sha256" : "exec1", (uint8_t *)in,
		       strlen(in), 0, 0, 0);
	}
	/* bad specs and duplicates */
	submit(0, "alone-0", "sha256", NULL, 0, 0, 0, -EEXIST);
	submit(0, "bad:id", "sha256", NULL, 0, 0, 0, -EINVAL);
	submit(0, "", "sha256", NULL, 0, 0, 0, -EINVAL);
	submit(0, "x", "Bad", NULL, 0, 0, 0, -EINVAL);
	submit(0, "x", "sha256", NULL, 5, 0, 0, -EINVAL);
	submit(0, "x", "sha256", NULL, 0, FM_JOB_TIMEOUT_MAX_MS + 1, 0,
	       -EINVAL);
	memnet_run_until(M.now + 1000);
	for (k = 0; k < 10; k++) {
		snprintf(id, sizeof(id), "alone-%d", k);
		job_input(k, in, sizeof(in));
		check_sha256(0, id, in);
		r = result_find(0, id);
		assert_true(r->has_ran_on);
		assert_memory_equal(r->ran_on, self, 32);
		assert_int_equal(r->attempt_count, 1);
		assert_int_equal(r->attempts[0].outcome, FM_JOB_DONE);
		assert_true(r->attempts[0].end_ms >= r->attempts[0].start_ms);
		/* queued, running, done */
		assert_true(r->updates >= 3);
	}
	st = stats(0);
	assert_int_equal(st.jobs_submitted, 10);
	assert_int_equal(st.jobs_by_state[FM_JOB_DONE], 10);
	assert_int_equal(st.jobs_ran_local, 10);
	assert_int_equal(st.jobs_ran_remote, 0);
	assert_int_equal(st.job_attempts, 10);
	/* the driver saw the IDs as submitted */
	assert_int_equal(execs_of(0, "alone-3"), 1);
	assert_int_equal(fm_node_job_cancel(M.nodes[0], M.now, "alone-3"),
	                 -ENOENT);
	/* nothing left to time */
	assert_true(fm_node_tick(M.nodes[0], M.now) == FM_DEADLINE_NONE ||
	            fm_node_tick(M.nodes[0], M.now) > M.now + 60000);
}

static void spread(int nodes, int local)
{
	char id[32], in[64];
	fm_node_stats st;
	int k, i;

	make_node(0, local ? "sha256" : "", NULL);
	for (i = 1; i < nodes; i++) {
		make_node(i, "sha256", NULL);
		connect(0, i);
	}
	for (i = 0; i < nodes; i++) {
		N.cfg[i].service_ms = 20;
		N.cfg[i].slots = 4;
	}
	memnet_run_until(M.now + 2000);
	assert_int_equal(memnet_connected_peers(0), nodes - 1);
	for (k = 0; k < 300; k++) {
		snprintf(id, sizeof(id), "spread-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 0, 0, 0);
	}
	memnet_run_until(M.now + 30000);
	for (k = 0; k < 300; k++) {
		snprintf(id, sizeof(id), "spread-%d", k);
		job_input(k, in, sizeof(in));
		check_sha256(0, id, in);
	}
	st = stats(0);
	assert_int_equal(st.jobs_by_state[FM_JOB_DONE], 300);
	assert_int_equal(st.jobs_ran_local + st.jobs_ran_remote, 300);
	for (i = local ? 0 : 1; i < nodes; i++) {
		print_message("# node %d ran %d of 300\n", i, N.cfg[i].execs);
		assert_true(N.cfg[i].execs >= 20);
	}
	if (!local)
		assert_int_equal(N.cfg[0].execs, 0);
	for (i = 1; i < nodes; i++)
		assert_int_equal(stats(i).jobs_served, N.cfg[i].execs);
}

static void test_two_nodes_spread(void **state)
{
	(void)state;
	spread(2, 1);
}

static void test_three_nodes_spread(void **state)
{
	(void)state;
	spread(3, 0);
}

static void test_three_nodes_spread_with_local(void **state)
{
	(void)state;
	spread(3, 1);
}

static void test_slow_peer_avoided(void **state)
{
	char id[32], in[64];
	int k;

	(void)state;
	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	make_node(2, "sha256", NULL);
	connect(0, 1);
	connect(0, 2);
	N.cfg[1].service_ms = 10;
	N.cfg[2].service_ms = 400;
	memnet_run_until(M.now + 2000);
	for (k = 0; k < 400; k++) {
		snprintf(id, sizeof(id), "pace-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 0, 0, 0);
		memnet_run_until(M.now + 25);
	}
	memnet_run_until(M.now + 5000);
	assert_int_equal(stats(0).jobs_by_state[FM_JOB_DONE], 400);
	print_message("# fast peer %d, slow peer %d\n", N.cfg[1].execs,
	              N.cfg[2].execs);
	assert_true(N.cfg[2].execs * 10 < N.cfg[1].execs);
}

static void test_failing_peer_ejected_and_readmitted(void **state)
{
	char id[32], in[64];
	fm_peer_info p;
	uint8_t id2[32];
	int k, before;
	size_t i;

	(void)state;
	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	make_node(2, "sha256", NULL);
	connect(0, 1);
	connect(0, 2);
	N.cfg[1].service_ms = 20;
	N.cfg[2].service_ms = 1;
	N.cfg[2].mode = MODE_FAIL; /* fails fast: must not look fast */
	memnet_run_until(M.now + 2000);
	/* a burst: before any feedback half of it goes to the failing peer,
	 * which fails it at once, again and again: ejected. The rest, paced:
	 * it gets hardly any of them. */
	for (k = 0; k < 200; k++) {
		snprintf(id, sizeof(id), "fail-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 0, 0, 0);
		if (k >= 20)
			memnet_run_until(M.now + 50);
	}
	memnet_run_until(M.now + 2000);
	/* every job done: failures were retried on the good peer */
	for (k = 0; k < 200; k++) {
		snprintf(id, sizeof(id), "fail-%d", k);
		job_input(k, in, sizeof(in));
		check_sha256(0, id, in);
	}
	assert_true(stats(0).job_ejections >= 1);
	assert_true(stats(0).job_retries >= 1);
	print_message("# failing peer tried %d times, ejections %llu\n",
	              N.cfg[2].execs,
	              (unsigned long long)stats(0).job_ejections);
	assert_true(N.cfg[2].execs <= 20);
	/* honestly reported failures cost routing (the ejection above), not
	 * reputation: the peer is not banned for its jobs failing */
	memnet_node_id(2, id2);
	for (i = 0; i < fm_node_peer_count(M.nodes[0]); i++) {
		assert_int_equal(fm_node_peer_get(M.nodes[0], i, &p), 0);
		if (memcmp(p.node_id, id2, 32) == 0) {
			assert_true(p.reputation.failures == 0);
			assert_true(p.state != FM_PEER_BANNED);
		}
	}
	/* it recovers; after its ejection it is tried, and readmitted */
	N.cfg[2].mode = MODE_OK;
	N.cfg[2].service_ms = 5;
	memnet_run_until(M.now + FM_ROUTER_EJECT_MAX_MS + 1000);
	before = N.cfg[2].execs;
	for (k = 0; k < 200; k++) {
		snprintf(id, sizeof(id), "back-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 0, 0, 0);
		memnet_run_until(M.now + 50);
	}
	memnet_run_until(M.now + 2000);
	assert_int_equal(stats(0).jobs_by_state[FM_JOB_DONE], 400);
	print_message("# recovered peer ran %d of 200\n",
	              N.cfg[2].execs - before);
	assert_true(N.cfg[2].execs - before >= 40);
}

/* Jobs running on node 2 when it dies (crash: freed, streams reset) or is
 * cut off (its traffic lost) all complete elsewhere. */
static void lose_node(int crash)
{
	char id[32], in[64];
	uint8_t id2[32];
	uint64_t lost_at;
	int k, on2 = 0;
	size_t a;

	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	make_node(2, "sha256", NULL);
	connect(0, 1);
	connect(0, 2);
	N.cfg[1].service_ms = 2000;
	N.cfg[2].service_ms = 2000;
	memnet_run_until(M.now + 2000);
	memnet_node_id(2, id2);
	/* 100 jobs: more than the retry budget would allow (20 % of the
	 * requests + 30): failover from a dead peer must not ask it */
	for (k = 0; k < 100; k++) {
		snprintf(id, sizeof(id), "lose-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 120000, 0,
		       0);
	}
	memnet_run_until(M.now + 500);
	assert_true(N.cfg[2].execs >= 20);
	lost_at = M.now;
	if (crash) {
		reset_links(2, 1);
	} else {
		M.cut[2] = 1;
	}
	memnet_run_until(M.now + 100000);
	for (k = 0; k < 100; k++) {
		struct result *r;
		snprintf(id, sizeof(id), "lose-%d", k);
		job_input(k, in, sizeof(in));
		check_sha256(0, id, in);
		r = result_find(0, id);
		assert_memory_not_equal(r->ran_on, id2, 32);
		for (a = 0; a < r->attempt_count; a++) {
			if (memcmp(r->attempts[a].node_id, id2, 32) != 0)
				continue;
			on2++;
			assert_int_not_equal(r->attempts[a].outcome,
			                     FM_JOB_DONE);
			assert_true(a + 1 < r->attempt_count);
			/* after a crash the next attempt started at once
			 * after the loss was detected */
			if (!crash)
				continue; /* "no answer": the retry budget
				             paces these */
			assert_true(r->attempts[a + 1].start_ms <
			            r->attempts[a].end_ms + 1000);
			{
				assert_string_equal(r->attempts[a].error,
				                    "session lost");
				assert_true(r->attempts[a].end_ms <
				            lost_at + 1000);
			}
		}
	}
	assert_true(on2 >= 20);
	print_message("# %d jobs failed over from node 2\n", on2);
	assert_int_equal(stats(0).jobs_by_state[FM_JOB_DONE], 100);
}

static void test_crashed_node_jobs_fail_over(void **state)
{
	(void)state;
	lose_node(1);
}

static void test_cut_off_node_jobs_fail_over(void **state)
{
	(void)state;
	lose_node(0);
}

/* node 0 offers nothing itself; node 1 runs the job; the link is reset
 * while it runs. */
static void dedupe(uint64_t service_ms, uint64_t reset_after, int attach)
{
	uint8_t id1[32];
	struct result *r;
	const char *in = "dedupe me";
	size_t a;

	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	connect(0, 1);
	N.cfg[1].service_ms = service_ms;
	memnet_run_until(M.now + 2000);
	memnet_node_id(1, id1);
	submit(0, "same-id", "sha256", (const uint8_t *)in, strlen(in), 60000,
	       0, 0);
	memnet_run_until(M.now + reset_after);
	assert_int_equal(N.cfg[1].execs, 1);
	reset_links(1, 0);
	memnet_run_until(M.now + 30000);
	check_sha256(0, "same-id", in);
	r = result_find(0, "same-id");
	assert_true(r->attempt_count >= 2);
	for (a = 0; a < r->attempt_count; a++)
		assert_memory_equal(r->attempts[a].node_id, id1, 32);
	assert_string_equal(r->attempts[0].error, "session lost");
	/* it ran once on node 1, whatever was asked */
	assert_int_equal(N.cfg[1].execs, 1);
	assert_int_equal(execs_of(1, ":same-id"), 1);
	assert_int_equal(stats(1).jobs_deduplicated, 1);
	assert_int_equal(stats(1).jobs_served, 1);
	(void)attach;
}

static void test_retry_attaches_to_running_job(void **state)
{
	(void)state;
	dedupe(4000, 500, 1);
}

static void test_retry_answered_from_cache(void **state)
{
	(void)state;
	dedupe(200, 100, 0);
}

static void test_local_service_never_for_peers(void **state)
{
	char id[32], in[64];
	struct result *r;
	fm__msg m;
	int k, s;

	(void)state;
	/* node 0 runs exec1 for itself only; node 1 offers a service of the
	 * same name, and is much faster: still every exec1 job of node 0 runs
	 * on node 0 (a peer's exec1 may be another program altogether) */
	make_node(0, "sha256", "exec1");
	make_node(1, "exec1,sha256", NULL);
	connect(0, 1);
	N.cfg[0].service_ms = 200;
	N.cfg[0].slots = 1;
	N.cfg[1].service_ms = 1;
	memnet_run_until(M.now + 2000);
	for (k = 0; k < 30; k++) {
		snprintf(id, sizeof(id), "mine-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "exec1", (uint8_t *)in, strlen(in), 0, 0, 0);
	}
	/* node 2 wants exec1 from node 0: it is not on offer there */
	make_node(2, "", NULL);
	connect(2, 0);
	memnet_run_until(M.now + 2000);
	submit(2, "want-exec1", "exec1", (const uint8_t *)"x", 1, 0, 0, 0);
	memnet_run_until(M.now + 10000);
	for (k = 0; k < 30; k++) {
		snprintf(id, sizeof(id), "mine-%d", k);
		job_input(k, in, sizeof(in));
		check_sha256(0, id, in);
	}
	assert_int_equal(stats(0).jobs_ran_local, 30);
	assert_int_equal(N.cfg[1].execs, 0);
	assert_int_equal(stats(1).jobs_served, 0);
	r = result_find(2, "want-exec1");
	assert_non_null(r);
	assert_int_equal(r->state, FM_JOB_FAILED);
	assert_non_null(strstr(r->error, "no node offers service 'exec1'"));
	assert_int_equal(stats(0).jobs_served, 0);
	/* a peer that asks anyway is refused */
	s = session_to(2, 0);
	assert_true(s >= 0);
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_JOB_REQUEST;
	snprintf(m.job_id, sizeof(m.job_id), "forced");
	snprintf(m.service, sizeof(m.service), "exec1");
	m.timeout_ms = 1000;
	assert_int_equal(fm__session_send(M.nodes[2], s, &m), 0);
	memnet_run_until(M.now + 100);
	assert_int_equal(stats(0).jobs_served, 0);
	assert_int_equal(execs_of(0, ":forced"), 0);
	assert_int_equal(memnet_connected_peers(2),
	                 1); /* refusing is no error */
}

static void test_big_input_chunks(void **state)
{
	size_t len = 1024 * 1024;
	uint8_t *in = malloc(len);
	struct result *r;
	fm_node_stats before, after;

	(void)state;
	assert_non_null(in);
	randombytes_buf(in, len);
	make_node(0, "", NULL);
	make_node(1, "echo,sha256", NULL);
	connect(0, 1);
	N.cfg[1].service_ms = 10;
	memnet_run_until(M.now + 2000);
	before = stats(1);
	submit(0, "big", "echo", in, len, 0, 0, 0);
	memnet_run_until(M.now + 5000);
	r = result_find(0, "big");
	assert_non_null(r);
	assert_int_equal(r->state, FM_JOB_DONE);
	assert_int_equal(r->output_len, len);
	assert_memory_equal(r->output, in, len);
	after = stats(1);
	/* 1 MiB in 60,000-byte chunks each way */
	assert_true(after.frames_received - before.frames_received >=
	            len / FM_JOB_CHUNK_BYTES);
	free(in);
}

static void test_cancel(void **state)
{
	struct result *r;
	int kills;

	(void)state;
	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	connect(0, 1);
	N.cfg[1].service_ms = 5000;
	memnet_run_until(M.now + 2000);
	submit(0, "c1", "sha256", (const uint8_t *)"a", 1, 0, 0, 0);
	memnet_run_until(M.now + 1000);
	r = result_find(0, "c1");
	assert_int_equal(r->state, FM_JOB_RUNNING);
	assert_int_equal(fm_node_job_cancel(M.nodes[0], M.now, "c1"), 0);
	assert_int_equal(r->state, FM_JOB_CANCELLED);
	assert_int_equal(r->attempts[0].outcome, FM_JOB_CANCELLED);
	memnet_run_until(M.now + 100);
	assert_int_equal(N.cfg[1].kills, 1);
	assert_int_equal(fm_node_job_cancel(M.nodes[0], M.now, "c1"), -ENOENT);
	memnet_run_until(M.now + 10000);
	assert_int_equal(r->final_updates, 1);
	/* a cancelled local run: killed in the driver, which reports the
	 * end from inside job_kill; the ID can be used again */
	kills = N.cfg[0].kills;
	make_node(2, "sha256", NULL);
	N.cfg[2].mode = MODE_HANG;
	N.cfg[2].sync_kill = 1;
	submit(2, "c2", "sha256", (const uint8_t *)"a", 1, 0, 0, 0);
	memnet_run_until(M.now + 100);
	assert_int_equal(fm_node_job_cancel(M.nodes[2], M.now, "c2"), 0);
	assert_int_equal(N.cfg[2].kills, 1);
	assert_int_equal(result_find(2, "c2")->state, FM_JOB_CANCELLED);
	(void)kills;
	N.cfg[2].mode = MODE_OK;
	N.cfg[2].service_ms = 10;
	/* the same ID again: allowed, and it runs */
	result_find(2, "c2")->final_updates = 0;
	submit(2, "c2", "sha256", (const uint8_t *)"a", 1, 0, 0, 0);
	memnet_run_until(M.now + 1000);
	check_sha256(2, "c2", "a");
}

static void test_overall_timeout(void **state)
{
	struct result *r;

	(void)state;
	/* alone, the local run hangs */
	make_node(0, "sha256", NULL);
	N.cfg[0].mode = MODE_HANG;
	submit(0, "t1", "sha256", (const uint8_t *)"a", 1, 2000, 0, 0);
	memnet_run_until(M.now + 1999);
	r = result_find(0, "t1");
	assert_int_equal(r->state, FM_JOB_RUNNING);
	memnet_run_until(M.now + 2);
	assert_int_equal(r->state, FM_JOB_TIMED_OUT);
	assert_int_equal(N.cfg[0].kills, 1);
	assert_non_null(strstr(r->error, "timed out"));
	assert_int_equal(stats(0).jobs_by_state[FM_JOB_TIMED_OUT], 1);
	/* on a peer that hangs (and answers queries) */
	make_node(1, "sha256", NULL);
	N.cfg[1].mode = MODE_HANG;
	make_node(2, "", NULL);
	connect(2, 1);
	memnet_run_until(M.now + 2000);
	submit(2, "t2", "sha256", (const uint8_t *)"a", 1, 30000, 0, 0);
	memnet_run_until(M.now + 29000);
	r = result_find(2, "t2");
	assert_int_equal(r->state, FM_JOB_RUNNING);
	assert_int_equal(r->attempt_count, 1);
	memnet_run_until(M.now + 2000);
	assert_int_equal(r->state, FM_JOB_TIMED_OUT);
	assert_int_equal(N.cfg[1].kills, 1);
}

static void test_nothing_can_run_it(void **state)
{
	struct result *r;

	(void)state;
	make_node(0, "", NULL);
	submit(0, "n1", "x", (const uint8_t *)"a", 1, 0, 0, 0);
	r = result_find(0, "n1");
	assert_non_null(r);
	assert_int_equal(r->state, FM_JOB_FAILED);
	assert_string_equal(r->error,
	                    "no node offers service 'x' (tried: nothing)");
	fm_node_free(M.nodes[0]);
	M.nodes[0] = NULL;
	/* the service is configured here and offered by a peer, but neither
	 * driver knows it */
	make_node(0, "nosuch", NULL);
	make_node(1, "nosuch", NULL);
	connect(0, 1);
	memnet_run_until(M.now + 2000);
	submit(0, "n2", "nosuch", (const uint8_t *)"a", 1, 0, 0, 0);
	memnet_run_until(M.now + 1000);
	r = result_find(0, "n2");
	assert_int_equal(r->state, FM_JOB_FAILED);
	print_message("# %s\n", r->error);
	assert_non_null(strstr(r->error, "no node offers service 'nosuch'"));
	assert_non_null(strstr(r->error, "local: no such service"));
	assert_non_null(strstr(r->error, ": refused: no such service"));
	assert_int_equal(r->attempt_count, 2);
}

static void test_hedging(void **state)
{
	char id[32], in[64];
	int k, hedged = 0;
	struct result *r;

	(void)state;
	make_node(0, "", NULL);
	make_node(1, "sha256", NULL);
	make_node(2, "sha256", NULL);
	connect(0, 1);
	connect(0, 2);
	N.cfg[1].service_ms = 3000; /* slow */
	N.cfg[2].service_ms = 20;
	memnet_run_until(M.now + 2000);
	for (k = 0; k < 20; k++) {
		snprintf(id, sizeof(id), "hedge-%d", k);
		job_input(k, in, sizeof(in));
		submit(0, id, "sha256", (uint8_t *)in, strlen(in), 0, 1, 0);
		memnet_run_until(M.now + 1000);
		check_sha256(0, id, in);
		r = result_find(0, id);
		assert_true(r->final_ms - r->attempts[0].start_ms < 1000);
		if (r->attempt_count == 2) {
			hedged++;
			assert_int_equal(r->attempts[0].outcome,
			                 FM_JOB_CANCELLED);
		}
	}
	print_message("# %d of 20 hedged\n", hedged);
	assert_true(hedged >= 1);
	memnet_run_until(M.now + 5000);
	assert_int_equal(N.cfg[1].kills, hedged);
}

static void test_callbacks_may_reenter(void **state)
{
	struct result *r;
	char id[32];
	int k;

	(void)state;
	/* zero-time jobs finished inside job_execute, and submits from
	 * inside job_update, alone and through a peer */
	make_node(0, "echo", NULL);
	N.cfg[0].sync = 1;
	N.chain_left = 20;
	submit(0, "chain-start", "echo", (const uint8_t *)"go", 2, 0, 0, 0);
	memnet_run_until(M.now + 1000);
	for (k = 0; k < 20; k++) {
		snprintf(id, sizeof(id), "chain-%d", k);
		r = result_find(0, id);
		assert_non_null(r);
		assert_int_equal(r->state, FM_JOB_DONE);
		assert_int_equal(r->output_len, strlen(id));
	}
	make_node(1, "echo", NULL);
	N.cfg[1].sync = 1;
	fm_node_free(M.nodes[0]);
	M.nodes[0] = NULL;
	make_node(0, "", NULL);
	connect(0, 1);
	memnet_run_until(M.now + 2000);
	N.chain_left = 10;
	N.chain_next = 100;
	submit(0, "remote-start", "echo", (const uint8_t *)"go", 2, 0, 0, 0);
	memnet_run_until(M.now + 1000);
	for (k = 100; k < 110; k++) {
		snprintf(id, sizeof(id), "chain-%d", k);
		r = result_find(0, id);
		assert_non_null(r);
		assert_int_equal(r->state, FM_JOB_DONE);
	}
	assert_int_equal(stats(1).jobs_served, 11);
}

/* ---- malformed messages ---------------------------------------------------
 */

/* Session index on node a of its session to node b. */
static int session_to(int a, int b)
{
	uint8_t id[32];
	int p;

	memnet_node_id(b, id);
	p = fm__peer_find(M.nodes[a], id);
	assert_true(p >= 0);
	return M.nodes[a]->peers[p].session;
}

/* Sends raw plaintext as one transport frame from node a to node b. */
static void send_raw(int a, int b, const uint8_t *plain, size_t len)
{
	struct fm__session *s = M.nodes[a]->sessions[session_to(a, b)];
	uint8_t frame[2 + 256 + 16];
	size_t ct = 0;

	assert_true(len <= 256);
	assert_int_equal(fm__noise_encrypt(&s->send, NULL, 0, plain, len,
	                                   frame + 2, sizeof(frame) - 2, &ct),
	                 0);
	frame[0] = (uint8_t)(ct >> 8);
	frame[1] = (uint8_t)ct;
	assert_int_equal(M.nodes[a]->io.stream_send(M.nodes[a]->io.ctx,
	                                            s->stream_id, frame,
	                                            2 + ct),
	                 0);
}

static void send_msg_from(int a, int b, const fm__msg *m)
{
	assert_int_equal(fm__session_send(M.nodes[a], session_to(a, b), m), 0);
}

static uint64_t bad_messages(int node)
{
	return stats(node).session_errors[FM_SESS_BAD_MESSAGE];
}

/* Clears what the offences cost, so the next one is tested on a fresh
 * session rather than against a ban. */
static void forgive(int a, int b)
{
	uint8_t id[32];
	int p;

	memnet_node_id(b, id);
	p = fm__peer_find(M.nodes[a], id);
	assert_true(p >= 0);
	memset(&M.nodes[a]->peers[p].info.reputation, 0,
	       sizeof(M.nodes[a]->peers[p].info.reputation));
	M.nodes[a]->peers[p].ban_until_ms = 0;
	if (M.nodes[a]->peers[p].info.state == FM_PEER_BANNED) {
		M.nodes[a]->peers[p].info.state = FM_PEER_BACKOFF;
		M.nodes[a]->peers[p].next_dial_ms = M.now;
	}
}

static void reconnect(void)
{
	forgive(0, 1);
	forgive(1, 0);
	memnet_run_until(M.now + 5000);
	assert_int_equal(memnet_connected_peers(0), 1);
	assert_int_equal(memnet_connected_peers(1), 1);
}

static void test_malformed_job_messages(void **state)
{
	fm__msg m;
	uint64_t bad;
	uint8_t chunk[200];
	static const struct {
		const char *bytes;
		size_t len;
	} raw[] = {
	        {"\x92\x10\xa1\x61", 4},             /* REQUEST too short */
	        {"\x92\x11\xa3\x61\x3a\x62", 6},     /* DATA: id with ':' */
	        {"\x93\x12\xa1\x61\xc0", 5},         /* ACCEPT: nil offset */
	        {"\x92\x14\xa0", 3},                 /* RUNNING: empty id */
	        {"\x94\x11\xa1\x61\x00\xc4\x00", 7}, /* DATA: empty chunk */
	        {"\x93\x18\xa1\x61\x01", 5},         /* QUERY: extra */
	        {"\x97\x15\xa1\x61\x09\x00\x00\xc4\x00\xa0", 10}, /* state 9 */
	        {"\x97\x15\xa1\x61\x03\x00\x01\xc4\x02xx\xa0",
	         12}, /* chunk
	                 > total */
	};
	size_t i;

	(void)state;
	make_node(0, "sha256", NULL);
	make_node(1, "sha256", NULL);
	N.cfg[0].mode = MODE_HANG;
	N.cfg[1].mode = MODE_HANG;
	connect(0, 1);
	memnet_run_until(M.now + 2000);
	/* codec-level garbage: each ends the session, costs reputation, and
	 * nothing crashes */
	for (i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		bad = bad_messages(0);
		send_raw(1, 0, (const uint8_t *)raw[i].bytes, raw[i].len);
		memnet_run_until(M.now + 10);
		if (bad_messages(0) != bad + 1)
			fail_msg("raw message %zu was accepted", i);
		reconnect();
	}
	/* DATA for a job never requested */
	memset(chunk, 'z', sizeof(chunk));
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_JOB_DATA;
	snprintf(m.job_id, sizeof(m.job_id), "nobody");
	m.offset = 0;
	m.chunk = chunk;
	m.chunk_len = 10;
	bad = bad_messages(0);
	send_msg_from(1, 0, &m);
	memnet_run_until(M.now + 10);
	assert_int_equal(bad_messages(0), bad + 1);
	reconnect();
	/* a request in two chunks, then a gap, an overrun, a repeat */
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_JOB_REQUEST;
	snprintf(m.job_id, sizeof(m.job_id), "two");
	snprintf(m.service, sizeof(m.service), "sha256");
	m.timeout_ms = 1000;
	m.total_len = 100;
	m.chunk = chunk;
	m.chunk_len = 50;
	bad = bad_messages(0);
	send_msg_from(1, 0, &m);
	m.type = FM__MSG_JOB_DATA;
	m.offset = 60; /* gap */
	m.chunk_len = 40;
	send_msg_from(1, 0, &m);
	memnet_run_until(M.now + 10);
	assert_int_equal(bad_messages(0), bad + 1);
	reconnect();
	m.type = FM__MSG_JOB_REQUEST;
	snprintf(m.job_id, sizeof(m.job_id), "three");
	m.chunk_len = 50;
	send_msg_from(1, 0, &m);
	m.type = FM__MSG_JOB_DATA;
	m.offset = 50;
	m.chunk_len = 60; /* overrun */
	send_msg_from(1, 0, &m);
	memnet_run_until(M.now + 10);
	assert_int_equal(bad_messages(0), bad + 2);
	reconnect();
	m.type = FM__MSG_JOB_REQUEST;
	snprintf(m.job_id, sizeof(m.job_id), "four");
	m.chunk_len = 50;
	send_msg_from(1, 0, &m);
	send_msg_from(1, 0, &m); /* the same request twice on one session */
	memnet_run_until(M.now + 10);
	assert_int_equal(bad_messages(0), bad + 3);
	reconnect();
	/* a result that skips bytes, for a job that is really running there:
	 * node 0 submits to node 1 (node 0 has it too; make it refuse
	 * locally by making the local candidate tried first... simply use a
	 * job whose attempt lands on node 1) */
	{
		struct result *r;
		char id[32];
		int k, found = 0;
		uint8_t id1[32];
		memnet_node_id(1, id1);
		for (k = 0; k < 20 && !found; k++) {
			snprintf(id, sizeof(id), "victim-%d", k);
			submit(0, id, "sha256", (const uint8_t *)"v", 1, 60000,
			       0, 0);
			memnet_run_until(M.now + 10);
			r = result_find(0, id);
			if (r->attempt_count == 1 &&
			    memcmp(r->attempts[0].node_id, id1, 32) == 0)
				found = 1;
		}
		assert_true(found);
		bad = bad_messages(0);
		memset(&m, 0, sizeof(m));
		m.type = FM__MSG_JOB_RESULT;
		snprintf(m.job_id, sizeof(m.job_id), "%s", id);
		m.state = FM_JOB_DONE;
		m.total_len = 100;
		m.chunk = chunk;
		m.chunk_len = 10;
		send_msg_from(1, 0, &m);
		m.type = FM__MSG_JOB_RESULT_DATA;
		m.offset = 20; /* gap */
		send_msg_from(1, 0, &m);
		memnet_run_until(M.now + 10);
		assert_int_equal(bad_messages(0), bad + 1);
		/* the job was not fooled: it fails over (locally, hanging) */
		r = result_find(0, id);
		assert_true(r->state < FM_JOB_DONE);
	}
	/* the offender's reputation took the hits */
	{
		fm_peer_info p;
		assert_int_equal(fm_node_peer_get(M.nodes[0], 0, &p), 0);
		assert_true(p.reputation.invalid > 0.9);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_state_names),
	        T(test_alone_runs_locally),
	        T(test_two_nodes_spread),
	        T(test_three_nodes_spread),
	        T(test_three_nodes_spread_with_local),
	        T(test_slow_peer_avoided),
	        T(test_failing_peer_ejected_and_readmitted),
	        T(test_crashed_node_jobs_fail_over),
	        T(test_cut_off_node_jobs_fail_over),
	        T(test_retry_attaches_to_running_job),
	        T(test_retry_answered_from_cache),
	        T(test_local_service_never_for_peers),
	        T(test_big_input_chunks),
	        T(test_cancel),
	        T(test_overall_timeout),
	        T(test_nothing_can_run_it),
	        T(test_hedging),
	        T(test_callbacks_may_reenter),
	        T(test_malformed_job_messages),
	};
#undef T

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
