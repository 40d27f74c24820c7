/* The /v1/jobs routes of the local HTTP API: submit, show, list and cancel
 * jobs, and long-poll for a result (?wait=SECONDS) with
 * MHD_suspend_connection / MHD_resume_connection driven by the job's
 * updates, never by polling. api.c dispatches every request under
 * /v1/jobs here after its Host and token checks, with the whole body. */
#ifndef FMD_API_JOBS_H
#define FMD_API_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api.h"
#include "fedmesh/fedmesh.h"

#define FMD_API_JOBS_PATH "/v1/jobs"
/* A body carries an input of up to FM_JOB_INPUT_MAX bytes in base64, and
 * a few small fields. */
#define FMD_API_JOBS_BODY_MAX_BYTES \
	((size_t)4 * ((FM_JOB_INPUT_MAX + 2) / 3) + 64 * 1024)
/* Longest ?wait=, in seconds. */
#define FMD_API_JOBS_WAIT_MAX_S 300
/* Entries in one GET /v1/jobs answer: default and most. */
#define FMD_API_JOBS_LIST_DEFAULT 100
#define FMD_API_JOBS_LIST_MAX 1000

/* Parses the body of POST /v1/jobs (the fuzz harness calls it too):
 * fills req (service, id, timeout_ms, idempotent, input) and sets *input
 * to the decoded input, which the caller frees (NULL when empty). Returns
 * 0; -EINVAL with the client's error message in msg; -EMSGSIZE when the
 * input is larger than input_max; -ENOMEM. */
struct fmd_job_request;
int fmd_api_jobs_parse_submit(const char *body, size_t body_len,
                              uint64_t input_max, struct fmd_job_request *req,
                              uint8_t **input, char *msg, size_t msg_len);

/* 1 when url is /v1/jobs or below it. */
int fmd_api_jobs_match(const char *url);
/* Handles one request; *state is this module's per-request state (NULL at
 * first), kept across a suspension and freed by
 * fmd_api_jobs_request_done(). */
enum MHD_Result fmd_api_jobs_request(fmd_api *api, fmd *d,
                                     struct MHD_Connection *conn,
                                     const char *method, const char *url,
                                     const char *body, size_t body_len,
                                     void **state);
void fmd_api_jobs_request_done(void *state);
/* Before MHD stops: every suspended request is resumed (and answered with
 * the job as it is). */
void fmd_api_jobs_stop(fmd *d);

/* Provided by api.c. kick: MHD runs again soon, from the loop (after a
 * connection was resumed). */
void fmd_api_kick(fmd_api *api);
/* Answers with the headers every answer carries. */
enum MHD_Result fmd_api_respond_json(fmd_api *api, struct MHD_Connection *conn,
                                     unsigned status, json_t *body);
enum MHD_Result fmd_api_respond_error(fmd_api *api, struct MHD_Connection *conn,
                                      unsigned status, const char *code,
                                      const char *message, const char *allow);

#endif
