/* /v1/jobs: the HTTP face of the durable job queue (jobs.c).
 *
 *   POST   /v1/jobs[?wait=S]      submit {service, input_b64, id?,
 *                                 timeout_ms?, idempotent?}
 *   GET    /v1/jobs[?state=&service=&limit=]
 *   GET    /v1/jobs/ID[?wait=S]   one job, with its output once final
 *   DELETE /v1/jobs/ID            cancel
 *
 * ?wait suspends the connection (MHD_suspend_connection) and registers a
 * waiter with jobs.c; the job's final update or the deadline resumes it
 * (MHD_resume_connection), and the handler, called again, answers. No
 * request polls. A suspended connection is one of the API's connection
 * slots, which bounds the waiters. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_jobs.h"
#include "jobs.h"
#include "log.h"

/* "2024-01-02T03:04:05.678Z" and its NUL. */
#define FMD_API_JOBS_TIME_MAX 32
#define FMD_API_JOBS_MESSAGE_MAX 512

#define FMD_API_JOBS_ALLOW_LIST "GET, HEAD, POST"
#define FMD_API_JOBS_ALLOW_ONE "GET, HEAD, DELETE"

typedef struct api_jobs_req {
	fmd_job_waiter w; /* first: the waiter is the request */
	fmd_api *api;
	fmd *d;
	struct MHD_Connection *conn;
	char id[FM_JOB_ID_MAX + 1];
	int suspended;
	int woken;
	/* The status of an answer with a job that is not final yet: 202 for
	 * a submission, 200 for GET. A final job is always 200, except a
	 * new submission answered at once (202). */
	unsigned status_pending;
	unsigned status_final;
	int commit; /* a submission: committed before it is answered */
} api_jobs_req;

int fmd_api_jobs_match(const char *url)
{
	size_t n = sizeof(FMD_API_JOBS_PATH) - 1;

	return strncmp(url, FMD_API_JOBS_PATH, n) == 0 &&
	       (url[n] == '\0' || url[n] == '/');
}

static int format_time_ms(int64_t unix_ms, char *out, size_t len)
{
	time_t t;
	struct tm tm;
	size_t n;

	if (unix_ms <= 0)
		return -EINVAL;
	t = (time_t)(unix_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL)
		return -EINVAL;
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0 || n + 6 > len)
		return -ENOSPC;
	snprintf(out + n, len - n, ".%03dZ", (int)(unix_ms % 1000));
	return 0;
}

static json_t *time_json(int64_t unix_ms)
{
	char text[FMD_API_JOBS_TIME_MAX];

	if (format_time_ms(unix_ms, text, sizeof(text)) != 0)
		return json_null();
	return json_string(text);
}

/* The stored attempts, with times as RFC 3339. */
static json_t *attempts_json(const char *stored)
{
	json_t *in = json_loads(stored, 0, NULL);
	json_t *out = json_array();
	size_t i;

	for (i = 0; out != NULL && i < json_array_size(in); i++) {
		json_t *a = json_array_get(in, i);
		json_t *end = json_object_get(a, "end_unix_ms");
		json_t *error = json_object_get(a, "error");
		json_t *o;

		o = json_pack("{s:O?, s:o, s:o, s:O?, s:O?}", "node_id",
		              json_object_get(a, "node_id"), "start",
		              time_json(json_integer_value(
		                      json_object_get(a, "start_unix_ms"))),
		              "end",
		              json_is_integer(end)
		                      ? time_json(json_integer_value(end))
		                      : json_null(),
		              "outcome", json_object_get(a, "outcome"), "error",
		              json_is_string(error) ? error : NULL);
		if (o == NULL || json_array_append_new(out, o) != 0) {
			json_decref(out);
			out = NULL;
		}
	}
	json_decref(in);
	return out;
}

static const char *state_text(enum fm_job_state s)
{
	static const char *const names[FM_JOB_STATE_COUNT] = {
	        "queued", "dispatched", "running",  "done",
	        "failed", "timed_out",  "cancelled"};

	return (int)s >= 0 && s < FM_JOB_STATE_COUNT ? names[s] : "failed";
}

