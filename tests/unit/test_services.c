/* Tests of the daemon's job plumbing that need no loop and no peer: the
 * [jobs] and [service.NAME] configuration (parsing, refusals, and the
 * --print-config round trip an operator relies on), the built-ins' pure
 * parts, and the job queue's SQL against a real database file (insert,
 * progress, result, listing, the unfinished set a restart resubmits, the
 * sweep of expired results and the exec run journal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/jobstore.h"
#include "daemon/services.h"
#include "daemon/store.h"

#define TEST_ERR_MAX 512
#define TEST_PATH_MAX 512
#define TEST_PRINT_MAX 16384

static char tmpdir[] = "/tmp/fedmesh-test-services-XXXXXX";

static int load(fmd_config *cfg, const char *text, char *err)
{
	fmd_config_defaults(cfg, NULL, "/home/test");
	return fmd_config_load_string(cfg, text, "test.conf", err,
	                              TEST_ERR_MAX);
}

static void test_durations_and_sizes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(fmd_parse_duration_ms("30s", &v), 0);
	assert_int_equal(v, 30000);
	assert_int_equal(fmd_parse_duration_ms("500ms", &v), 0);
	assert_int_equal(v, 500);
	assert_int_equal(fmd_parse_duration_ms("24h", &v), 0);
	assert_int_equal(v, 24ULL * 3600 * 1000);
	assert_int_equal(fmd_parse_duration_ms("7", &v), 0);
	assert_int_equal(v, 7000);
	assert_int_equal(fmd_parse_duration_ms("2d", &v), 0);
	assert_int_equal(v, 2ULL * 86400 * 1000);
	assert_int_equal(fmd_parse_duration_ms("1.5s", &v), -EINVAL);
	assert_int_equal(fmd_parse_duration_ms("s", &v), -EINVAL);
	assert_int_equal(fmd_parse_duration_ms("10y", &v), -EINVAL);
	assert_int_equal(fmd_parse_duration_ms("99999999999999999999h", &v),
	                 -EINVAL);
	assert_int_equal(fmd_parse_size("1M", &v), 0);
	assert_int_equal(v, 1024 * 1024);
	assert_int_equal(fmd_parse_size("64KiB", &v), 0);
	assert_int_equal(v, 64 * 1024);
	assert_int_equal(fmd_parse_size("123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(fmd_parse_size("-1", &v), -EINVAL);
	assert_int_equal(fmd_parse_size("1T", &v), -EINVAL);
}

static void test_defaults(void **state)
{
	char err[TEST_ERR_MAX];
	fmd_config cfg;

	(void)state;
	assert_int_equal(load(&cfg, "", err), 0);
	assert_true(cfg.jobs.builtins);
	assert_true(cfg.jobs.offer_builtin);
	assert_int_equal(cfg.jobs.builtin_slots, 0);
	assert_int_equal(cfg.jobs.keep_ms, FMD_JOBS_KEEP_DEFAULT_MS);
	assert_int_equal(cfg.jobs.input_max, FM_JOB_INPUT_MAX);
	assert_int_equal(cfg.jobs.service_count, 0);
}

static void test_exec_service(void **state)
{
	static const char text[] = "[jobs]\n"
	                           "keep = 2h\n"
	                           "input_max = 1M\n"
	                           "offer_builtin = false\n"
	                           "[service.thumb]\n"
	                           "command = /usr/bin/convert\n"
	                           "args = - -thumbnail \"128 x 128\"\n"
	                           "args = png:-\n"
	                           "timeout = 30s\n"
	                           "output_max = 2M\n"
	                           "offer = true\n"
	                           "max_concurrent = 3\n"
	                           "rlimit_cpu = 1500ms\n"
	                           "rlimit_as = 1G\n"
	                           "rlimit_nofile = 64\n";
	const fmd_exec_service *svc;
	char err[TEST_ERR_MAX];
	fmd_config cfg;
	const char *a;

	(void)state;
	assert_int_equal(load(&cfg, text, err), 0);
	assert_int_equal(cfg.jobs.keep_ms, 2ULL * 3600 * 1000);
	assert_int_equal(cfg.jobs.input_max, 1024 * 1024);
	assert_false(cfg.jobs.offer_builtin);
	assert_int_equal(cfg.jobs.service_count, 1);
	svc = &cfg.jobs.services[0];
	assert_string_equal(svc->name, "thumb");
	assert_string_equal(svc->command, "/usr/bin/convert");
	assert_int_equal(svc->argc, 4);
	a = svc->args;
	assert_string_equal(a, "-");
	a += strlen(a) + 1;
	assert_string_equal(a, "-thumbnail");
	a += strlen(a) + 1;
	assert_string_equal(a, "128 x 128");
	a += strlen(a) + 1;
	assert_string_equal(a, "png:-");
	assert_int_equal(svc->timeout_ms, 30000);
	assert_int_equal(svc->output_max, 2 * 1024 * 1024);
	assert_int_equal(svc->stderr_max, FMD_EXEC_STDERR_DEFAULT_BYTES);
	assert_true(svc->offer);
	assert_int_equal(svc->max_concurrent, 3);
	assert_int_equal(svc->rlimit_cpu_s, 2); /* rounded up */
	assert_int_equal(svc->rlimit_as_bytes, 1024ULL * 1024 * 1024);
	assert_int_equal(svc->rlimit_nofile, 64);
}

