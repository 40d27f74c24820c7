/* SQL of the durable job queue, kept out of store.c (which owns the
 * connection and the migrations) because it is the one part of the store
 * on the hot path: a job costs one committed insert before its 202 and a
 * few batched updates after. The statements are prepared once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "jobstore.h"
#include "log.h"

enum {
	ST_BEGIN = 0,
	ST_COMMIT,
	ST_INSERT,
	ST_PROGRESS,
	ST_FINISH,
	ST_GET,
	ST_GET_OUTPUT,
	ST_RUN_GET,
	ST_RUN_START,
	ST_RUN_FINISH,
	ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
        [ST_BEGIN] = "BEGIN",
        [ST_COMMIT] = "COMMIT",
        [ST_INSERT] = "INSERT INTO jobs (id, service, input, timeout_ms,"
                      " idempotent, state, created_unix_ms, updated_unix_ms)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        [ST_PROGRESS] = "UPDATE jobs SET state = ?2, updated_unix_ms = ?3,"
                        " ran_on = coalesce(?4, ran_on),"
                        " attempts = coalesce(?5, attempts)"
                        " WHERE id = ?1 AND finished_unix_ms = 0",
        [ST_FINISH] = "UPDATE jobs SET state = ?2, updated_unix_ms = ?3,"
                      " finished_unix_ms = ?3, output = ?4,"
                      " exit_status = ?5, ran_on = ?6, error = ?7,"
                      " attempts = ?8 WHERE id = ?1",
        [ST_GET] = "SELECT id, service, state, timeout_ms, idempotent,"
                   " created_unix_ms, updated_unix_ms, finished_unix_ms,"
                   " length(input), output IS NOT NULL, length(output),"
                   " exit_status, ran_on, error, attempts"
                   " FROM jobs WHERE id = ?1",
        [ST_GET_OUTPUT] = "SELECT output FROM jobs WHERE id = ?1",
        [ST_RUN_GET] = "SELECT finished_unix_ms, state, exit_status,"
                       " output, error FROM job_runs"
                       " WHERE id = ?1 AND service = ?2",
        [ST_RUN_START] = "INSERT OR REPLACE INTO job_runs (id, service,"
                         " started_unix_ms) VALUES (?1, ?2, ?3)",
        [ST_RUN_FINISH] = "UPDATE job_runs SET finished_unix_ms = ?3,"
                          " state = ?4, exit_status = ?5, output = ?6,"
                          " error = ?7 WHERE id = ?1 AND service = ?2",
};

/* Columns of ST_GET and of the list query, in this order. */
#define FMD_JOBSTORE_ROW_COLUMNS                                           \
	"id, service, state, timeout_ms, idempotent, created_unix_ms,"     \
	" updated_unix_ms, finished_unix_ms, length(input),"               \
	" output IS NOT NULL, length(output), exit_status, ran_on, error," \
	" attempts"

/* Names as the API shows them; the index is enum fm_job_state. */
static const char *const state_names[FM_JOB_STATE_COUNT] = {
        "queued", "dispatched", "running",  "done",
        "failed", "timed_out",  "cancelled"};

struct fmd_jobstore {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	int in_batch;
	void (*on_batch)(void *ctx);
	void *ctx;
};

static int errno_from_sqlite(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

int fmd_job_state_parse(const char *name, enum fm_job_state *out)
{
	int i;

	for (i = 0; i < FM_JOB_STATE_COUNT; i++)
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum fm_job_state)i;
			return 0;
		}
	return -EINVAL;
}

int fmd_job_state_final(enum fm_job_state state)
{
	return state == FM_JOB_DONE || state == FM_JOB_FAILED ||
	       state == FM_JOB_TIMED_OUT || state == FM_JOB_CANCELLED;
}

static const char *state_name(enum fm_job_state state)
{
	if ((int)state < 0 || state >= FM_JOB_STATE_COUNT)
		return "failed";
	return state_names[state];
}

