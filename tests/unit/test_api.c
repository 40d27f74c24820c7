/* Tests of the local HTTP API over real sockets: the Host check, the token,
 * the routes and the body cap are promises to whoever talks to the daemon,
 * so they are checked the way a client sees them. The API runs in this
 * process on a real libuv loop (main thread) with a real node and store;
 * a client thread speaks raw HTTP/1.1 over POSIX sockets and wakes the loop
 * with uv_async when it is done. cmocka's asserts only run on the main
 * thread, after the client thread has been joined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "daemon/api.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/net.h"
#include "daemon/store.h"

#define TEST_TOKEN \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define TEST_WRONG_TOKEN \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeefe"
#define TEST_PATH_MAX 512
#define TEST_ERR_MAX 256
#define TEST_HEAD_MAX 1024
#define TEST_HEADER_VALUE_MAX 256
/* Largest answer the client keeps; every answer here is far smaller. */
#define TEST_RESPONSE_MAX (256 * 1024)
#define TEST_BIG_BODY_BYTES (100 * 1024)
#define TEST_CHUNK_BYTES (8 * 1024)
/* A broken server must fail the test, not hang it. */
#define TEST_IO_TIMEOUT_S 10
/* What the test node's record advertises. */
#define TEST_ADVERTISED "192.0.2.7:7420"

/* main.c owns the real one and is not linked into unit tests. */
uint64_t fmd_now_ms(const fmd *d)
{
	return uv_now(d->loop);
}

/* One request on its own connection ("Connection: close"), and what came
 * back. */
typedef struct exchange {
	char *request;
	size_t request_len;
	char *response; /* NUL-terminated */
	size_t response_len;
	int status; /* 0 when no status line was read */
	int io_error;
} exchange;

typedef struct client_run {
	exchange *ex;
	size_t n;
} client_run;

static struct {
	uv_loop_t loop;
	uv_async_t done;
	fmd d;
	fmd_api *api;
	uint16_t port;
	char dir[TEST_PATH_MAX / 2];
} fx;

/* ---- the fake driver of the node ----------------------------------------- */

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	(void)ctx;
	(void)to;
	(void)buf;
	(void)len;
	return 0;
}

/* No network here: every dial fails at once, as with no route. */
static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *stream_id)
{
	(void)ctx;
	(void)to;
	(void)stream_id;
	return -ENETUNREACH;
}

static int io_stream_send(void *ctx, uint64_t stream_id, const uint8_t *buf,
                          size_t len)
{
	(void)ctx;
	(void)stream_id;
	(void)buf;
	(void)len;
	return -ENOTCONN;
}

static void io_stream_close(void *ctx, uint64_t stream_id)
{
	(void)ctx;
	(void)stream_id;
}

/* The daemon's own persistence, as net.c wires it. */
static void io_peer_changed(void *ctx, const fm_peer_info *peer, int forgotten)
{
	fmd_peers_save(ctx, peer, forgotten);
}

/* Deterministic is fine: nothing here depends on unpredictability. */
static void io_random_bytes(void *ctx, uint8_t *buf, size_t len)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 37 + 11);
}

static void io_log(void *ctx, enum fm_log_level level, const char *subsystem,
                   const char *msg)
{
	(void)ctx;
	fmd_log(level, subsystem, "%s", msg);
}

/* ---- the client thread --------------------------------------------------- */

static int client_send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void client_exchange(exchange *ex)
{
	struct sockaddr_in sin;
	struct timeval tv = {.tv_sec = TEST_IO_TIMEOUT_S, .tv_usec = 0};
	int fd;
	int rc;

	ex->response = calloc(1, TEST_RESPONSE_MAX + 1);
	if (ex->response == NULL) {
		ex->io_error = ENOMEM;
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		ex->io_error = errno;
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(fx.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		ex->io_error = errno;
		goto done;
	}
	/* A server may answer before reading the whole body; what it says
	 * is still worth reading, so a failed send is not the end. */
	rc = client_send_all(fd, ex->request, ex->request_len);
	if (rc < 0)
		ex->io_error = -rc;
	while (ex->response_len < TEST_RESPONSE_MAX) {
		ssize_t n = recv(fd, ex->response + ex->response_len,
		                 TEST_RESPONSE_MAX - ex->response_len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ex->io_error = errno;
			break;
		}
		if (n == 0)
			break;
		ex->response_len += (size_t)n;
	}
	ex->response[ex->response_len] = '\0';
	if (sscanf(ex->response, "HTTP/1.%*d %d", &ex->status) != 1)
		ex->status = 0;
done:
	close(fd);
}

static void *client_main(void *arg)
{
	client_run *run = arg;
	size_t i;

	for (i = 0; i < run->n; i++)
		client_exchange(&run->ex[i]);
	uv_async_send(&fx.done);
	return NULL;
}

static void on_client_done(uv_async_t *async)
{
	uv_stop(async->loop);
}

/* Serves the API on this thread until the client thread has finished. */
static void run_exchanges(exchange *ex, size_t n)
{
	client_run run = {.ex = ex, .n = n};
	pthread_t thread;

	assert_int_equal(pthread_create(&thread, NULL, client_main, &run), 0);
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	assert_int_equal(pthread_join(thread, NULL), 0);
}

/* ---- building requests and reading answers ------------------------------- */

/* An HTTP/1.1 request; token NULL: no Authorization header. body_len bytes
 * of 'x' follow when body_len > 0. */
static void ex_request(exchange *ex, const char *method, const char *path,
                       const char *host, const char *token, size_t body_len)
{
	char head[TEST_HEAD_MAX];
	char auth[TEST_HEAD_MAX] = "";
	char length[TEST_HEAD_MAX] = "";
	int n;

	memset(ex, 0, sizeof(*ex));
	if (token != NULL)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
		         token);
	if (body_len > 0)
		snprintf(length, sizeof(length), "Content-Length: %zu\r\n",
		         body_len);
	n = snprintf(head, sizeof(head),
	             "%s %s HTTP/1.1\r\nHost: %s\r\n%s%sConnection: "
	             "close\r\n\r\n",
	             method, path, host, auth, length);
	assert_true(n > 0 && (size_t)n < sizeof(head));
	ex->request_len = (size_t)n + body_len;
	ex->request = malloc(ex->request_len);
	assert_non_null(ex->request);
	memcpy(ex->request, head, (size_t)n);
	memset(ex->request + n, 'x', body_len);
}