static void test_refusals(void **state)
{
	static const char *const bad[] = {
	        "[service.echo]\ncommand = /bin/cat\n", /* a built-in */
	        "[service.Bad]\ncommand = /bin/cat\n",  /* upper case */
	        "[service.x]\ncommand = bin/cat\n",     /* relative */
	        "[service.x]\ncommand = /bin/cat\nfoo = 1\n",
	        "[service.x]\ncommand = /bin/cat\nargs = \"open\n",
	        "[service.x]\ncommand = /bin/cat\nargs = a\"b\n",
	        "[service.x]\ncommand = /bin/cat\noffer = maybe\n",
	        "[service.x]\ncommand = /bin/cat\nmax_concurrent = 0\n",
	        "[service.x]\ncommand = /bin/cat\noutput_max = 17M\n",
	        "[service.x]\ncommand = /bin/cat\nrlimit_nofile = 2\n",
	        "[jobs]\ninput_max = 17M\n",
	        "[jobs]\nkeep = 0\n",
	        "[jobs]\ntimeout = 25h\n",
	        "[jobs]\nsurprise = 1\n",
	};
	char err[TEST_ERR_MAX];
	fmd_config cfg;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_not_equal(load(&cfg, bad[i], err), 0);
		assert_true(strstr(err, "test.conf:") == err);
	}
	/* A section without a command is caught once everything is read. */
	assert_int_equal(load(&cfg, "[service.x]\noffer = true\n", err), 0);
	assert_int_equal(fmd_jobs_config_check(&cfg.jobs, err, TEST_ERR_MAX),
	                 -EINVAL);
	assert_non_null(strstr(err, "command"));
}

static void test_too_many_services(void **state)
{
	char text[4096] = "";
	char err[TEST_ERR_MAX];
	fmd_config cfg;
	int i;

	(void)state;
	for (i = 0; i <= FMD_EXEC_SERVICES_MAX; i++) {
		char one[64];

		snprintf(one, sizeof(one),
		         "[service.s%d]\ncommand = /bin/cat\n", i);
		strcat(text, one);
	}
	assert_int_not_equal(load(&cfg, text, err), 0);
	assert_non_null(strstr(err, "at most"));
}

/* What --print-config writes reads back to the same configuration. */
static void test_print_round_trip(void **state)
{
	static const char text[] =
	        "[jobs]\nbuiltins = false\nkeep = 90m\ninput_max = 3000\n"
	        "builtin_slots = 5\ntimeout = 1500ms\n"
	        "[service.a]\ncommand = /bin/sh\nargs = -c \"echo a b\"\n"
	        "rlimit_cpu = 3s\n"
	        "[service.b]\ncommand = /bin/cat\noffer = yes\n";
	char err[TEST_ERR_MAX];
	char *printed = calloc(1, TEST_PRINT_MAX);
	fmd_config *one = malloc(sizeof(*one));
	fmd_config *two = malloc(sizeof(*two));
	FILE *f;
	size_t i;

	(void)state;
	assert_non_null(printed);
	assert_non_null(one);
	assert_non_null(two);
	assert_int_equal(load(one, text, err), 0);
	f = fmemopen(printed, TEST_PRINT_MAX - 1, "w");
	assert_non_null(f);
	fmd_config_print(one, f);
	fclose(f);
	assert_int_equal(load(two, printed, err), 0);
	assert_int_equal(one->jobs.builtins, two->jobs.builtins);
	assert_int_equal(one->jobs.keep_ms, two->jobs.keep_ms);
	assert_int_equal(one->jobs.input_max, two->jobs.input_max);
	assert_int_equal(one->jobs.builtin_slots, two->jobs.builtin_slots);
	assert_int_equal(one->jobs.timeout_ms, two->jobs.timeout_ms);
	assert_int_equal(one->jobs.service_count, two->jobs.service_count);
	for (i = 0; i < one->jobs.service_count; i++) {
		const fmd_exec_service *x = &one->jobs.services[i];
		const fmd_exec_service *y = &two->jobs.services[i];

		assert_string_equal(x->name, y->name);
		assert_string_equal(x->command, y->command);
		assert_int_equal(x->argc, y->argc);
		assert_int_equal(x->args_len, y->args_len);
		assert_memory_equal(x->args, y->args, x->args_len);
		assert_int_equal(x->timeout_ms, y->timeout_ms);
		assert_int_equal(x->output_max, y->output_max);
		assert_int_equal(x->offer, y->offer);
		assert_int_equal(x->rlimit_cpu_s, y->rlimit_cpu_s);
	}
	free(printed);
	free(one);
	free(two);
}