/* Runs a prepared statement to completion and resets it. */
static int step_done(fmd_jobstore *js, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);

	if (rc != SQLITE_DONE && ret == 0)
		ret = -EIO;
	if (ret < 0 && ret != -EEXIST)
		fmd_log(FM_LOG_WARN, "jobs", "store: %s",
		        sqlite3_errmsg(js->db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int fmd_jobstore_open(fmd_store *store, void (*on_batch)(void *ctx), void *ctx,
                      fmd_jobstore **out)
{
	fmd_jobstore *js;
	int i;
	int rc;

	*out = NULL;
	if (fmd_store_db(store) == NULL)
		return -EINVAL;
	js = calloc(1, sizeof(*js));
	if (js == NULL)
		return -ENOMEM;
	js->db = fmd_store_db(store);
	js->on_batch = on_batch;
	js->ctx = ctx;
	for (i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(js->db, sql_text[i], -1,
		                        SQLITE_PREPARE_PERSISTENT, &js->st[i],
		                        NULL);
		if (rc != SQLITE_OK) {
			fmd_log(FM_LOG_ERROR, "jobs", "store: %s: %s",
			        sql_text[i], sqlite3_errmsg(js->db));
			fmd_jobstore_close(js);
			return errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc)
			                                 : -EIO;
		}
	}
	*out = js;
	return 0;
}

void fmd_jobstore_close(fmd_jobstore *js)
{
	int i;

	if (js == NULL)
		return;
	if (js->st[ST_COMMIT] != NULL)
		fmd_jobstore_commit(js);
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(js->st[i]);
	free(js);
}

int fmd_jobstore_commit(fmd_jobstore *js)
{
	int rc;

	if (js == NULL || !js->in_batch)
		return 0;
	js->in_batch = 0;
	rc = step_done(js, js->st[ST_COMMIT]);
	if (rc < 0) {
		/* Leave no half-open transaction behind. */
		sqlite3_exec(js->db, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}

int fmd_jobstore_pending(const fmd_jobstore *js)
{
	return js != NULL && js->in_batch;
}

static int batch_begin(fmd_jobstore *js)
{
	int rc;

	if (js->in_batch)
		return 0;
	rc = step_done(js, js->st[ST_BEGIN]);
	if (rc < 0)
		return rc;
	js->in_batch = 1;
	if (js->on_batch != NULL)
		js->on_batch(js->ctx);
	return 0;
}

static void bind_text_or_null(sqlite3_stmt *st, int idx, const char *text)
{
	if (text != NULL && text[0] != '\0')
		sqlite3_bind_text(st, idx, text, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, idx);
}

int fmd_jobstore_insert(fmd_jobstore *js, const fmd_job_row *row,
                        const uint8_t *input, size_t input_len)
{
	sqlite3_stmt *st = js->st[ST_INSERT];
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row->service, -1, SQLITE_STATIC);
	/* zeroblob for an empty input: NOT NULL holds. */
	if (input_len > 0)
		sqlite3_bind_blob64(st, 3, input, input_len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(st, 3, 0);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)row->timeout_ms);
	sqlite3_bind_int(st, 5, row->idempotent ? 1 : 0);
	sqlite3_bind_text(st, 6, state_name(row->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, row->created_unix_ms);
	return step_done(js, st);
}

int fmd_jobstore_progress(fmd_jobstore *js, const char *id,
                          enum fm_job_state state, int64_t now_unix_ms,
                          const char *ran_on, const char *attempts_json)
{
	sqlite3_stmt *st = js->st[ST_PROGRESS];
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, state_name(state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_unix_ms);
	bind_text_or_null(st, 4, ran_on);
	bind_text_or_null(st, 5, attempts_json);
	return step_done(js, st);
}

int fmd_jobstore_finish(fmd_jobstore *js, const fmd_job_row *row)
{
	sqlite3_stmt *st = js->st[ST_FINISH];
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, state_name(row->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, row->finished_unix_ms);
	if (row->has_output && row->output_len > 0)
		sqlite3_bind_blob64(st, 4, row->output, row->output_len,
		                    SQLITE_STATIC);
	else if (row->has_output)
		sqlite3_bind_zeroblob(st, 4, 0);
	else
		sqlite3_bind_null(st, 4);
	if (row->has_exit_status)
		sqlite3_bind_int(st, 5, row->exit_status);
	else
		sqlite3_bind_null(st, 5);
	bind_text_or_null(st, 6, row->ran_on);
	bind_text_or_null(st, 7, row->error);
	sqlite3_bind_text(st, 8,
	                  row->attempts_json[0] != '\0' ? row->attempts_json
	                                                : "[]",
	                  -1, SQLITE_STATIC);
	return step_done(js, st);
}

static void column_copy(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const unsigned char *text = sqlite3_column_text(st, col);
	size_t len;

	dst[0] = '\0';
	if (text == NULL)
		return;
	len = (size_t)sqlite3_column_bytes(st, col);
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, text, len);
	dst[len] = '\0';
}

/* Reads the columns of FMD_JOBSTORE_ROW_COLUMNS (no output). */
static void row_read(sqlite3_stmt *st, fmd_job_row *row)
{
	char state[16];

	memset(row, 0, sizeof(*row));
	column_copy(st, 0, row->id, sizeof(row->id));
	column_copy(st, 1, row->service, sizeof(row->service));
	column_copy(st, 2, state, sizeof(state));
	if (fmd_job_state_parse(state, &row->state) != 0)
		row->state = FM_JOB_FAILED;
	row->timeout_ms = (uint64_t)sqlite3_column_int64(st, 3);
	row->idempotent = sqlite3_column_int(st, 4);
	row->created_unix_ms = sqlite3_column_int64(st, 5);
	row->updated_unix_ms = sqlite3_column_int64(st, 6);
	row->finished_unix_ms = sqlite3_column_int64(st, 7);
	row->input_len = (size_t)sqlite3_column_int64(st, 8);
	row->has_output = sqlite3_column_int(st, 9);
	row->output_len = (size_t)sqlite3_column_int64(st, 10);
	row->has_exit_status = sqlite3_column_type(st, 11) != SQLITE_NULL;
	row->exit_status = sqlite3_column_int(st, 11);
	column_copy(st, 12, row->ran_on, sizeof(row->ran_on));
	column_copy(st, 13, row->error, sizeof(row->error));
	column_copy(st, 14, row->attempts_json, sizeof(row->attempts_json));
}

void fmd_job_row_clear(fmd_job_row *row)
{
	if (row == NULL)
		return;
	free(row->output);
	row->output = NULL;
}

int fmd_jobstore_get(fmd_jobstore *js, const char *id, int with_output,
                     fmd_job_row *row)
{
	sqlite3_stmt *st = js->st[ST_GET];
	const void *blob;
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		row_read(st, row);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return errno_from_sqlite(rc) < 0 ? errno_from_sqlite(rc) : -EIO;
	if (!with_output || !row->has_output || row->output_len == 0)
		return 0;
	st = js->st[ST_GET_OUTPUT];
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		blob = sqlite3_column_blob(st, 0);
		row->output_len = (size_t)sqlite3_column_bytes(st, 0);
		row->output = malloc(row->output_len);
		if (row->output != NULL && blob != NULL)
			memcpy(row->output, blob, row->output_len);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW)
		return -EIO;
	return row->output != NULL ? 0 : -ENOMEM;
}

