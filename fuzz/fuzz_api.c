/* Harness: the request bodies of fedmeshd's local HTTP API, as its handlers
 * parse them (src/daemon/api_jobs.c, src/daemon/api.c) after the Host and
 * token checks. The first byte picks the route, the rest is the body:
 *   even  POST /v1/jobs: fmd_api_jobs_parse_submit (JSON, field rules,
 *         base64 input, size limits);
 *   odd   POST /v1/join: fmd_api_join_parse, then the invite it carries
 *         through fm_invite_decode, as fmd_federation_join does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/api.h"
#include "daemon/api_jobs.h"
#include "daemon/daemon.h"
#include "daemon/jobs.h"
#include "fuzz.h"

/* main.c owns the real one and is not linked here (as in the unit tests). */
uint64_t fmd_now_ms(const fmd *d)
{
	return uv_now(d->loop);
}

/* A small [jobs] input_max, so that the limit is within the fuzzer's
 * reach. */
#define INPUT_MAX 4096

static void submit(const char *body, size_t len)
{
	fmd_job_request req;
	uint8_t *input = NULL;
	char msg[512];
	int rc;

	msg[0] = '\0';
	rc = fmd_api_jobs_parse_submit(body, len, INPUT_MAX, &req, &input, msg,
	                               sizeof(msg));
	if (rc == -EINVAL && msg[0] == '\0')
		fz_fail("api", "a bad request without a message");
	if (rc != 0) {
		if (input != NULL)
			fz_fail("api", "input returned on failure");
		return;
	}
	if (req.service[0] == '\0' || req.input_len > INPUT_MAX ||
	    (req.input_len > 0 && input == NULL) || req.input != input ||
	    req.timeout_ms > FMD_JOBS_TIMEOUT_MAX_MS ||
	    (req.id[0] != '\0' && !fmd_job_id_valid(req.id)))
		fz_fail("api", "an accepted request breaks a field rule");
	free(input);
}

static void join(const char *body, size_t len)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	const char *invite = NULL;
	json_t *root = NULL;
	size_t count = 0;
	char msg[512];

	msg[0] = '\0';
	if (fmd_api_join_parse(body, len, &root, &invite, msg, sizeof(msg)) !=
	    0) {
		if (msg[0] == '\0' || root != NULL)
			fz_fail("api", "a bad join body without a message");
		return;
	}
	if (invite == NULL)
		fz_fail("api", "no invite from a parsed join body");
	(void)fm_invite_decode(invite, key, addrs, FM_INVITE_ADDRS_MAX, &count);
	json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body;

	if (size < 1)
		return 0;
	/* Exactly the body's bytes: no NUL after them, as MHD hands them. */
	body = malloc(size - 1 > 0 ? size - 1 : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 1, size - 1);
	if (data[0] & 1)
		join(body, size - 1);
	else
		submit(body, size - 1);
	free(body);
	return 0;
}