static void ex_raw(exchange *ex, const char *text)
{
	memset(ex, 0, sizeof(*ex));
	ex->request = strdup(text);
	assert_non_null(ex->request);
	ex->request_len = strlen(text);
}

static void ex_free(exchange *ex, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(ex[i].request);
		free(ex[i].response);
	}
}

static const char *ex_body(const exchange *ex)
{
	const char *p = strstr(ex->response, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

/* Copies the value of header `name` into out; 0 when found. */
static int ex_header(const exchange *ex, const char *name, char *out,
                     size_t out_len)
{
	const char *line = strstr(ex->response, "\r\n");
	const char *end = strstr(ex->response, "\r\n\r\n");
	size_t name_len = strlen(name);

	while (line != NULL && line < end) {
		line += 2;
		if (strncasecmp(line, name, name_len) == 0 &&
		    line[name_len] == ':') {
			const char *v = line + name_len + 1;
			const char *eol = strstr(v, "\r\n");
			size_t len;

			while (*v == ' ')
				v++;
			len = (size_t)(eol - v);
			if (len >= out_len)
				return -ENOSPC;
			memcpy(out, v, len);
			out[len] = '\0';
			return 0;
		}
		line = strstr(line, "\r\n");
	}
	return -ENOENT;
}

static json_t *ex_json(const exchange *ex)
{
	char type[TEST_HEADER_VALUE_MAX];
	json_error_t jerr;
	json_t *j;

	assert_int_equal(ex_header(ex, "Content-Type", type, sizeof(type)), 0);
	assert_string_equal(type, "application/json");
	j = json_loads(ex_body(ex), 0, &jerr);
	if (j == NULL)
		fail_msg("bad JSON (%s): %s", jerr.text, ex_body(ex));
	return j;
}

/* An error answer: the status and {"error":{"code":...,"message":...}}. */
static void assert_error(const exchange *ex, int status, const char *code)
{
	json_t *j;
	json_t *err;

	assert_int_equal(ex->status, status);
	j = ex_json(ex);
	err = json_object_get(j, "error");
	assert_true(json_is_object(err));
	assert_string_equal(json_string_value(json_object_get(err, "code")),
	                    code);
	assert_true(json_is_string(json_object_get(err, "message")));
	json_decref(j);
}

static void assert_no_cors(const exchange *ex)
{
	char v[TEST_HEADER_VALUE_MAX];

	assert_int_equal(
	        ex_header(ex, "Access-Control-Allow-Origin", v, sizeof(v)),
	        -ENOENT);
}

/* ---- fixture ------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	static const uint8_t seed[FM_SEED_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};
	fm_node_config ncfg;
	fm_io io = {
	        .ctx = &fx.d,
	        .send_datagram = io_send_datagram,
	        .stream_open = io_stream_open,
	        .stream_send = io_stream_send,
	        .stream_close = io_stream_close,
	        .random_bytes = io_random_bytes,
	        .log = io_log,
	        .peer_changed = io_peer_changed,
	};
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX] = "";
	const char *colon;
	int n;

	(void)state;
	fmd_log_init(stderr, FMD_LOG_TEXT, FM_LOG_WARN);
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/fedmesh-test-api-XXXXXX");
	assert_non_null(mkdtemp(fx.dir));
	assert_int_equal(uv_loop_init(&fx.loop), 0);
	assert_int_equal(uv_async_init(&fx.loop, &fx.done, on_client_done), 0);

	memset(&ncfg, 0, sizeof(ncfg));
	assert_int_equal(fm_identity_from_seed(seed, &ncfg.identity), 0);
	memset(ncfg.federation_key, 0x3c, sizeof(ncfg.federation_key));
	memcpy(fx.d.federation_key, ncfg.federation_key,
	       sizeof(fx.d.federation_key));
	ncfg.record_seq = 1;
	assert_int_equal(fm_addr_parse(TEST_ADVERTISED, &ncfg.advertise[0]), 0);
	ncfg.advertise_count = 1;
	fx.d.identity = ncfg.identity;
	fx.d.loop = &fx.loop;
	snprintf(fx.d.cfg.state_dir, sizeof(fx.d.cfg.state_dir), "%s", fx.dir);
	fx.d.started_mono_ms = uv_now(&fx.loop);
	fx.d.started_unix_ms = (int64_t)time(NULL) * 1000;
	n = snprintf(path, sizeof(path), "%s/state.db", fx.dir);
	assert_true(n > 0 && (size_t)n < sizeof(path));
	assert_int_equal(fmd_store_open(path, &fx.d.store, err, sizeof(err)),
	                 0);
	assert_int_equal(fm_node_new(&ncfg, &io, uv_now(&fx.loop), &fx.d.node),
	                 0);
	fm_hex_encode(ncfg.identity.node_id, FM_NODE_ID_BYTES,
	              fx.d.node_id_hex);
	snprintf(fx.d.listen_udp, sizeof(fx.d.listen_udp), "127.0.0.1:7420");
	snprintf(fx.d.listen_tcp, sizeof(fx.d.listen_tcp), "127.0.0.1:7420");

	if (fmd_api_start(&fx.d, "127.0.0.1:0", TEST_TOKEN, &fx.api, err,
	                  sizeof(err)) != 0)
		fail_msg("fmd_api_start: %s", err);
	fx.d.api = fx.api;
	assert_int_equal(strncmp(fx.d.api_addr, "127.0.0.1:", 10), 0);
	colon = strrchr(fx.d.api_addr, ':');
	fx.port = (uint16_t)atoi(colon + 1);
	assert_true(fx.port != 0);
	fm_identity_wipe(&ncfg.identity);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	fmd_api_stop(fx.api);
	assert_null(fx.d.api);
	uv_close((uv_handle_t *)&fx.done, NULL);
	/* Runs the close callbacks; returns once no handle is left. */
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx.loop), 0);
	fm_node_free(fx.d.node);
	fmd_store_close(fx.d.store);
	fm_identity_wipe(&fx.d.identity);
	assert_int_equal(nftw(fx.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
	return 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_host_allowed(void **state)
{
	static const struct {
		const char *host;
		int allowed;
	} cases[] = {
	        {"localhost", 1},
	        {"127.0.0.1", 1},
	        {"[::1]", 1},
	        {"localhost:7421", 1},
	        {"127.0.0.1:7421", 1},
	        {"[::1]:7421", 1},
	        {"localhost:1", 1},
	        {"127.0.0.1:65535", 1},
	        {"localhost:00080", 1},
	        {NULL, 0},
	        {"", 0},
	        {"localhost.evil.com", 0},
	        {"localhost.", 0},
	        {"127.0.0.1.nip.io", 0},
	        {"127.0.0.1.nip.io:7421", 0},
	        {"evil.example", 0},
	        {"evil.example:7421", 0},
	        {"localhost:", 0},
	        {"localhost:123456", 0},
	        {"localhost:80a", 0},
	        {"localhost:-1", 0},
	        {"localhost: 80", 0},
	        {"localhost:80 ", 0},
	        {" localhost", 0},
	        {"localhostx", 0},
	        {"xlocalhost", 0},
	        {"::1", 0},
	        {"[::1", 0},
	        {"[::2]", 0},
	        {"127.0.0.2", 0},
	        {"127.0.0.1:80:80", 0},
	        {"0.0.0.0:7421", 0},
	        {"localhost@evil.com", 0},
	        {"localhost:80@evil.com", 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (fmd_api_host_allowed(cases[i].host) != cases[i].allowed)
			fail_msg("host '%s': want %d",
			         cases[i].host ? cases[i].host : "(null)",
			         cases[i].allowed);
}

static void test_start_rejects_bad_arguments(void **state)
{
	static const char *const bad_tokens[] = {
	        "", "abc", TEST_TOKEN "0",
	        "zz112233445566778899aabbccddeeff00112233445566778899aabbccddee"
	        "ff"};
	uv_loop_t loop;
	fmd d;
	fmd_api *api = (fmd_api *)&loop; /* must come back NULL */
	char err[TEST_ERR_MAX];
	size_t i;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	memset(&d, 0, sizeof(d));
	d.loop = &loop;
	for (i = 0; i < sizeof(bad_tokens) / sizeof(bad_tokens[0]); i++) {
		assert_int_equal(fmd_api_start(&d, "127.0.0.1:0", bad_tokens[i],
		                               &api, err, sizeof(err)),
		                 -EINVAL);
		assert_null(api);
	}
	assert_int_equal(
	        fmd_api_start(&d, NULL, TEST_TOKEN, &api, err, sizeof(err)),
	        -EINVAL);
	assert_int_equal(fmd_api_start(&d, "localhost:7421", TEST_TOKEN, &api,
	                               err, sizeof(err)),
	                 -EINVAL);
	assert_int_equal(fmd_api_start(&d, "127.0.0.1", TEST_TOKEN, &api, err,
	                               sizeof(err)),
	                 -EINVAL);
	assert_true(strlen(err) > 0);
	fmd_api_stop(NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* "[::1]:0" binds IPv6 loopback and reports "[::1]:PORT"; skipped where
 * the host has no IPv6 loopback. */
static void test_start_ipv6(void **state)
{
	uv_loop_t loop;
	fmd d;
	fmd_api *api = NULL;
	char err[TEST_ERR_MAX] = "";
	int rc;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	memset(&d, 0, sizeof(d));
	d.loop = &loop;
	rc = fmd_api_start(&d, "[::1]:0", TEST_TOKEN, &api, err, sizeof(err));
	if (rc != 0) {
		assert_int_equal(uv_loop_close(&loop), 0);
		skip();
	}
	assert_int_equal(strncmp(d.api_addr, "[::1]:", 6), 0);
	assert_true(atoi(d.api_addr + 6) > 0);
	fmd_api_stop(api);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_health_probes(void **state)
{
	exchange ex[6];
	json_t *j;
	fmd_store *store = fx.d.store;

	(void)state;
	ex_request(&ex[0], "GET", "/livez", "127.0.0.1:7421", NULL, 0);
	ex_request(&ex[1], "GET", "/readyz", "localhost", NULL, 0);
	ex_request(&ex[2], "GET", "/livez", "evil.example", NULL, 0);
	/* HTTP/1.0 may leave Host out; the API must not take that as local. */
	ex_raw(&ex[3], "GET /livez HTTP/1.0\r\n\r\n");
	ex_request(&ex[4], "HEAD", "/livez", "[::1]:7421", NULL, 0);
	run_exchanges(ex, 5);

	assert_int_equal(ex[0].status, 200);
	j = ex_json(&ex[0]);
	assert_string_equal(json_string_value(json_object_get(j, "status")),
	                    "ok");
	json_decref(j);
	assert_no_cors(&ex[0]);
	assert_int_equal(ex[1].status, 200);
	j = ex_json(&ex[1]);
	assert_string_equal(json_string_value(json_object_get(j, "status")),
	                    "ready");
	json_decref(j);
	assert_error(&ex[2], 403, "forbidden_host");
	assert_error(&ex[3], 403, "forbidden_host");
	assert_int_equal(ex[4].status, 200);
	assert_string_equal(ex_body(&ex[4]), "");
	ex_free(ex, 5);

	/* Not ready without a store. */
	fx.d.store = NULL;
	ex_request(&ex[5], "GET", "/readyz", "localhost", NULL, 0);
	run_exchanges(&ex[5], 1);
	fx.d.store = store;
	assert_int_equal(ex[5].status, 503);
	j = ex_json(&ex[5]);
	assert_string_equal(json_string_value(json_object_get(j, "status")),
	                    "not_ready");
	json_decref(j);
	ex_free(&ex[5], 1);
}

static void test_auth_and_host(void **state)
{
	exchange ex[5];
	fmd_counters before = fx.d.counters;
	char v[TEST_HEADER_VALUE_MAX];

	(void)state;
	ex_request(&ex[0], "GET", "/v1/status", "127.0.0.1", NULL, 0);
	ex_request(&ex[1], "GET", "/v1/status", "127.0.0.1", TEST_WRONG_TOKEN,
	           0);
	/* A valid token does not excuse a foreign Host. */
	ex_request(&ex[2], "GET", "/v1/status", "evil.example", TEST_TOKEN, 0);
	ex_raw(&ex[3], "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n"
	               "Authorization: Basic " TEST_TOKEN "\r\n"
	               "Connection: close\r\n\r\n");
	/* Unknown paths hide behind the token too. */
	ex_request(&ex[4], "GET", "/v1/nope", "localhost", NULL, 0);
	run_exchanges(ex, 5);

	assert_error(&ex[0], 401, "unauthorized");
	assert_int_equal(ex_header(&ex[0], "WWW-Authenticate", v, sizeof(v)),
	                 0);
	assert_string_equal(v, "Bearer");
	assert_no_cors(&ex[0]);
	assert_error(&ex[1], 401, "unauthorized");
	assert_error(&ex[2], 403, "forbidden_host");
	assert_error(&ex[3], 401, "unauthorized");
	assert_error(&ex[4], 401, "unauthorized");
	ex_free(ex, 5);

	assert_int_equal(fx.d.counters.http_unauthorized,
	                 before.http_unauthorized + 4);
	assert_int_equal(fx.d.counters.http_forbidden_host,
	                 before.http_forbidden_host + 1);
	assert_int_equal(fx.d.counters.http_requests[4],
	                 before.http_requests[4] + 5);
}

static void test_status(void **state)
{
	exchange ex;
	json_t *j;
	json_t *listen;
	const char *node_id;
	const char *started;
	size_t i;
	uint64_t ok_before = fx.d.counters.http_requests[2];

	(void)state;
	ex_request(&ex, "GET", "/v1/status", "localhost:7421", TEST_TOKEN, 0);
	run_exchanges(&ex, 1);
	assert_int_equal(ex.status, 200);
	assert_no_cors(&ex);
	j = ex_json(&ex);
	node_id = json_string_value(json_object_get(j, "node_id"));
	assert_non_null(node_id);
	assert_int_equal(strlen(node_id), FM_NODE_ID_HEX_LEN);
	for (i = 0; i < FM_NODE_ID_HEX_LEN; i++)
		assert_non_null(strchr("0123456789abcdef", node_id[i]));
	assert_string_equal(node_id, fx.d.node_id_hex);
	assert_string_equal(json_string_value(json_object_get(j, "mode")),
	                    "alone");
	assert_string_equal(json_string_value(json_object_get(j, "version")),
	                    fm_version());
	assert_int_equal(
	        json_integer_value(json_object_get(j, "peers_connected")), 0);
	assert_true(json_is_integer(json_object_get(j, "uptime_s")));
	assert_string_equal(json_string_value(json_object_get(j, "api")),
	                    fx.d.api_addr);
	listen = json_object_get(j, "listen");
	assert_int_equal(json_array_size(listen), 2);
	assert_string_equal(json_string_value(json_object_get(
	                            json_array_get(listen, 0), "proto")),
	                    "udp");
	assert_string_equal(json_string_value(json_object_get(
	                            json_array_get(listen, 1), "proto")),
	                    "tcp");
	started = json_string_value(json_object_get(j, "started_at"));
	assert_non_null(started);
	assert_int_equal(strlen(started), strlen("2024-01-02T03:04:05Z"));
	assert_int_equal(started[strlen(started) - 1], 'Z');
	json_decref(j);
	ex_free(&ex, 1);
	assert_int_equal(fx.d.counters.http_requests[2], ok_before + 1);
}

/* A peer of its own identity, with a signed record that offers one
 * service, as the session layer would have learnt it. */
static void make_peer(fm_peer_info *info, uint8_t seed_byte)
{
	uint8_t seed[FM_SEED_BYTES];
	fm_identity id;

	memset(seed, seed_byte, sizeof(seed));
	assert_int_equal(fm_identity_from_seed(seed, &id), 0);
	memset(info, 0, sizeof(*info));
	memcpy(info->node_id, id.node_id, FM_NODE_ID_BYTES);
	info->record.seq = 42;
	assert_int_equal(
	        fm_addr_parse("192.0.2.1:7420", &info->record.addrs[0]), 0);
	info->record.addr_count = 1;
	snprintf(info->record.services[0].name,
	         sizeof(info->record.services[0].name), "build");
	info->record.services[0].slots = 4;
	info->record.service_count = 1;
	info->record.capacity = 4;
	assert_int_equal(fm_record_sign(&info->record, &id), 0);
	info->has_record = 1;
	info->addrs[0].addr = info->record.addrs[0];
	info->addrs[0].source = FM_SRC_BOOTSTRAP;
	info->addr_count = 1;
	info->source = FM_SRC_BOOTSTRAP;
	info->state = FM_PEER_IDLE;
	info->rtt_ms = -1;
	fm_identity_wipe(&id);
}

/* The core's peer entry survives the trip through a store row: record,
 * addresses, reputation, and last_seen across the two clocks. */
static void test_peer_row_round_trip(void **state)
{
	fm_peer_info info;
	fm_peer_info back;
	fmd_peer_row row;
	size_t i;

	(void)state;
	make_peer(&info, 9);
	info.rtt_ms = 12.5;
	info.reputation.invalid = 1.5;
	info.reputation.failures = 2;
	info.reputation.timeouts = 3;
	info.reputation.successes = 4;
	info.reputation.bans = 2;
	info.reputation.ban_remaining_ms = 60000;
	info.state = FM_PEER_BANNED;
	snprintf(info.last_error, sizeof(info.last_error), "handshake timeout");
	/* Three seconds before the daemon started, on the node's clock. */
	assert_true(fx.d.started_mono_ms > 3000);
	info.last_seen_ms = fx.d.started_mono_ms - 3000;

	assert_int_equal(fmd_peer_row_from_info(&fx.d, &info, &row), 0);
	assert_int_equal(strlen(row.node_id), FM_NODE_ID_HEX_LEN);
	assert_string_equal(row.addresses_json, "[{\"addr\":\"192.0.2.1:7420\","
	                                        "\"source\":\"bootstrap\"}]");
	assert_string_equal(row.source, "bootstrap");
	assert_string_equal(row.state, "banned");
	assert_int_equal(row.last_seen_unix_ms, fx.d.started_unix_ms - 3000);
	assert_true(row.record_len > 0);
	assert_int_equal(row.reputation.bans, 2);

	assert_int_equal(fmd_peer_info_from_row(&fx.d, &row, &back), 0);
	assert_memory_equal(back.node_id, info.node_id, FM_NODE_ID_BYTES);
	assert_int_equal(back.has_record, 1);
	assert_int_equal(back.record.seq, 42);
	assert_string_equal(back.record.services[0].name, "build");
	assert_int_equal(back.addr_count, 1);
	assert_memory_equal(&back.addrs[0].addr, &info.addrs[0].addr,
	                    sizeof(fm_addr));
	assert_int_equal(back.addrs[0].source, FM_SRC_BOOTSTRAP);
	assert_int_equal(back.source, FM_SRC_BOOTSTRAP);
	assert_int_equal(back.state, FM_PEER_BANNED);
	assert_true(back.rtt_ms == 12.5);
	assert_int_equal(back.last_seen_ms, info.last_seen_ms);
	assert_string_equal(back.last_error, "handshake timeout");
	assert_true(back.reputation.invalid == 1.5);
	assert_true(back.reputation.successes == 4);
	assert_int_equal(back.reputation.bans, 2);
	assert_int_equal(back.reputation.ban_remaining_ms, 60000);

	/* Never seen stays never; a time before the clock's origin too. */
	info.last_seen_ms = 0;
	assert_int_equal(fmd_peer_row_from_info(&fx.d, &info, &row), 0);
	assert_int_equal(row.last_seen_unix_ms, 0);
	row.last_seen_unix_ms = 1000;
	assert_int_equal(fmd_peer_info_from_row(&fx.d, &row, &back), 0);
	assert_int_equal(back.last_seen_ms, 0);

	/* A tampered record, another node's record, a bad ID: refused. */
	assert_int_equal(fmd_peer_row_from_info(&fx.d, &info, &row), 0);
	for (i = row.record_len / 2; i < row.record_len; i++)
		row.record[i] ^= 0xff;
	assert_true(fmd_peer_info_from_row(&fx.d, &row, &back) < 0);
	assert_int_equal(fmd_peer_row_from_info(&fx.d, &info, &row), 0);
	memset(row.node_id, 'a', FM_NODE_ID_HEX_LEN);
	assert_int_equal(fmd_peer_info_from_row(&fx.d, &row, &back), -EBADMSG);
	snprintf(row.node_id, sizeof(row.node_id), "not-hex");
	assert_int_equal(fmd_peer_info_from_row(&fx.d, &row, &back), -EINVAL);
}

static void test_peers(void **state)
{
	char node_id[FM_NODE_ID_HEX_LEN + 1];
	fm_peer_info info;
	exchange ex;
	json_t *j;
	json_t *p;
	json_t *services;

	(void)state;
	make_peer(&info, 7);
	fm_hex_encode(info.node_id, FM_NODE_ID_BYTES, node_id);
	assert_int_equal(
	        fm_node_restore_peer(fx.d.node, uv_now(&fx.loop), &info), 0);

	ex_request(&ex, "GET", "/v1/peers", "127.0.0.1", TEST_TOKEN, 0);
	run_exchanges(&ex, 1);
	assert_int_equal(ex.status, 200);
	j = ex_json(&ex);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 1);

	p = json_array_get(j, 0);
	assert_string_equal(json_string_value(json_object_get(p, "node_id")),
	                    node_id);
	assert_true(json_array_size(json_object_get(p, "addresses")) >= 1);
	assert_string_equal(
	        json_string_value(json_object_get(
	                json_array_get(json_object_get(p, "addresses"), 0),
	                "addr")),
	        "192.0.2.1:7420");
	assert_true(json_is_string(json_object_get(
	        json_array_get(json_object_get(p, "addresses"), 0), "source")));
	assert_string_equal(json_string_value(json_object_get(p, "source")),
	                    "bootstrap");
	assert_true(json_is_string(json_object_get(p, "state")));
	assert_true(json_is_null(json_object_get(p, "rtt_ms")));
	assert_true(json_is_number(json_object_get(p, "score")));
	assert_true(json_is_null(json_object_get(p, "last_seen")));
	services = json_object_get(p, "services");
	assert_int_equal(json_array_size(services), 1);
	assert_string_equal(json_string_value(json_object_get(
	                            json_array_get(services, 0), "name")),
	                    "build");
	assert_int_equal(json_integer_value(json_object_get(
	                         json_array_get(services, 0), "slots")),
	                 4);
	json_decref(j);
	ex_free(&ex, 1);
}

static void test_metrics(void **state)
{
	static const char *const wanted[] = {
	        "# TYPE fedmesh_build_info gauge\n",
	        "fedmesh_build_info{version=\"",
	        "# TYPE fedmesh_uptime_seconds gauge\n",
	        "# TYPE fedmesh_peers_connected gauge\nfedmesh_peers_connected "
	        "0\n",
	        "# TYPE fedmesh_datagrams_received_total counter\n",
	        "# TYPE fedmesh_datagrams_dropped_total counter\n",
	        "fedmesh_datagrams_dropped_total{reason=\"",
	        "# TYPE fedmesh_stream_bytes_received_total counter\n",
	        "# HELP fedmesh_http_requests_total ",
	        "# TYPE fedmesh_http_requests_total counter\n",
	        "fedmesh_http_requests_total{code=\"2xx\"} ",
	        "fedmesh_http_requests_total{code=\"4xx\"} ",
	        "# TYPE fedmesh_http_unauthorized_total counter\n",
	        "# TYPE fedmesh_http_forbidden_host_total counter\n",
	        "# TYPE fedmesh_udp_send_errors_total counter\n",
	        "# TYPE fedmesh_handshakes_completed_total counter\n",
	        "# TYPE fedmesh_session_errors_total counter\n",
	        "fedmesh_session_errors_total{reason=\"bad_mac\"} ",
	        "# TYPE fedmesh_frames_sent_total counter\n",
	        "# TYPE fedmesh_frames_received_total counter\n",
	        "# TYPE fedmesh_rekeys_total counter\n",
	        "# TYPE fedmesh_peers_banned_total counter\n",
	        "# TYPE fedmesh_peers gauge\n",
	        "fedmesh_peers{state=\"connected\"} ",
	};
	exchange ex[2];
	char type[TEST_HEADER_VALUE_MAX];
	char expect[TEST_HEADER_VALUE_MAX];
	const char *body;
	size_t i;

	(void)state;
	ex_request(&ex[0], "GET", "/metrics", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[1], "GET", "/metrics", "localhost", NULL, 0);
	run_exchanges(ex, 2);
	assert_int_equal(ex[0].status, 200);
	assert_int_equal(ex_header(&ex[0], "Content-Type", type, sizeof(type)),
	                 0);
	assert_string_equal(type, "text/plain; version=0.0.4; charset=utf-8");
	body = ex_body(&ex[0]);
	for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (strstr(body, wanted[i]) == NULL)
			fail_msg("metrics lack '%s':\n%s", wanted[i], body);
	snprintf(expect, sizeof(expect),
	         "fedmesh_build_info{version=\"%s\"} 1\n", fm_version());
	assert_non_null(strstr(body, expect));
	for (i = 0; i < FM_DROP_REASON_COUNT; i++) {
		snprintf(expect, sizeof(expect),
		         "fedmesh_datagrams_dropped_total{reason=\"%s\"} ",
		         fm_drop_reason_name((enum fm_drop_reason)i));
		assert_non_null(strstr(body, expect));
	}
	for (i = 0; i < FM_SESS_ERROR_COUNT; i++) {
		snprintf(expect, sizeof(expect),
		         "fedmesh_session_errors_total{reason=\"%s\"} ",
		         fm_session_error_name((enum fm_session_error)i));
		assert_non_null(strstr(body, expect));
	}
	for (i = 0; i < FM_PEER_STATE_COUNT; i++) {
		snprintf(expect, sizeof(expect), "fedmesh_peers{state=\"%s\"} ",
		         fm_peer_state_name((enum fm_peer_state)i));
		assert_non_null(strstr(body, expect));
	}
	assert_error(&ex[1], 401, "unauthorized");
	ex_free(ex, 2);
}

/* A POST with a JSON (or not) body. */
static void ex_post(exchange *ex, const char *path, const char *body)
{
	char head[TEST_HEAD_MAX];
	size_t body_len = strlen(body);
	int n;

	memset(ex, 0, sizeof(*ex));
	n = snprintf(head, sizeof(head),
	             "POST %s HTTP/1.1\r\nHost: localhost\r\n"
	             "Authorization: Bearer " TEST_TOKEN "\r\n"
	             "Content-Type: application/json\r\n"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             path, body_len);
	assert_true(n > 0 && (size_t)n < sizeof(head));
	ex->request_len = (size_t)n + body_len;
	ex->request = malloc(ex->request_len);
	assert_non_null(ex->request);
	memcpy(ex->request, head, (size_t)n);
	memcpy(ex->request + n, body, body_len);
}

/* The invite of an answer, decoded: its key and addresses. */
static size_t decode_invite_answer(const exchange *ex,
                                   uint8_t key[FM_FEDERATION_KEY_BYTES],
                                   fm_addr *addrs)
{
	const char *invite;
	size_t count = 0;
	json_t *j;

	assert_int_equal(ex->status, 200);
	j = ex_json(ex);
	invite = json_string_value(json_object_get(j, "invite"));
	assert_non_null(invite);
	assert_int_equal(strncmp(invite, "fedmesh1", 8), 0);
	assert_int_equal(fm_invite_decode(invite, key, addrs,
	                                  FM_INVITE_ADDRS_MAX, &count),
	                 0);
	assert_int_equal(json_array_size(json_object_get(j, "addresses")),
	                 count);
	json_decref(j);
	return count;
}

static void test_invite(void **state)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	char text[FM_ADDR_STR_MAX];
	exchange ex[7];
	size_t count;

	(void)state;
	ex_request(&ex[0], "GET", "/v1/invite", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[1], "GET",
	           "/v1/invite?address=198.51.100.1:9000"
	           "&address=%5B2001:db8::1%5D:9001",
	           "localhost", TEST_TOKEN, 0);
	ex_request(&ex[2], "GET", "/v1/invite?address=0.0.0.0:7420",
	           "localhost", TEST_TOKEN, 0);
	ex_request(&ex[3], "GET", "/v1/invite?address=192.0.2.1:0", "localhost",
	           TEST_TOKEN, 0);
	ex_request(&ex[4], "GET", "/v1/invite?adress=192.0.2.1:1", "localhost",
	           TEST_TOKEN, 0);
	/* The one route that carries the key needs the token like all. */
	ex_request(&ex[5], "GET", "/v1/invite", "localhost", NULL, 0);
	ex_request(&ex[6], "POST", "/v1/invite", "localhost", TEST_TOKEN, 0);
	run_exchanges(ex, 7);

	/* By default: the addresses of the node's record. */
	count = decode_invite_answer(&ex[0], key, addrs);
	assert_memory_equal(key, fx.d.federation_key, sizeof(key));
	assert_int_equal(count, 1);
	assert_int_equal(fm_addr_format(&addrs[0], text, sizeof(text)), 0);
	assert_string_equal(text, TEST_ADVERTISED);

	count = decode_invite_answer(&ex[1], key, addrs);
	assert_memory_equal(key, fx.d.federation_key, sizeof(key));
	assert_int_equal(count, 2);
	assert_int_equal(fm_addr_format(&addrs[0], text, sizeof(text)), 0);
	assert_string_equal(text, "198.51.100.1:9000");
	assert_int_equal(fm_addr_format(&addrs[1], text, sizeof(text)), 0);
	assert_string_equal(text, "[2001:db8::1]:9001");

	assert_error(&ex[2], 400, "bad_request");
	assert_error(&ex[3], 400, "bad_request");
	assert_error(&ex[4], 400, "bad_request");
	assert_error(&ex[5], 401, "unauthorized");
	assert_error(&ex[6], 405, "method_not_allowed");
	ex_free(ex, 7);
}

static void test_join_refusals(void **state)
{
	static const char *const bad_json[] = {
	        "not json",         "{\"invite\": ",
	        "[\"fedmesh1\"]",   "{}",
	        "{\"invite\": 42}", "{\"invite\": \"a\", \"invite\": \"b\"}",
	};
	uint8_t before[FM_FEDERATION_KEY_BYTES];
	char good[FM_INVITE_TEXT_MAX + 1];
	char body[FM_INVITE_TEXT_MAX + 64];
	char allow[TEST_HEADER_VALUE_MAX];
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addr;
	exchange ex[10];
	size_t n = 0;
	size_t i;
	json_t *j;

	(void)state;
	memcpy(before, fx.d.federation_key, sizeof(before));
	for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++)
		ex_post(&ex[n++], "/v1/join", bad_json[i]);
	ex_post(&ex[n++], "/v1/join", "{\"invite\": \"fedmesh1notaninvite\"}");
	/* A real invite with one character changed fails its checksum. */
	memset(key, 0x77, sizeof(key));
	assert_int_equal(fm_addr_parse("127.0.0.1:1", &addr), 0);
	assert_int_equal(fm_invite_encode(key, &addr, 1, good, sizeof(good)),
	                 0);
	good[20] = good[20] == 'a' ? 'b' : 'a';
	snprintf(body, sizeof(body), "{\"invite\": \"%s\"}", good);
	ex_post(&ex[n++], "/v1/join", body);
	ex_request(&ex[n++], "GET", "/v1/join", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[n++], "POST", "/v1/join", "localhost", NULL, 0);
	assert_true(n <= sizeof(ex) / sizeof(ex[0]));
	run_exchanges(ex, n);

	for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++)
		assert_error(&ex[i], 400, "bad_request");
	/* The message says what is wrong with the JSON. */
	j = ex_json(&ex[0]);
	assert_non_null(strstr(json_string_value(json_object_get(
	                               json_object_get(j, "error"), "message")),
	                       "JSON"));
	json_decref(j);
	assert_error(&ex[i++], 400, "invalid_invite");
	assert_error(&ex[i++], 400, "invalid_invite");
	assert_error(&ex[i], 405, "method_not_allowed");
	assert_int_equal(ex_header(&ex[i++], "Allow", allow, sizeof(allow)), 0);
	assert_string_equal(allow, "POST");
	assert_error(&ex[i++], 401, "unauthorized");
	ex_free(ex, n);
	/* Nothing changed. */
	assert_memory_equal(fx.d.federation_key, before, sizeof(before));
}

static void test_join(void **state)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	uint8_t got[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[2];
	fm_addr back[FM_INVITE_ADDRS_MAX];
	char invite[FM_INVITE_TEXT_MAX + 1];
	char body[FM_INVITE_TEXT_MAX + 64];
	char path[TEST_PATH_MAX];
	char text[TEST_HEADER_VALUE_MAX];
	char key_hex[2 * FM_FEDERATION_KEY_BYTES + 1];
	fm_peer_info info;
	fmd_peer_row row;
	struct stat st;
	exchange ex[4];
	json_t *j;
	json_t *boot;
	FILE *fp;

	(void)state;
	/* A peer of the old federation, in the core and in the store. */
	make_peer(&info, 11);
	assert_int_equal(
	        fm_node_restore_peer(fx.d.node, uv_now(&fx.loop), &info), 0);
	assert_int_equal(fmd_peer_row_from_info(&fx.d, &info, &row), 0);
	assert_int_equal(fmd_store_peer_upsert(fx.d.store, &row), 0);
	assert_true(fmd_store_peer_count(fx.d.store) >= 1);

	memset(key, 0x5e, sizeof(key));
	assert_int_equal(fm_addr_parse("127.0.0.1:1", &addrs[0]), 0);
	assert_int_equal(fm_addr_parse("[::1]:2", &addrs[1]), 0);
	assert_int_equal(
	        fm_invite_encode(key, addrs, 2, invite, sizeof(invite)), 0);
	/* Surrounding whitespace, as a paste may carry, is fine. */
	snprintf(body, sizeof(body), "{\"invite\": \" %s\\n\"}", invite);
	ex_post(&ex[0], "/v1/join", body);
	ex_request(&ex[1], "GET", "/v1/invite", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[2], "GET", "/v1/status", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[3], "GET", "/v1/peers", "localhost", TEST_TOKEN, 0);
	run_exchanges(ex, 4);

	assert_int_equal(ex[0].status, 200);
	j = ex_json(&ex[0]);
	assert_true(json_is_true(json_object_get(j, "joined")));
	boot = json_object_get(j, "bootstrap");
	assert_int_equal(json_array_size(boot), 2);
	assert_string_equal(json_string_value(json_array_get(boot, 0)),
	                    "127.0.0.1:1");
	assert_string_equal(json_string_value(json_array_get(boot, 1)),
	                    "[::1]:2");
	json_decref(j);

	/* The daemon now invites to the new federation. */
	decode_invite_answer(&ex[1], got, back);
	assert_memory_equal(got, key, sizeof(key));
	assert_memory_equal(fx.d.federation_key, key, sizeof(key));

	/* No answer but the invite carries the key. */
	fm_hex_encode(key, sizeof(key), key_hex);
	assert_null(strstr(ex[2].response, key_hex));
	assert_null(strstr(ex[3].response, key_hex));
	assert_int_equal(ex[3].status, 200);
	/* The old federation's peers are gone, from the core and the store. */
	j = ex_json(&ex[3]);
	assert_int_equal(json_array_size(j), 0);
	json_decref(j);
	assert_int_equal(fmd_store_peer_count(fx.d.store), 0);
	ex_free(ex, 4);

	/* Persisted: the key file, 0600, and the bootstrap contacts. */
	snprintf(path, sizeof(path), "%s/federation.key", fx.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(text, sizeof(text), fp));
	fclose(fp);
	assert_int_equal(strlen(text), 2 * FM_FEDERATION_KEY_BYTES + 1);
	assert_int_equal(strncmp(text, key_hex, 2 * FM_FEDERATION_KEY_BYTES),
	                 0);
	assert_int_equal(fmd_store_setting_get(fx.d.store, "bootstrap", text,
	                                       sizeof(text)),
	                 0);
	assert_string_equal(text, "[\"127.0.0.1:1\",\"[::1]:2\"]");
}

/* Builds a chunked POST carrying body_len bytes of 'y'. */
static void ex_chunked(exchange *ex, size_t body_len)
{
	static const char head[] =
	        "POST /v1/status HTTP/1.1\r\nHost: localhost\r\n"
	        "Authorization: Bearer " TEST_TOKEN "\r\n"
	        "Transfer-Encoding: chunked\r\n"
	        "Connection: close\r\n\r\n";
	size_t chunks = (body_len + TEST_CHUNK_BYTES - 1) / TEST_CHUNK_BYTES;
	size_t cap = sizeof(head) + body_len + chunks * 16 + 16;
	size_t off;
	size_t left = body_len;

	memset(ex, 0, sizeof(*ex));
	ex->request = malloc(cap);
	assert_non_null(ex->request);
	memcpy(ex->request, head, sizeof(head) - 1);
	off = sizeof(head) - 1;
	while (left > 0) {
		size_t n = left < TEST_CHUNK_BYTES ? left : TEST_CHUNK_BYTES;

		off += (size_t)snprintf(ex->request + off, cap - off, "%zx\r\n",
		                        n);
		memset(ex->request + off, 'y', n);
		off += n;
		memcpy(ex->request + off, "\r\n", 2);
		off += 2;
		left -= n;
	}
	memcpy(ex->request + off, "0\r\n\r\n", 5);
	ex->request_len = off + 5;
	assert_true(ex->request_len <= cap);
}

static void test_body_cap(void **state)
{
	exchange ex[5];
	char allow[TEST_HEADER_VALUE_MAX];

	(void)state;
	ex_request(&ex[0], "POST", "/v1/status", "localhost", TEST_TOKEN,
	           TEST_BIG_BODY_BYTES);
	/* Announced far past the cap: refused before any body is read. */
	ex_raw(&ex[1], "POST /v1/status HTTP/1.1\r\nHost: localhost\r\n"
	               "Authorization: Bearer " TEST_TOKEN "\r\n"
	               "Content-Length: 1073741824\r\n"
	               "Connection: close\r\n\r\n");
	ex_chunked(&ex[2], TEST_BIG_BODY_BYTES);
	/* Within the cap: the body is read, then the method refused. */
	ex_request(&ex[3], "POST", "/v1/status", "localhost", TEST_TOKEN, 100);
	ex_chunked(&ex[4], 100);
	run_exchanges(ex, 5);

	assert_error(&ex[0], 413, "payload_too_large");
	assert_error(&ex[1], 413, "payload_too_large");
	assert_error(&ex[2], 413, "payload_too_large");
	assert_error(&ex[3], 405, "method_not_allowed");
	assert_int_equal(ex_header(&ex[3], "Allow", allow, sizeof(allow)), 0);
	assert_non_null(strstr(allow, "GET"));
	assert_error(&ex[4], 405, "method_not_allowed");
	ex_free(ex, 5);
}

static void test_not_found(void **state)
{
	exchange ex[3];

	(void)state;
	ex_request(&ex[0], "GET", "/v1/nope", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[1], "GET", "/v1/status/", "localhost", TEST_TOKEN, 0);
	ex_request(&ex[2], "DELETE", "/livez", "localhost", NULL, 0);
	run_exchanges(ex, 3);
	assert_error(&ex[0], 404, "not_found");
	assert_error(&ex[1], 404, "not_found");
	assert_error(&ex[2], 405, "method_not_allowed");
	ex_free(ex, 3);
}

/* Several requests on one kept-alive connection, as curl and scrapers do. */
static void test_keep_alive(void **state)
{
	exchange ex;

	(void)state;
	ex_raw(&ex, "GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"
	            "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n"
	            "Authorization: Bearer " TEST_TOKEN "\r\n\r\n"
	            "GET /readyz HTTP/1.1\r\nHost: localhost\r\n"
	            "Connection: close\r\n\r\n");
	run_exchanges(&ex, 1);
	assert_int_equal(ex.status, 200);
	assert_int_equal(ex.io_error, 0);
	assert_non_null(strstr(ex.response, "\"status\":\"ok\""));
	assert_non_null(strstr(ex.response, "\"node_id\":"));
	assert_non_null(strstr(ex.response, "\"status\":\"ready\""));
	ex_free(&ex, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_host_allowed),
	        cmocka_unit_test(test_start_rejects_bad_arguments),
	        cmocka_unit_test(test_start_ipv6),
	        cmocka_unit_test(test_health_probes),
	        cmocka_unit_test(test_auth_and_host),
	        cmocka_unit_test(test_status),
	        cmocka_unit_test(test_peer_row_round_trip),
	        cmocka_unit_test(test_peers),
	        cmocka_unit_test(test_metrics),
	        cmocka_unit_test(test_invite),
	        cmocka_unit_test(test_join_refusals),
	        cmocka_unit_test(test_join),
	        cmocka_unit_test(test_body_cap),
	        cmocka_unit_test(test_not_found),
	        cmocka_unit_test(test_keep_alive),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