int fmd_jobstore_list(fmd_jobstore *js, int state, const char *service,
                      size_t limit,
                      int (*cb)(void *ctx, const fmd_job_row *row), void *ctx)
{
	static const char sql[] =
	        "SELECT " FMD_JOBSTORE_ROW_COLUMNS " FROM jobs"
	        " WHERE (?1 IS NULL OR state = ?1)"
	        " AND (?2 IS NULL OR service = ?2)"
	        " ORDER BY created_unix_ms DESC, id LIMIT ?3";
	sqlite3_stmt *st = NULL;
	fmd_job_row *row;
	int ret = 0;
	int rc;

	row = malloc(sizeof(*row));
	if (row == NULL)
		return -ENOMEM;
	rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		ret = -EIO;
		goto cleanup;
	}
	if (state >= 0)
		sqlite3_bind_text(st, 1, state_name((enum fm_job_state)state),
		                  -1, SQLITE_STATIC);
	if (service != NULL)
		sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_read(st, row);
		ret = cb(ctx, row);
		if (ret != 0)
			goto cleanup;
	}
	if (rc != SQLITE_DONE)
		ret = -EIO;
cleanup:
	sqlite3_finalize(st);
	free(row);
	return ret;
}

int fmd_jobstore_foreach_unfinished(fmd_jobstore *js,
                                    int (*cb)(void *ctx,
                                              const fmd_job_row *row),
                                    void *ctx)
{
	static const char sql[] = "SELECT " FMD_JOBSTORE_ROW_COLUMNS
	                          " FROM jobs WHERE finished_unix_ms = 0"
	                          " ORDER BY created_unix_ms, id";
	sqlite3_stmt *st = NULL;
	fmd_job_row *row;
	int ret = 0;
	int rc;

	row = malloc(sizeof(*row));
	if (row == NULL)
		return -ENOMEM;
	rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		ret = -EIO;
		goto cleanup;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_read(st, row);
		ret = cb(ctx, row);
		if (ret != 0)
			goto cleanup;
	}
	if (rc != SQLITE_DONE)
		ret = -EIO;
cleanup:
	sqlite3_finalize(st);
	free(row);
	return ret;
}

int fmd_jobstore_get_input(fmd_jobstore *js, const char *id, uint8_t **input,
                           size_t *input_len)
{
	static const char sql[] = "SELECT input FROM jobs WHERE id = ?1";
	sqlite3_stmt *st = NULL;
	int ret = 0;
	int rc;

	*input = NULL;
	*input_len = 0;
	rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t len = (size_t)sqlite3_column_bytes(st, 0);

		if (len > 0) {
			*input = malloc(len);
			if (*input == NULL)
				ret = -ENOMEM;
			else
				memcpy(*input, sqlite3_column_blob(st, 0), len);
			*input_len = *input != NULL ? len : 0;
		}
	} else {
		ret = rc == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(st);
	return ret;
}