/* The job object. The output is there once the job is final. */
static json_t *job_json(const fmd_job_row *row, int with_output)
{
	json_t *o;
	char *b64 = NULL;

	o = json_pack(
	        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:b, s:I}", "id", row->id,
	        "service", row->service, "state", state_text(row->state),
	        "created_at", time_json(row->created_unix_ms), "updated_at",
	        time_json(row->updated_unix_ms), "finished_at",
	        row->finished_unix_ms > 0 ? time_json(row->finished_unix_ms)
	                                  : json_null(),
	        "timeout_ms", (json_int_t)row->timeout_ms, "idempotent",
	        row->idempotent, "input_len", (json_int_t)row->input_len);
	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "ran_on",
	                        row->ran_on[0] != '\0'
	                                ? json_string(row->ran_on)
	                                : json_null()) != 0 ||
	    json_object_set_new(o, "exit_status",
	                        row->has_exit_status
	                                ? json_integer(row->exit_status)
	                                : json_null()) != 0 ||
	    json_object_set_new(o, "error",
	                        row->error[0] != '\0' ? json_string(row->error)
	                                              : json_null()) != 0 ||
	    json_object_set_new(o, "attempts",
	                        attempts_json(row->attempts_json)) != 0)
		goto fail;
	if (row->has_output &&
	    json_object_set_new(o, "output_len",
	                        json_integer((json_int_t)row->output_len)) != 0)
		goto fail;
	if (with_output && row->has_output) {
		size_t len = sodium_base64_encoded_len(
		        row->output_len, sodium_base64_VARIANT_ORIGINAL);

		b64 = malloc(len);
		if (b64 == NULL)
			goto fail;
		sodium_bin2base64(
		        b64, len,
		        row->output != NULL ? row->output : (const uint8_t *)"",
		        row->output_len, sodium_base64_VARIANT_ORIGINAL);
		if (json_object_set_new(o, "output_b64",
		                        json_stringn_nocheck(b64, len - 1)) !=
		    0)
			goto fail;
		free(b64);
	}
	return o;
fail:
	free(b64);
	json_decref(o);
	return NULL;
}

/* Answers with the job id as the store has it now. */
static enum MHD_Result answer_job(fmd_api *api, fmd *d,
                                  struct MHD_Connection *conn, const char *id,
                                  unsigned status_pending,
                                  unsigned status_final, int commit)
{
	fmd_job_row *row;
	enum MHD_Result ret;
	int rc;

	/* A submission is answered only once it is durable. */
	if (commit && (rc = fmd_jobs_commit(d)) < 0) {
		fmd_log_ids(FM_LOG_ERROR, "api", NULL, id,
		            "cannot commit the job queue: %s", strerror(-rc));
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		        "cannot store the job now", NULL);
	}
	row = calloc(1, sizeof(*row));
	if (row == NULL)
		return fmd_api_respond_error(api, conn, 500, "internal",
		                             "out of memory", NULL);
	rc = fmd_jobs_get(d, id, 1, row);
	if (rc == -ENOENT) {
		ret = fmd_api_respond_error(api, conn, MHD_HTTP_NOT_FOUND,
		                            "not_found", "no such job", NULL);
		goto cleanup;
	}
	if (rc < 0) {
		ret = fmd_api_respond_error(api, conn, 500, "internal",
		                            "cannot read the job", NULL);
		goto cleanup;
	}
	ret = fmd_api_respond_json(
	        api, conn,
	        fmd_job_state_final(row->state) ? status_final : status_pending,
	        job_json(row, fmd_job_state_final(row->state)));
cleanup:
	fmd_job_row_clear(row);
	free(row);
	return ret;
}

/* ?wait=SECONDS: 0 to FMD_API_JOBS_WAIT_MAX_S, fractions allowed; absent
 * is 0. -EINVAL otherwise. */
static int wait_arg(struct MHD_Connection *conn, uint64_t *ms)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
	                                            "wait");
	char *end;
	double s;

	*ms = 0;
	if (v == NULL)
		return 0;
	errno = 0;
	s = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(s >= 0) ||
	    s > FMD_API_JOBS_WAIT_MAX_S)
		return -EINVAL;
	*ms = (uint64_t)(s * 1000.0 + 0.5);
	return 0;
}

static void on_wake(fmd_job_waiter *w)
{
	api_jobs_req *req = (api_jobs_req *)w;

	req->woken = 1;
	if (req->suspended) {
		req->suspended = 0;
		MHD_resume_connection(req->conn);
		fmd_api_kick(req->api);
	}
}

/* Suspends the request until the job ends or wait_ms passes. Returns 1
 * when suspended, 0 when the job is not active (answer now). */