static void test_builtins(void **state)
{
	char hex[FMD_SHA256_HEX_LEN + 1] = "";
	uint64_t ms;

	(void)state;
	assert_int_equal(fmd_builtin_find("echo"), FMD_BUILTIN_ECHO);
	assert_int_equal(fmd_builtin_find("sha256"), FMD_BUILTIN_SHA256);
	assert_int_equal(fmd_builtin_find("sleep"), FMD_BUILTIN_SLEEP);
	assert_int_equal(fmd_builtin_find("cat"), FMD_BUILTIN_NONE);
	fmd_sha256_hex((const uint8_t *)"hello\n", 6, hex);
	assert_string_equal(hex, "5891b5b522d5df086d0ff0b110fbd9d2"
	                         "1bb4fc7163af34d08286a2e846f6be03");
	assert_int_equal(fmd_sleep_parse((const uint8_t *)" 250\n", 5, &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(fmd_sleep_parse((const uint8_t *)"", 0, &ms), -EINVAL);
	assert_int_equal(fmd_sleep_parse((const uint8_t *)"1x", 2, &ms),
	                 -EINVAL);
	assert_int_equal(fmd_sleep_parse((const uint8_t *)"-5", 2, &ms),
	                 -EINVAL);
}

typedef struct seen {
	char ids[8][FM_JOB_ID_MAX + 1];
	size_t count;
} seen;

static int collect(void *ctx, const fmd_job_row *row)
{
	seen *s = ctx;

	if (s->count < 8)
		snprintf(s->ids[s->count++], sizeof(s->ids[0]), "%s", row->id);
	return 0;
}

static void job_row_init(fmd_job_row *row, const char *id, int64_t created)
{
	memset(row, 0, sizeof(*row));
	snprintf(row->id, sizeof(row->id), "%s", id);
	snprintf(row->service, sizeof(row->service), "sha256");
	row->state = FM_JOB_QUEUED;
	row->timeout_ms = 1000;
	row->created_unix_ms = created;
}

static void test_jobstore(void **state)
{
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX];
	fmd_store *store = NULL;
	fmd_jobstore *js = NULL;
	fmd_job_row *row = calloc(1, sizeof(*row));
	fmd_run_row run;
	int64_t oldest = 0;
	uint8_t *input = NULL;
	size_t input_len = 0;
	seen s;

	(void)state;
	assert_non_null(row);
	snprintf(path, sizeof(path), "%s/jobs.db", tmpdir);
	assert_int_equal(fmd_store_open(path, &store, err, sizeof(err)), 0);
	assert_true(fmd_store_schema_version(store) >= 4);
	assert_int_equal(fmd_jobstore_open(store, NULL, NULL, &js), 0);
	/* Nothing a sweep could delete: no sweep is due. */
	assert_int_equal(fmd_jobstore_sweep_oldest(js, &oldest), 0);

	job_row_init(row, "j1", 1000);
	assert_int_equal(fmd_jobstore_insert(js, row, (const uint8_t *)"in", 2),
	                 0);
	assert_int_equal(fmd_jobstore_pending(js), 1);
	assert_int_equal(fmd_jobstore_commit(js), 0);
	assert_int_equal(fmd_jobstore_pending(js), 0);
	assert_int_equal(fmd_jobstore_insert(js, row, NULL, 0), -EEXIST);
	assert_int_equal(fmd_jobstore_commit(js), 0);
	job_row_init(row, "j2", 2000);
	assert_int_equal(fmd_jobstore_insert(js, row, NULL, 0), 0);
	job_row_init(row, "j3", 3000);
	assert_int_equal(fmd_jobstore_insert(js, row, NULL, 0), 0);

	assert_int_equal(fmd_jobstore_progress(js, "j1", FM_JOB_RUNNING, 1500,
	                                       "ab", "[]"),
	                 0);
	assert_int_equal(fmd_jobstore_get(js, "j1", 0, row), 0);
	assert_int_equal(row->state, FM_JOB_RUNNING);
	assert_int_equal(row->input_len, 2);
	assert_int_equal(fmd_jobstore_get_input(js, "j1", &input, &input_len),
	                 0);
	assert_int_equal(input_len, 2);
	assert_memory_equal(input, "in", 2);
	free(input);

	/* j2 ends: output, exit status, attempts; then it is final. */
	job_row_init(row, "j2", 2000);
	row->state = FM_JOB_DONE;
	row->finished_unix_ms = 5000;
	row->has_output = 1;
	row->output = (uint8_t *)"out";
	row->output_len = 3;
	row->has_exit_status = 1;
	row->exit_status = 3;
	snprintf(row->ran_on, sizeof(row->ran_on), "cd");
	snprintf(row->attempts_json, sizeof(row->attempts_json), "[{}]");
	assert_int_equal(fmd_jobstore_finish(js, row), 0);
	assert_int_equal(fmd_jobstore_commit(js), 0);
	/* Unfinished jobs never expire; j2's result does, from 5000. */
	assert_int_equal(fmd_jobstore_sweep_oldest(js, &oldest), 1);
	assert_int_equal(oldest, 5000);
	assert_int_equal(fmd_jobstore_get(js, "j2", 1, row), 0);
	assert_int_equal(row->state, FM_JOB_DONE);
	assert_int_equal(row->output_len, 3);
	assert_memory_equal(row->output, "out", 3);
	assert_int_equal(row->exit_status, 3);
	assert_string_equal(row->ran_on, "cd");
	fmd_job_row_clear(row);
	/* Progress after the end changes nothing. */
	assert_int_equal(fmd_jobstore_progress(js, "j2", FM_JOB_RUNNING, 6000,
	                                       NULL, NULL),
	                 0);
	assert_int_equal(fmd_jobstore_get(js, "j2", 0, row), 0);
	assert_int_equal(row->state, FM_JOB_DONE);

	memset(&s, 0, sizeof(s));
	assert_int_equal(fmd_jobstore_list(js, -1, NULL, 10, collect, &s), 0);
	assert_int_equal(s.count, 3);
	assert_string_equal(s.ids[0], "j3"); /* newest first */
	memset(&s, 0, sizeof(s));
	assert_int_equal(
	        fmd_jobstore_list(js, FM_JOB_DONE, "sha256", 10, collect, &s),
	        0);
	assert_int_equal(s.count, 1);
	memset(&s, 0, sizeof(s));
	assert_int_equal(fmd_jobstore_foreach_unfinished(js, collect, &s), 0);
	assert_int_equal(s.count, 2);
	assert_string_equal(s.ids[0], "j1"); /* oldest first */
	assert_string_equal(s.ids[1], "j3");

	/* Finished before 5001: swept. Unfinished jobs never are. */
	assert_int_equal(fmd_jobstore_sweep(js, 5001), 1);
	assert_int_equal(fmd_jobstore_commit(js), 0);
	assert_int_equal(fmd_jobstore_get(js, "j2", 0, row), -ENOENT);
	assert_int_equal(fmd_jobstore_get(js, "j1", 0, row), 0);
	assert_int_equal(fmd_jobstore_sweep_oldest(js, &oldest), 0);

	/* The run journal: absent, started, finished, forgotten. */
	assert_int_equal(fmd_jobstore_run_get(js, "r1", "x", &run), -ENOENT);
	assert_int_equal(fmd_jobstore_run_start(js, "r1", "x", 100), 0);
	/* A journalled run expires from its start until it finishes. */
	assert_int_equal(fmd_jobstore_sweep_oldest(js, &oldest), 1);
	assert_int_equal(oldest, 100);
	assert_int_equal(fmd_jobstore_run_get(js, "r1", "x", &run), 0);
	assert_false(run.finished);
	fmd_run_row_clear(&run);
	assert_int_equal(fmd_jobstore_run_finish(js, "r1", "x", FM_JOB_DONE, 0,
	                                         (const uint8_t *)"ok", 2, NULL,
	                                         200),
	                 0);
	assert_int_equal(fmd_jobstore_run_get(js, "r1", "x", &run), 0);
	assert_true(run.finished);
	assert_int_equal(run.state, FM_JOB_DONE);
	assert_int_equal(run.output_len, 2);
	fmd_run_row_clear(&run);
	assert_int_equal(fmd_jobstore_run_get(js, "r1", "y", &run), -ENOENT);
	assert_int_equal(fmd_jobstore_run_forget(js, "r1", "x"), 0);
	assert_int_equal(fmd_jobstore_run_get(js, "r1", "x", &run), -ENOENT);

	fmd_jobstore_close(js);
	fmd_store_close(store);
	free(row);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[TEST_PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_durations_and_sizes),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_exec_service),
	        cmocka_unit_test(test_refusals),
	        cmocka_unit_test(test_too_many_services),
	        cmocka_unit_test(test_print_round_trip),
	        cmocka_unit_test(test_builtins),
	        cmocka_unit_test(test_jobstore),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