int fmd_jobstore_sweep_oldest(fmd_jobstore *js, int64_t *oldest_unix_ms)
{
	/* The same rows as fmd_jobstore_sweep()'s conditions. */
	static const char sql[] =
	        "SELECT MIN(t) FROM ("
	        "SELECT MIN(finished_unix_ms) AS t FROM jobs"
	        " WHERE finished_unix_ms > 0"
	        " UNION ALL SELECT MIN(CASE WHEN finished_unix_ms > 0"
	        " THEN finished_unix_ms ELSE started_unix_ms END) FROM "
	        "job_runs)";
	sqlite3_stmt *st = NULL;
	int rc, ret;

	rc = sqlite3_prepare_v2(js->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = -EIO;
	} else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		ret = 0;
	} else {
		*oldest_unix_ms = sqlite3_column_int64(st, 0);
		ret = 1;
	}
	sqlite3_finalize(st);
	return ret;
}

int fmd_jobstore_sweep(fmd_jobstore *js, int64_t before_unix_ms)
{
	static const char *const sql[] = {
	        "DELETE FROM jobs WHERE finished_unix_ms > 0"
	        " AND finished_unix_ms < ?1",
	        /* Interrupted runs too, once as old: the journal only has
	         * to outlive the retries of their jobs. */
	        "DELETE FROM job_runs WHERE (finished_unix_ms > 0"
	        " AND finished_unix_ms < ?1)"
	        " OR (finished_unix_ms = 0 AND started_unix_ms < ?1)"};
	sqlite3_stmt *st = NULL;
	int total = 0;
	size_t i;
	int rc;

	rc = batch_begin(js);
	if (rc < 0)
		return rc;
	for (i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		rc = sqlite3_prepare_v2(js->db, sql[i], -1, &st, NULL);
		if (rc != SQLITE_OK)
			return -EIO;
		sqlite3_bind_int64(st, 1, before_unix_ms);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return -EIO;
		total += sqlite3_changes(js->db);
	}
	return total;
}

int fmd_jobstore_run_get(fmd_jobstore *js, const char *id, const char *service,
                         fmd_run_row *row)
{
	sqlite3_stmt *st = js->st[ST_RUN_GET];
	char state[16];
	int ret = 0;
	int rc;

	memset(row, 0, sizeof(*row));
	row->exit_status = -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		row->finished = sqlite3_column_int64(st, 0) > 0;
		column_copy(st, 1, state, sizeof(state));
		if (fmd_job_state_parse(state, &row->state) != 0)
			row->state = FM_JOB_FAILED;
		if (sqlite3_column_type(st, 2) != SQLITE_NULL)
			row->exit_status = sqlite3_column_int(st, 2);
		row->output_len = (size_t)sqlite3_column_bytes(st, 3);
		if (row->output_len > 0) {
			row->output = malloc(row->output_len);
			if (row->output == NULL)
				ret = -ENOMEM;
			else
				memcpy(row->output, sqlite3_column_blob(st, 3),
				       row->output_len);
		}
		column_copy(st, 4, row->error, sizeof(row->error));
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	} else {
		ret = -EIO;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int fmd_jobstore_run_start(fmd_jobstore *js, const char *id,
                           const char *service, int64_t now_unix_ms)
{
	sqlite3_stmt *st = js->st[ST_RUN_START];
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_unix_ms);
	return step_done(js, st);
}

int fmd_jobstore_run_finish(fmd_jobstore *js, const char *id,
                            const char *service, enum fm_job_state state,
                            int exit_status, const uint8_t *output,
                            size_t output_len, const char *error,
                            int64_t now_unix_ms)
{
	sqlite3_stmt *st = js->st[ST_RUN_FINISH];
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_unix_ms);
	sqlite3_bind_text(st, 4, state_name(state), -1, SQLITE_STATIC);
	if (exit_status >= 0)
		sqlite3_bind_int(st, 5, exit_status);
	else
		sqlite3_bind_null(st, 5);
	if (output_len > 0)
		sqlite3_bind_blob64(st, 6, output, output_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	bind_text_or_null(st, 7, error);
	return step_done(js, st);
}

int fmd_jobstore_run_forget(fmd_jobstore *js, const char *id,
                            const char *service)
{
	static const char sql[] =
	        "DELETE FROM job_runs WHERE id = ?1 AND service = ?2";
	sqlite3_stmt *st = NULL;
	int rc = batch_begin(js);

	if (rc < 0)
		return rc;
	if (sqlite3_prepare_v2(js->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

void fmd_run_row_clear(fmd_run_row *row)
{
	if (row == NULL)
		return;
	free(row->output);
	row->output = NULL;
}
