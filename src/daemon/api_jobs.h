/* The /v1/jobs routes of the local HTTP API: submit, show, list and cancel
 * jobs, and long-poll for a result (?wait=SECONDS) with
 * MHD_suspend_connection / MHD_resume_connection driven by the job's
 * updates, never by polling. api.c dispatches every request under
 * /v1/jobs here after its Host and token checks, with the whole body. */
#ifndef FMD_API_JOBS_H
#define FMD_API_JOBS_H

#include <stddef.h>

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