static int wait_for(fmd_api *api, fmd *d, struct MHD_Connection *conn,
                    const char *id, uint64_t wait_ms, unsigned status_pending,
                    unsigned status_final, int commit, void **state)
{
	api_jobs_req *req = *state;

	if (req == NULL) {
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return 0;
		*state = req;
	}
	req->api = api;
	req->d = d;
	req->conn = conn;
	req->w.wake = on_wake;
	req->status_pending = status_pending;
	req->status_final = status_final;
	req->commit = commit;
	snprintf(req->id, sizeof(req->id), "%s", id);
	if (fmd_jobs_wait(d, id, fmd_now_ms(d) + wait_ms, &req->w) != 0)
		return 0;
	req->suspended = 1;
	MHD_suspend_connection(conn);
	return 1;
}

/* The service name rules of the protocol: [a-z0-9_.-], 1 to 32 bytes. */
static int service_valid(const char *s)
{
	size_t len = strlen(s);
	size_t i;

	if (len == 0 || len > FM_SERVICE_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '.' || s[i] == '-'))
			return 0;
	return 1;
}

static enum MHD_Result bad_request(fmd_api *api, struct MHD_Connection *conn,
                                   const char *msg)
{
	return fmd_api_respond_error(api, conn, MHD_HTTP_BAD_REQUEST,
	                             "bad_request", msg, NULL);
}

static enum MHD_Result too_large(fmd_api *api, fmd *d,
                                 struct MHD_Connection *conn)
{
	char msg[FMD_API_JOBS_MESSAGE_MAX];

	snprintf(msg, sizeof(msg),
	         "input larger than this node accepts ([jobs] input_max = "
	         "%" PRIu64 " bytes)",
	         fmd_jobs_input_max(d));
	return fmd_api_respond_error(api, conn, MHD_HTTP_CONTENT_TOO_LARGE,
	                             "payload_too_large", msg, NULL);
}

int fmd_api_jobs_parse_submit(const char *body, size_t body_len,
                              uint64_t input_max, fmd_job_request *req,
                              uint8_t **input, char *msg, size_t msg_len)
{
	json_error_t jerr;
	json_t *root = NULL;
	json_t *v;
	const char *key;
	uint8_t *buf = NULL;
	size_t input_len = 0;
	const char *b64 = "";
	size_t b64_len = 0;
	int rc = 0;

	memset(req, 0, sizeof(*req));
	*input = NULL;
	if (body == NULL || body_len == 0) {
		snprintf(msg, msg_len,
		         "the body must be JSON: {\"service\": "
		         "\"NAME\", \"input_b64\": \"...\"}");
		return -EINVAL;
	}
	root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		snprintf(msg, msg_len,
		         "the body is not a JSON object (line %d column %d)",
		         jerr.line, jerr.column);
		rc = -EINVAL;
		goto cleanup;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "service") == 0 && json_is_string(v) &&
		    json_string_length(v) < sizeof(req->service) &&
		    service_valid(json_string_value(v))) {
			snprintf(req->service, sizeof(req->service), "%s",
			         json_string_value(v));
		} else if (strcmp(key, "input_b64") == 0 && json_is_string(v)) {
			b64 = json_string_value(v);
			b64_len = json_string_length(v);
		} else if (strcmp(key, "id") == 0 && json_is_string(v) &&
		           json_string_length(v) < sizeof(req->id) &&
		           fmd_job_id_valid(json_string_value(v))) {
			snprintf(req->id, sizeof(req->id), "%s",
			         json_string_value(v));
		} else if (strcmp(key, "timeout_ms") == 0 &&
		           json_is_integer(v) && json_integer_value(v) > 0 &&
		           (uint64_t)json_integer_value(v) <=
		                   FMD_JOBS_TIMEOUT_MAX_MS) {
			req->timeout_ms = (uint64_t)json_integer_value(v);
		} else if (strcmp(key, "idempotent") == 0 &&
		           json_is_boolean(v)) {
			req->idempotent = json_is_true(v);
		} else {
			snprintf(msg, msg_len,
			         "bad or unknown field \"%.64s\": service is "
			         "[a-z0-9_.-]{1,32}; id is "
			         "[A-Za-z0-9._-]{1,64}, "
			         "not starting with '.'; input_b64 is base64; "
			         "timeout_ms is 1 to %llu; idempotent is a "
			         "boolean",
			         key,
			         (unsigned long long)FMD_JOBS_TIMEOUT_MAX_MS);
			rc = -EINVAL;
			goto cleanup;
		}
	}
	if (req->service[0] == '\0') {
		snprintf(msg, msg_len, "\"service\" is missing");
		rc = -EINVAL;
		goto cleanup;
	}
	/* Decoded size from the text's size, before any allocation. */
	if (b64_len / 4 * 3 > input_max + 2) {
		rc = -EMSGSIZE;
		goto cleanup;
	}
	if (b64_len > 0) {
		buf = malloc(b64_len / 4 * 3 + 3);
		if (buf == NULL) {
			rc = -ENOMEM;
			goto cleanup;
		}
		if (sodium_base642bin(buf, b64_len / 4 * 3 + 3, b64, b64_len,
		                      NULL, &input_len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 &&
		    sodium_base642bin(
		            buf, b64_len / 4 * 3 + 3, b64, b64_len, NULL,
		            &input_len, NULL,
		            sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
			snprintf(msg, msg_len, "input_b64 is not valid base64");
			rc = -EINVAL;
			goto cleanup;
		}
	}
	if (input_len > input_max) {
		rc = -EMSGSIZE;
		goto cleanup;
	}
	*input = buf;
	req->input = buf;
	req->input_len = input_len;
	buf = NULL;
cleanup:
	if (buf != NULL) {
		sodium_memzero(buf, b64_len / 4 * 3 + 3);
		free(buf);
	}
	json_decref(root);
	return rc;
}

static enum MHD_Result post_job(fmd_api *api, fmd *d,
                                struct MHD_Connection *conn, const char *body,
                                size_t body_len, void **state)
{
	char msg[FMD_API_JOBS_MESSAGE_MAX];
	fmd_job_request req;
	uint8_t *input = NULL;
	uint64_t wait_ms;
	enum MHD_Result ret;
	int rc;

	memset(&req, 0, sizeof(req));
	if (wait_arg(conn, &wait_ms) != 0)
		return bad_request(api, conn,
		                   "wait must be a number of seconds from 0 "
		                   "to 300");
	rc = fmd_api_jobs_parse_submit(body, body_len, fmd_jobs_input_max(d),
	                               &req, &input, msg, sizeof(msg));
	if (rc == -EMSGSIZE)
		return too_large(api, d, conn);
	if (rc == -ENOMEM)
		return fmd_api_respond_error(api, conn, 500, "internal",
		                             "out of memory", NULL);
	if (rc != 0)
		return bad_request(api, conn, msg);
	rc = fmd_jobs_submit(d, &req);
	if (rc == -EMSGSIZE) {
		ret = too_large(api, d, conn);
		goto cleanup;
	}
	if (rc == -EINVAL) {
		ret = bad_request(api, conn, "invalid job");
		goto cleanup;
	}
	if (rc == -EAGAIN) {
		ret = fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		        "too_many_jobs",
		        "too many unfinished jobs ([limits] jobs_pending_max); "
		        "retry later",
		        NULL);
		goto cleanup;
	}
	if (rc < 0) {
		fmd_log_ids(FM_LOG_ERROR, "api", NULL, req.id,
		            "cannot queue a job: %s", strerror(-rc));
		ret = fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		        "cannot queue the job now", NULL);
		goto cleanup;
	}
	/* A new job: 202 unless it finished within the wait. The same ID
	 * again: 200 with the job it names. Even without ?wait the answer
	 * waits for the loop's next turn: the jobs submitted meanwhile are
	 * committed together (group commit), and none is answered before. */
	if (wait_for(api, d, conn, req.id, wait_ms, rc == 0 ? 202 : 200,
	             rc == 0 && wait_ms == 0 ? 202 : 200, 1, state)) {
		ret = MHD_YES;
		goto cleanup;
	}
	ret = answer_job(api, d, conn, req.id, rc == 0 ? 202 : 200,
	                 rc == 0 && wait_ms == 0 ? 202 : 200, 1);
cleanup:
	if (input != NULL) {
		sodium_memzero(input, req.input_len);
		free(input);
	}
	return ret;
}

typedef struct list_ctx {
	json_t *list;
	int failed;
} list_ctx;

static int list_add(void *ctx, const fmd_job_row *row)
{
	list_ctx *l = ctx;

	if (json_array_append_new(l->list, job_json(row, 0)) != 0) {
		l->failed = 1;
		return 1;
	}
	return 0;
}

static enum MHD_Result list_jobs(fmd_api *api, fmd *d,
                                 struct MHD_Connection *conn)
{
	const char *state = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "state");
	const char *service = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "service");
	const char *limit_text = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "limit");
	enum fm_job_state st = FM_JOB_QUEUED;
	list_ctx l = {0};
	unsigned long limit = FMD_API_JOBS_LIST_DEFAULT;
	char *end;
	int rc;

	if (state != NULL && fmd_job_state_parse(state, &st) != 0)
		return bad_request(api, conn,
		                   "state is one of queued, dispatched, "
		                   "running, done, failed, timed_out, "
		                   "cancelled");
	if (service != NULL && !service_valid(service))
		return bad_request(api, conn, "service is [a-z0-9_.-]{1,32}");
	if (limit_text != NULL) {
		errno = 0;
		limit = strtoul(limit_text, &end, 10);
		if (errno != 0 || end == limit_text || *end != '\0' ||
		    limit == 0 || limit > FMD_API_JOBS_LIST_MAX)
			return bad_request(api, conn,
			                   "limit is 1 to 1000 (default 100)");
	}
	l.list = json_array();
	if (l.list == NULL)
		return fmd_api_respond_error(api, conn, 500, "internal",
		                             "out of memory", NULL);
	rc = fmd_jobs_list(d, state != NULL ? (int)st : -1, service,
	                   (size_t)limit, list_add, &l);
	if (rc < 0 || l.failed) {
		json_decref(l.list);
		return fmd_api_respond_error(api, conn, 500, "internal",
		                             "cannot list the jobs", NULL);
	}
	return fmd_api_respond_json(api, conn, MHD_HTTP_OK, l.list);
}

static enum MHD_Result cancel_job(fmd_api *api, fmd *d,
                                  struct MHD_Connection *conn, const char *id)
{
	char msg[FMD_API_JOBS_MESSAGE_MAX];
	int rc = fmd_jobs_cancel(d, id);

	if (rc == -ENOENT)
		return fmd_api_respond_error(api, conn, MHD_HTTP_NOT_FOUND,
		                             "not_found", "no such job", NULL);
	if (rc == -EALREADY) {
		snprintf(msg, sizeof(msg), "job %s has finished already", id);
		return fmd_api_respond_error(api, conn, MHD_HTTP_CONFLICT,
		                             "finished", msg, NULL);
	}
	if (rc < 0)
		return fmd_api_respond_error(api, conn, 500, "internal",
		                             "cannot cancel the job", NULL);
	return answer_job(api, d, conn, id, 202, 200, 0);
}

enum MHD_Result fmd_api_jobs_request(fmd_api *api, fmd *d,
                                     struct MHD_Connection *conn,
                                     const char *method, const char *url,
                                     const char *body, size_t body_len,
                                     void **state)
{
	api_jobs_req *req = *state;
	const char *id = NULL;
	int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	             strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	uint64_t wait_ms;

	/* Called again after a resume: the answer is the job as it is. */
	if (req != NULL && req->woken) {
		req->woken = 0;
		return answer_job(api, d, conn, req->id, req->status_pending,
		                  req->status_final, req->commit);
	}
	if (d->jobs == NULL)
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		        "jobs are not running", NULL);
	if (url[sizeof(FMD_API_JOBS_PATH) - 1] == '/') {
		id = url + sizeof(FMD_API_JOBS_PATH);
		if (!fmd_job_id_valid(id))
			return fmd_api_respond_error(
			        api, conn, MHD_HTTP_NOT_FOUND, "not_found",
			        "no such job", NULL);
	}
	if (id == NULL) {
		if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
			return post_job(api, d, conn, body, body_len, state);
		if (is_get)
			return list_jobs(api, d, conn);
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		        "method_not_allowed",
		        "/v1/jobs takes GET (list) and POST (submit)",
		        FMD_API_JOBS_ALLOW_LIST);
	}
	if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0)
		return cancel_job(api, d, conn, id);
	if (!is_get)
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		        "method_not_allowed",
		        "/v1/jobs/ID takes GET (show) and DELETE (cancel)",
		        FMD_API_JOBS_ALLOW_ONE);
	if (wait_arg(conn, &wait_ms) != 0)
		return bad_request(api, conn,
		                   "wait must be a number of seconds from 0 "
		                   "to 300");
	if (wait_ms > 0 &&
	    wait_for(api, d, conn, id, wait_ms, 200, 200, 0, state))
		return MHD_YES;
	return answer_job(api, d, conn, id, 200, 200, 0);
}

void fmd_api_jobs_request_done(void *state)
{
	api_jobs_req *req = state;

	if (req == NULL)
		return;
	if (req->w.job != NULL)
		fmd_jobs_unwait(req->d, &req->w);
	free(req);
}

void fmd_api_jobs_stop(fmd *d)
{
	fmd_jobs_wake_all(d);
}
