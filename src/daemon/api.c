/* The local HTTP API of fedmeshd: status, peers, invites, joining a
 * federation and Prometheus metrics for the fedmesh CLI and for
 * monitoring.
 *
 * libmicrohttpd runs in "external epoll" mode: it owns one epoll fd that we
 * watch with a uv_poll_t, and a uv_timer_t covers MHD's own deadlines
 * (connection timeouts, work left over from the last run). There is no extra
 * thread, so handlers read the daemon's state on the loop thread without
 * locks, and nothing polls while the API is idle.
 *
 * The API is bound to loopback, but that alone is not enough: any web page
 * can reach it through DNS rebinding unless the Host header is checked, and
 * any local user unless a token is required. So every request passes a Host
 * check first, then (except the two health probes) a bearer token check.
 * No CORS headers are ever sent: browsers must not read these answers. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>
#include <sodium.h>
#include <uv.h>

#include "api.h"
#include "api_jobs.h"
#include "dht_api.h"
#include "disc.h"
#include "jobs.h"
#include "log.h"
#include "metrics_text.h"
#include "net.h"

/* Local clients only (the CLI, a scraper): a few hundred is plenty and keeps
 * the fds MHD may hold far below the process limit. */
/* First guess at the size of a JSON answer. */
#define FMD_API_JSON_GUESS_BYTES 2048
#define FMD_API_CONNECTION_LIMIT 256
/* Idle connections are closed after this long. */
#define FMD_API_CONNECTION_TIMEOUT_S 30
/* A body over FMD_API_BODY_MAX_BYTES is read and thrown away up to this
 * total, so a client that overshot gets a clean 413 rather than a reset
 * connection; past it (or when Content-Length announces more) the 413 goes
 * out at once and the connection is closed. */
#define FMD_API_BODY_DRAIN_MAX_BYTES (1024 * 1024)
/* First allocation for a request body; it doubles up to the cap. */
#define FMD_API_BODY_INITIAL_BYTES 4096
/* The metrics page has a fixed set of lines (no per-peer labels). */
#define FMD_API_METRICS_MAX_BYTES (32 * 1024)
/* Entries in one /v1/peers answer; the core's table is bounded well below
 * this, so reaching it means something upstream is wrong. */
#define FMD_API_PEERS_MAX 4096
/* One line of MHD's own diagnostics. */
#define FMD_API_LOG_LINE_MAX 512
/* "2024-01-02T03:04:05Z" and its NUL, with room to spare. */
#define FMD_API_TIME_STR_MAX 32
/* Delay of a re-run MHD asks for "now" from within the timer callback: in
 * libuv 1.44 a 0 ms timer restarted from its own callback runs again in the
 * same pass, which would spin the loop if MHD keeps reporting 0. */
#define FMD_API_RERUN_DELAY_MS 1

/* POST /v1/join carries one invite: a few hundred bytes. */
#define FMD_API_JOIN_BODY_MAX_BYTES 4096
/* An error message built from a request's content. */
#define FMD_API_MESSAGE_MAX 512

#define FMD_API_JSON_TYPE "application/json"
#define FMD_API_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define FMD_API_ALLOW "GET, HEAD"
#define FMD_API_ALLOW_POST "POST"

/* Answer of last resort when even the error body cannot be built. */
static const char api_internal_body[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";

struct fmd_api {
	fmd *d;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;   /* on MHD's epoll fd */
	uv_timer_t timer; /* MHD_get_timeout() */
	int poll_inited;
	int timer_inited;
	int handles_open; /* initialised handles whose close cb is pending */
	char token[FMD_API_TOKEN_HEX_LEN + 1];
};

typedef enum MHD_Result (*api_handler)(fmd_api *api,
                                       struct MHD_Connection *conn);
/* body is NUL-terminated (NULL when empty) and at most
 * FMD_API_BODY_MAX_BYTES. */
typedef enum MHD_Result (*api_body_handler)(fmd_api *api,
                                            struct MHD_Connection *conn,
                                            const char *body, size_t body_len);

typedef struct api_route {
	const char *path;
	int public_route;      /* health probes: no token, Host check only */
	api_handler get;       /* GET and HEAD; MHD drops the body for HEAD */
	api_body_handler post; /* POST */
	const char *allow;     /* the Allow header of a 405 */
} api_route;

/* Per-request state, from the first callback to MHD's completion notice. */
typedef struct api_req {
	const api_route *route; /* NULL: unknown path */
	char *body;             /* NUL-terminated, at most the cap */
	size_t body_len;
	size_t body_alloc;
	uint64_t body_seen_bytes; /* everything received, kept or not */
	unsigned reject_status;   /* 413 or 500 to answer once the body ends */
	/* Under /v1/jobs: api_jobs.c answers, with a larger body cap. */
	int jobs;
	size_t body_max;
	void *jobs_state;
	/* /v1/dht and /v1/find/: dht_api.c answers. */
	int dht;
	void *dht_state;
} api_req;

/* What is read of a body before the connection is dropped. */
static size_t api_drain_max(const api_req *req)
{
	return req->body_max > FMD_API_BODY_DRAIN_MAX_BYTES
	               ? req->body_max
	               : FMD_API_BODY_DRAIN_MAX_BYTES;
}

static void api_set_err(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void api_set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* ---- host and token checks ----------------------------------------------- */

int fmd_api_host_allowed(const char *host)
{
	static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
	size_t i;

	if (host == NULL)
		return 0;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);
		const char *p = host + n;
		size_t digits = 0;

		if (strncmp(host, names[i], n) != 0)
			continue;
		if (*p == '\0')
			return 1;
		if (*p != ':')
			continue;
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits++;
		if (*p == '\0' && digits >= 1 && digits <= 5)
			return 1;
	}
	return 0;
}

static int api_token_valid(const char *token)
{
	size_t i;

	if (token == NULL || strlen(token) != FMD_API_TOKEN_HEX_LEN)
		return 0;
	for (i = 0; i < FMD_API_TOKEN_HEX_LEN; i++) {
		char c = token[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F')))
			return 0;
	}
	return 1;
}

/* The length is compared first (it is no secret: every token has the same
 * one); the bytes in constant time, so timing does not leak a prefix. */
static int api_bearer_ok(const fmd_api *api, struct MHD_Connection *conn)
{
	static const char scheme[] = "Bearer ";
	const char *h;

	h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                MHD_HTTP_HEADER_AUTHORIZATION);
	if (h == NULL || strncasecmp(h, scheme, sizeof(scheme) - 1) != 0)
		return 0;
	h += sizeof(scheme) - 1;
	while (*h == ' ')
		h++;
	if (strnlen(h, FMD_API_TOKEN_HEX_LEN + 1) != FMD_API_TOKEN_HEX_LEN)
		return 0;
	return sodium_memcmp(h, api->token, FMD_API_TOKEN_HEX_LEN) == 0;
}

/* ---- responses ----------------------------------------------------------- */

/* Queues resp (always consumed) and counts the answer by status class. */
static enum MHD_Result api_queue(fmd_api *api, struct MHD_Connection *conn,
                                 unsigned status, struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	if (ret != MHD_YES)
		return ret;
	if (status / 100 < sizeof(api->d->counters.http_requests) /
	                           sizeof(api->d->counters.http_requests[0]))
		api->d->counters.http_requests[status / 100]++;
	return ret;
}

/* Wraps buf (malloc'd, taken over even on failure) with the headers every
 * answer carries, plus one optional extra header. */
static struct MHD_Response *api_response_new(char *buf, size_t len,
                                             const char *type,
                                             const char *hname,
                                             const char *hvalue)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(buf);
		return NULL;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) !=
	            MHD_YES ||
	    /* Answers carry node state and must not linger in caches. */
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                            "no-store") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Content-Type-Options",
	                            "nosniff") != MHD_YES ||
	    (hname != NULL &&
	     MHD_add_response_header(resp, hname, hvalue) != MHD_YES)) {
		MHD_destroy_response(resp);
		return NULL;
	}
	return resp;
}

static enum MHD_Result api_respond_internal(fmd_api *api,
                                            struct MHD_Connection *conn)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(sizeof(api_internal_body) - 1,
	                                       (void *)api_internal_body,
	                                       MHD_RESPMEM_PERSISTENT);
	if (resp != NULL &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                            FMD_API_JSON_TYPE) != MHD_YES) {
		MHD_destroy_response(resp);
		resp = NULL;
	}
	return api_queue(api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, resp);
}

/* Serialises body (reference taken; NULL means building it failed). */
static enum MHD_Result api_respond_json(fmd_api *api,
                                        struct MHD_Connection *conn,
                                        unsigned status, json_t *body,
                                        const char *hname, const char *hvalue)
{
	size_t len;
	char *buf = NULL;

	if (body == NULL)
		goto fail;
	/* Encode once into a buffer that fits most answers; only a larger
	 * body is encoded a second time (the encoding dominated the cost of
	 * GET /v1/status under load). One byte is kept for a final newline,
	 * friendlier to curl users. */
	buf = malloc(FMD_API_JSON_GUESS_BYTES);
	if (buf == NULL)
		goto fail;
	len = json_dumpb(body, buf, FMD_API_JSON_GUESS_BYTES - 1, JSON_COMPACT);
	if (len == 0)
		goto fail;
	if (len > FMD_API_JSON_GUESS_BYTES - 1) {
		char *bigger = realloc(buf, len + 1);
		if (bigger == NULL)
			goto fail;
		buf = bigger;
		if (json_dumpb(body, buf, len, JSON_COMPACT) != len)
			goto fail;
	}
	buf[len] = '\n';
	json_decref(body);
	return api_queue(api, conn, status,
	                 api_response_new(buf, len + 1, FMD_API_JSON_TYPE,
	                                  hname, hvalue));
fail:
	free(buf);
	json_decref(body);
	return api_respond_internal(api, conn);
}

static enum MHD_Result api_error(fmd_api *api, struct MHD_Connection *conn,
                                 unsigned status, const char *code,
                                 const char *message, const char *hname,
                                 const char *hvalue)
{
	json_t *body;

	body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
	                 message);
	return api_respond_json(api, conn, status, body, hname, hvalue);
}

/* ---- handlers ------------------------------------------------------------ */

/* RFC 3339 UTC with second precision. unix_ms <= 0 means "never/unknown". */
static int api_format_time(int64_t unix_ms, char *out, size_t out_len)
{
	time_t t;
	struct tm tm;

	if (unix_ms <= 0)
		return -EINVAL;
	t = (time_t)(unix_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL)
		return -EINVAL;
	if (strftime(out, out_len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -ENOSPC;
	return 0;
}

static uint64_t api_uptime_s(const fmd *d)
{
	uint64_t now_ms = fmd_now_ms(d);

	if (now_ms < d->started_mono_ms)
		return 0;
	return (now_ms - d->started_mono_ms) / 1000;
}

static enum MHD_Result api_get_livez(fmd_api *api, struct MHD_Connection *conn)
{
	return api_respond_json(api, conn, MHD_HTTP_OK,
	                        json_pack("{s:s}", "status", "ok"), NULL, NULL);
}

static enum MHD_Result api_get_readyz(fmd_api *api, struct MHD_Connection *conn)
{
	if (api->d->node == NULL || api->d->store == NULL)
		return api_respond_json(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		        json_pack("{s:s}", "status", "not_ready"), NULL, NULL);
	return api_respond_json(api, conn, MHD_HTTP_OK,
	                        json_pack("{s:s}", "status", "ready"), NULL,
	                        NULL);
}

static void api_clean_text(const char *src, size_t src_max, char *dst);

/* What local discovery runs and where: the interfaces in use now. */
static json_t *api_discovery_json(const fmd *d)
{
	char host[FM_HOSTNAME_MAX + sizeof(".local")];
	json_t *names = json_array();
	size_t i;

	for (i = 0; names != NULL && i < fmd_disc_iface_count(d->disc); i++) {
		const fmd_iface *ifc = fmd_disc_iface_get(d->disc, i);
		char name[FM_IFACE_NAME_MAX + 1];

		/* Interface names are chosen by whoever set up the host. */
		api_clean_text(ifc->fm.name, FM_IFACE_NAME_MAX, name);
		if (json_array_append_new(names, json_string(name)) != 0) {
			json_decref(names);
			return NULL;
		}
	}
	snprintf(host, sizeof(host), "%s.local", fmd_disc_hostname(d->disc));
	return json_pack("{s:b, s:b, s:s?, s:o}", "mdns",
	                 fmd_disc_mdns_on(d->disc), "beacon",
	                 fmd_disc_beacon_on(d->disc), "hostname",
	                 d->disc != NULL ? host : NULL, "interfaces", names);
}

static enum MHD_Result api_get_status(fmd_api *api, struct MHD_Connection *conn)
{
	const fmd *d = api->d;
	fm_node_status st;
	char started[FMD_API_TIME_STR_MAX];
	int have_started;
	json_t *body;

	memset(&st, 0, sizeof(st));
	if (d->node != NULL)
		fm_node_get_status(d->node, &st);
	have_started = api_format_time(d->started_unix_ms, started,
	                               sizeof(started)) == 0;
	body = json_pack(
	        "{s:s, s:s, s:I, s:s, s:I, s:[{s:s,s:s},{s:s,s:s}], s:s, s:s?}",
	        "node_id", d->node_id_hex, "version", fm_version(), "uptime_s",
	        (json_int_t)api_uptime_s(d), "mode",
	        st.peers_connected == 0 ? "alone" : "federated",
	        "peers_connected", (json_int_t)st.peers_connected, "listen",
	        "proto", "udp", "addr", d->listen_udp, "proto", "tcp", "addr",
	        d->listen_tcp, "api", d->api_addr, "started_at",
	        have_started ? started : NULL);
	if (body != NULL && json_object_set_new(body, "discovery",
	                                        api_discovery_json(d)) != 0) {
		json_decref(body);
		body = NULL;
	}
	return api_respond_json(api, conn, MHD_HTTP_OK, body, NULL, NULL);
}

/* Store text may come from the network (last_error) and need not be valid
 * UTF-8, which would make jansson refuse the whole answer: keep printable
 * ASCII, replace the rest. */
static void api_clean_text(const char *src, size_t src_max, char *dst)
{
	size_t i;

	for (i = 0; i < src_max && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/* A peer's addresses with where each came from. */
static json_t *api_peer_addresses(const fm_peer_info *p)
{
	char addr[FM_ADDR_STR_MAX];
	json_t *list = json_array();
	size_t i;

	for (i = 0; list != NULL && i < p->addr_count && i < FM_PEER_ADDRS_MAX;
	     i++) {
		if (fm_addr_format(&p->addrs[i].addr, addr, sizeof(addr)) != 0)
			continue;
		if (json_array_append_new(
		            list,
		            json_pack("{s:s,s:s}", "addr", addr, "source",
		                      fm_addr_source_name(
		                              (enum fm_addr_source)p->addrs[i]
		                                      .source))) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* The services of the peer's signed record; NULL when it offers none. */
static json_t *api_peer_services(const fm_peer_info *p)
{
	char name[FM_SERVICE_NAME_MAX + 1];
	json_t *list;
	size_t i;

	if (!p->has_record || p->record.service_count == 0)
		return NULL;
	list = json_array();
	for (i = 0; list != NULL && i < p->record.service_count &&
	            i < FM_RECORD_SERVICES_MAX;
	     i++) {
		api_clean_text(p->record.services[i].name, FM_SERVICE_NAME_MAX,
		               name);
		if (json_array_append_new(
		            list, json_pack("{s:s,s:I}", "name", name, "slots",
		                            (json_int_t)p->record.services[i]
		                                    .slots)) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

static json_t *api_peer_json(const fmd *d, const fm_peer_info *p)
{
	char node_id[FM_NODE_ID_HEX_LEN + 1];
	char last_error[FM_PEER_ERROR_MAX];
	char last_seen[FMD_API_TIME_STR_MAX];
	json_t *addresses;
	json_t *services;
	json_t *rtt = NULL;
	json_t *peer;
	int have_last_seen;

	fm_hex_encode(p->node_id, FM_NODE_ID_BYTES, node_id);
	/* Set by the core, possibly from what a peer said: clean it. */
	api_clean_text(p->last_error, sizeof(p->last_error) - 1, last_error);
	have_last_seen =
	        p->last_seen_ms != 0 &&
	        api_format_time(fmd_unix_from_node_ms(d, p->last_seen_ms),
	                        last_seen, sizeof(last_seen)) == 0;
	/* Negative means never measured; NaN would not serialise. Rounded
	 * to what is meaningful (microseconds, 1e-4 of a score) so that
	 * clients do not print 17 digits of EWMA noise. */
	if (p->rtt_ms >= 0 && isfinite(p->rtt_ms))
		rtt = json_real(round(p->rtt_ms * 1000.0) / 1000.0);
	addresses = api_peer_addresses(p);
	if (addresses == NULL) {
		json_decref(rtt);
		return NULL;
	}
	peer = json_pack(
	        "{s:s, s:o, s:s, s:s, s:o?, s:f, s:s?, s:s?}", "node_id",
	        node_id, "addresses", addresses, "source",
	        fm_addr_source_name((enum fm_addr_source)p->source), "state",
	        fm_peer_state_name((enum fm_peer_state)p->state), "rtt_ms", rtt,
	        "score",
	        isfinite(p->score) ? round(p->score * 10000.0) / 10000.0 : 0.0,
	        "last_seen", have_last_seen ? last_seen : NULL, "last_error",
	        last_error[0] != '\0' ? last_error : NULL);
	services = api_peer_services(p);
	if (peer != NULL && services != NULL &&
	    json_object_set_new(peer, "services", services) != 0) {
		json_decref(peer);
		return NULL;
	}
	if (peer == NULL)
		json_decref(services);
	return peer;
}

/* The core's live peer table: what is true now, not what was last
 * written to the store. */
static enum MHD_Result api_get_peers(fmd_api *api, struct MHD_Connection *conn)
{
	const fmd *d = api->d;
	json_t *list = json_array();
	fm_peer_info *p = NULL;
	size_t count;
	size_t i;

	if (list == NULL)
		goto fail;
	if (d->node == NULL)
		return api_respond_json(api, conn, MHD_HTTP_OK, list, NULL,
		                        NULL);
	/* Over a kB each: on the heap, not the stack. */
	p = malloc(sizeof(*p));
	if (p == NULL)
		goto fail;
	count = fm_node_peer_count(d->node);
	if (count > FMD_API_PEERS_MAX) {
		fmd_log(FM_LOG_WARN, "api", "peer list cut at %d entries",
		        FMD_API_PEERS_MAX);
		count = FMD_API_PEERS_MAX;
	}
	for (i = 0; i < count; i++) {
		if (fm_node_peer_get(d->node, i, p) != 0)
			break;
		if (json_array_append_new(list, api_peer_json(d, p)) != 0)
			goto fail;
	}
	free(p);
	return api_respond_json(api, conn, MHD_HTTP_OK, list, NULL, NULL);
fail:
	free(p);
	json_decref(list);
	return api_error(api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
	                 "cannot list peers", NULL, NULL);
}

/* ---- federation membership -------------------------------------------------
 */

typedef struct api_invite_args {
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	size_t count;
	int no_addresses;                /* addresses=none: the key alone */
	char error[FMD_API_MESSAGE_MAX]; /* first problem; "" when none */
} api_invite_args;

static enum MHD_Result api_invite_arg(void *cls, enum MHD_ValueKind kind,
                                      const char *key, const char *value)
{
	api_invite_args *a = cls;
	char shown[FM_ADDR_STR_MAX];
	fm_addr addr;

	(void)kind;
	if (a->error[0] != '\0')
		return MHD_NO;
	if (strcmp(key, "addresses") == 0) {
		if (value == NULL || strcmp(value, "none") != 0) {
			api_clean_text(value != NULL ? value : "",
			               sizeof(shown) - 1, shown);
			snprintf(a->error, sizeof(a->error),
			         "addresses='%s': the only value is 'none'",
			         shown);
			return MHD_NO;
		}
		a->no_addresses = 1;
		return MHD_YES;
	}
	if (strcmp(key, "address") != 0) {
		api_clean_text(key, sizeof(shown) - 1, shown);
		snprintf(a->error, sizeof(a->error),
		         "unknown query parameter '%s' (only "
		         "address=HOST:PORT or addresses=none)",
		         shown);
		return MHD_NO;
	}
	if (value == NULL || fm_addr_parse(value, &addr) != 0 ||
	    addr.port == 0 || fmd_addr_is_wildcard(&addr)) {
		api_clean_text(value != NULL ? value : "", sizeof(shown) - 1,
		               shown);
		snprintf(a->error, sizeof(a->error),
		         "address '%s' is not one peers can dial: a numeric "
		         "ADDR:PORT or [V6]:PORT, not a wildcard, port not 0",
		         shown);
		return MHD_NO;
	}
	if (a->count >= FM_INVITE_ADDRS_MAX) {
		snprintf(a->error, sizeof(a->error),
		         "at most %d addresses fit in an invite",
		         FM_INVITE_ADDRS_MAX);
		return MHD_NO;
	}
	a->addrs[a->count++] = addr;
	return MHD_YES;
}

/* The addresses an invite carries by default: those of the node's signed
 * record, else the bound peer address when it is dialable. */
static void api_default_invite_addrs(const fmd *d, api_invite_args *a)
{
	fm_record rec;
	fm_addr addr;
	size_t i;

	if (d->node != NULL) {
		fm_node_get_record(d->node, &rec);
		for (i = 0; i < rec.addr_count && i < FM_RECORD_ADDRS_MAX &&
		            a->count < FM_INVITE_ADDRS_MAX;
		     i++)
			a->addrs[a->count++] = rec.addrs[i];
	}
	if (a->count == 0 && fm_addr_parse(d->listen_tcp, &addr) == 0 &&
	    addr.port != 0 && !fmd_addr_is_wildcard(&addr))
		a->addrs[a->count++] = addr;
}

static json_t *api_addr_list(const fm_addr *addrs, size_t count)
{
	char text[FM_ADDR_STR_MAX];
	json_t *list = json_array();
	size_t i;

	for (i = 0; list != NULL && i < count; i++) {
		if (fm_addr_format(&addrs[i], text, sizeof(text)) != 0)
			continue;
		if (json_array_append_new(list, json_string(text)) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* The one answer that carries the federation key: whoever holds the API
 * token may invite others, exactly as whoever holds the key file may. */
static enum MHD_Result api_get_invite(fmd_api *api, struct MHD_Connection *conn)
{
	const fmd *d = api->d;
	api_invite_args *a;
	char invite[FM_INVITE_TEXT_MAX + 1];
	enum MHD_Result ret;
	json_t *body;
	int rc;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return api_respond_internal(api, conn);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, api_invite_arg,
	                          a);
	if (a->error[0] != '\0') {
		ret = api_error(api, conn, MHD_HTTP_BAD_REQUEST, "bad_request",
		                a->error, NULL, NULL);
		goto cleanup;
	}
	if (a->no_addresses && a->count > 0) {
		ret = api_error(api, conn, MHD_HTTP_BAD_REQUEST, "bad_request",
		                "addresses=none and address=HOST:PORT "
		                "contradict each other",
		                NULL, NULL);
		goto cleanup;
	}
	/* addresses=none: an invite for the same LAN, where the joining node
	 * finds its peers by local discovery. */
	if (a->count == 0 && !a->no_addresses)
		api_default_invite_addrs(d, a);
	if (a->count == 0 && !a->no_addresses) {
		ret = api_error(api, conn, MHD_HTTP_CONFLICT, "no_address",
		                "this node advertises no address peers can "
		                "dial; pass address=HOST:PORT",
		                NULL, NULL);
		goto cleanup;
	}
	rc = fm_invite_encode(d->federation_key, a->addrs, a->count, invite,
	                      sizeof(invite));
	if (rc < 0) {
		fmd_log(FM_LOG_ERROR, "api", "cannot encode an invite: %s",
		        strerror(-rc));
		ret = api_error(api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
		                "internal", "cannot encode the invite", NULL,
		                NULL);
		goto cleanup;
	}
	body = json_pack("{s:s, s:o}", "invite", invite, "addresses",
	                 api_addr_list(a->addrs, a->count));
	sodium_memzero(invite, sizeof(invite));
	ret = api_respond_json(api, conn, MHD_HTTP_OK, body, NULL, NULL);
cleanup:
	free(a);
	return ret;
}

int fmd_api_join_parse(const char *body, size_t body_len, json_t **root,
                       const char **invite, char *msg, size_t msg_len)
{
	char err[FMD_API_MESSAGE_MAX] = "";
	json_error_t jerr;
	json_t *v;

	*root = NULL;
	*invite = NULL;
	if (body == NULL || body_len == 0) {
		snprintf(msg, msg_len,
		         "the body must be JSON: {\"invite\": "
		         "\"fedmesh1...\"}");
		return -EINVAL;
	}
	*root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (*root == NULL) {
		/* jansson may quote the offending input: clean it. */
		api_clean_text(jerr.text, sizeof(jerr.text) - 1, err);
		snprintf(msg, msg_len,
		         "the body is not valid JSON (%s at line %d column %d)",
		         err, jerr.line, jerr.column);
		return -EINVAL;
	}
	v = json_object_get(*root, "invite");
	if (!json_is_string(v)) {
		snprintf(msg, msg_len,
		         "the body must be a JSON object with a string "
		         "\"invite\"");
		json_decref(*root);
		*root = NULL;
		return -EINVAL;
	}
	*invite = json_string_value(v);
	return 0;
}

static enum MHD_Result api_post_join(fmd_api *api, struct MHD_Connection *conn,
                                     const char *body, size_t body_len)
{
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	char err[FMD_API_MESSAGE_MAX] = "";
	char msg[FMD_API_MESSAGE_MAX];
	json_t *root = NULL;
	const char *invite = NULL;
	enum MHD_Result ret;
	size_t count = 0;
	int rc;

	if (body_len > FMD_API_JOIN_BODY_MAX_BYTES)
		return api_error(api, conn, MHD_HTTP_CONTENT_TOO_LARGE,
		                 "payload_too_large", "request body too large",
		                 NULL, NULL);
	if (fmd_api_join_parse(body, body_len, &root, &invite, msg,
	                       sizeof(msg)) != 0)
		return api_error(api, conn, MHD_HTTP_BAD_REQUEST, "bad_request",
		                 msg, NULL, NULL);
	rc = fmd_federation_join(api->d, invite, addrs, &count, err,
	                         sizeof(err));
	if (rc == -EINVAL) {
		ret = api_error(api, conn, MHD_HTTP_BAD_REQUEST,
		                "invalid_invite", err, NULL, NULL);
		goto cleanup;
	}
	if (rc < 0) {
		fmd_log(FM_LOG_ERROR, "api", "join failed: %s", err);
		ret = api_error(
		        api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
		        err[0] != '\0' ? err : "join failed", NULL, NULL);
		goto cleanup;
	}
	ret = api_respond_json(api, conn, MHD_HTTP_OK,
	                       json_pack("{s:b, s:o}", "joined", 1, "bootstrap",
	                                 api_addr_list(addrs, count)),
	                       NULL, NULL);
cleanup:
	/* The body held the federation key. */
	sodium_memzero((char *)invite,
	               json_string_length(json_object_get(root, "invite")));
	json_decref(root);
	return ret;
}

static void api_count_peer_states(const fm_node *node,
                                  uint64_t counts[FM_PEER_STATE_COUNT])
{
	fm_peer_info *p = malloc(sizeof(*p));
	size_t count = fm_node_peer_count(node);
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < count && i < FMD_API_PEERS_MAX; i++)
		if (fm_node_peer_get(node, i, p) == 0 &&
		    p->state < FM_PEER_STATE_COUNT)
			counts[p->state]++;
	free(p);
}

static enum MHD_Result api_get_metrics(fmd_api *api,
                                       struct MHD_Connection *conn)
{
	const fmd *d = api->d;
	fmd_mtext t = {.buf = NULL, .len = 0, .cap = FMD_API_METRICS_MAX_BYTES};
	uint64_t peers_by_state[FM_PEER_STATE_COUNT] = {0};
	fmd_disc_counters disc;
	fm_node_stats stats;
	fm_node_status st;
	unsigned r;
	unsigned cls;

	fmd_disc_get_counters(d->disc, &disc);
	memset(&stats, 0, sizeof(stats));
	memset(&st, 0, sizeof(st));
	if (d->node != NULL) {
		fm_node_get_stats(d->node, &stats);
		fm_node_get_status(d->node, &st);
		api_count_peer_states(d->node, peers_by_state);
	}
	t.buf = malloc(t.cap);
	if (t.buf == NULL)
		return api_respond_internal(api, conn);

	fmd_mtext_family(&t, "fedmesh_build_info", "gauge",
	                 "Version of fedmeshd; always 1.");
	fmd_mtext_printf(&t, "fedmesh_build_info{version=\"");
	fmd_mtext_label(&t, fm_version());
	fmd_mtext_printf(&t, "\"} 1\n");

	fmd_mtext_family(&t, "fedmesh_uptime_seconds", "gauge",
	                 "Seconds since fedmeshd started.");
	fmd_mtext_printf(&t, "fedmesh_uptime_seconds %" PRIu64 "\n",
	                 api_uptime_s(d));

	fmd_mtext_family(&t, "fedmesh_peers_connected", "gauge",
	                 "Peers with an established session.");
	fmd_mtext_printf(&t, "fedmesh_peers_connected %" PRIu32 "\n",
	                 st.peers_connected);

	fmd_mtext_family(&t, "fedmesh_datagrams_received_total", "counter",
	                 "Datagrams received on the peer port.");
	fmd_mtext_printf(&t, "fedmesh_datagrams_received_total %" PRIu64 "\n",
	                 stats.datagrams_received);

	fmd_mtext_family(&t, "fedmesh_datagrams_dropped_total", "counter",
	                 "Inbound datagrams dropped, by reason.");
	for (r = 0; r < FM_DROP_REASON_COUNT; r++) {
		const char *name = fm_drop_reason_name((enum fm_drop_reason)r);

		fmd_mtext_printf(&t,
		                 "fedmesh_datagrams_dropped_total{reason=\"");
		fmd_mtext_label(&t, name != NULL ? name : "unknown");
		fmd_mtext_printf(&t, "\"} %" PRIu64 "\n",
		                 stats.datagrams_dropped[r]);
	}

	fmd_mtext_family(&t, "fedmesh_stream_bytes_received_total", "counter",
	                 "Bytes received on peer streams.");
	fmd_mtext_printf(&t,
	                 "fedmesh_stream_bytes_received_total %" PRIu64 "\n",
	                 stats.stream_bytes_received);

	fmd_mtext_family(&t, "fedmesh_handshakes_completed_total", "counter",
	                 "Noise handshakes that ended in a session.");
	fmd_mtext_printf(&t, "fedmesh_handshakes_completed_total %" PRIu64 "\n",
	                 stats.handshakes_completed);

	fmd_mtext_family(&t, "fedmesh_session_errors_total", "counter",
	                 "Sessions ended or frames refused, by reason.");
	for (r = 0; r < FM_SESS_ERROR_COUNT; r++) {
		const char *name =
		        fm_session_error_name((enum fm_session_error)r);

		fmd_mtext_printf(&t, "fedmesh_session_errors_total{reason=\"");
		fmd_mtext_label(&t, name != NULL ? name : "unknown");
		fmd_mtext_printf(&t, "\"} %" PRIu64 "\n",
		                 stats.session_errors[r]);
	}

	fmd_mtext_family(&t, "fedmesh_frames_sent_total", "counter",
	                 "Encrypted frames sent on sessions.");
	fmd_mtext_printf(&t, "fedmesh_frames_sent_total %" PRIu64 "\n",
	                 stats.frames_sent);
	fmd_mtext_family(&t, "fedmesh_frames_received_total", "counter",
	                 "Encrypted frames received and accepted on sessions.");
	fmd_mtext_printf(&t, "fedmesh_frames_received_total %" PRIu64 "\n",
	                 stats.frames_received);
	fmd_mtext_family(&t, "fedmesh_rekeys_total", "counter",
	                 "Session rekeys.");
	fmd_mtext_printf(&t, "fedmesh_rekeys_total %" PRIu64 "\n",
	                 stats.rekeys);
	fmd_mtext_family(&t, "fedmesh_records_accepted_total", "counter",
	                 "Signed node records accepted.");
	fmd_mtext_printf(&t, "fedmesh_records_accepted_total %" PRIu64 "\n",
	                 stats.records_accepted);
	fmd_mtext_family(&t, "fedmesh_peers_banned_total", "counter",
	                 "Peers banned for a reputation below the threshold.");
	fmd_mtext_printf(&t, "fedmesh_peers_banned_total %" PRIu64 "\n",
	                 stats.peers_banned);

	fmd_mtext_family(&t, "fedmesh_mdns_packets_received_total", "counter",
	                 "mDNS packets received on the interfaces in use.");
	fmd_mtext_printf(&t,
	                 "fedmesh_mdns_packets_received_total %" PRIu64 "\n",
	                 stats.mdns_received);
	fmd_mtext_family(&t, "fedmesh_mdns_packets_sent_total", "counter",
	                 "mDNS packets sent (queries, answers, goodbyes).");
	fmd_mtext_printf(&t, "fedmesh_mdns_packets_sent_total %" PRIu64 "\n",
	                 stats.mdns_sent);
	fmd_mtext_family(&t, "fedmesh_mdns_malformed_total", "counter",
	                 "mDNS packets that failed to parse.");
	fmd_mtext_printf(&t, "fedmesh_mdns_malformed_total %" PRIu64 "\n",
	                 stats.mdns_malformed);
	fmd_mtext_family(&t, "fedmesh_mdns_send_errors_total", "counter",
	                 "mDNS packets the sockets failed to send.");
	fmd_mtext_printf(&t, "fedmesh_mdns_send_errors_total %" PRIu64 "\n",
	                 disc.mdns_send_errors);
	fmd_mtext_family(
	        &t, "fedmesh_mdns_off_link_total", "counter",
	        "Unicast mDNS packets dropped for an off-link source.");
	fmd_mtext_printf(&t, "fedmesh_mdns_off_link_total %" PRIu64 "\n",
	                 disc.mdns_off_link);
	fmd_mtext_family(&t, "fedmesh_beacons_sent_total", "counter",
	                 "Discovery beacons sent (announces and replies).");
	fmd_mtext_printf(&t, "fedmesh_beacons_sent_total %" PRIu64 "\n",
	                 stats.beacons_sent);
	fmd_mtext_family(&t, "fedmesh_beacons_received_total", "counter",
	                 "Discovery beacons of this federation received.");
	fmd_mtext_printf(&t, "fedmesh_beacons_received_total %" PRIu64 "\n",
	                 stats.beacons_received);
	fmd_mtext_family(&t, "fedmesh_beacons_invalid_total", "counter",
	                 "Beacon-like datagrams that failed to open (another "
	                 "federation, or forged).");
	fmd_mtext_printf(&t, "fedmesh_beacons_invalid_total %" PRIu64 "\n",
	                 stats.beacons_invalid);
	fmd_mtext_family(&t, "fedmesh_peers_discovered_total", "counter",
	                 "Members of this federation found by mDNS or the "
	                 "beacon.");
	fmd_mtext_printf(&t, "fedmesh_peers_discovered_total %" PRIu64 "\n",
	                 stats.peers_discovered);
	fmd_mtext_family(&t, "fedmesh_foreign_nodes_seen_total", "counter",
	                 "fedmesh nodes of other federations seen on the LAN.");
	fmd_mtext_printf(&t, "fedmesh_foreign_nodes_seen_total %" PRIu64 "\n",
	                 stats.foreign_seen);
	fmd_mtext_family(&t, "fedmesh_discovery_interfaces", "gauge",
	                 "Interfaces local discovery uses now.");
	fmd_mtext_printf(&t, "fedmesh_discovery_interfaces %zu\n",
	                 fmd_disc_iface_count(d->disc));

	fmd_mtext_family(&t, "fedmesh_peers", "gauge",
	                 "Peers in the peer table, by state.");
	for (r = 0; r < FM_PEER_STATE_COUNT; r++) {
		fmd_mtext_printf(&t, "fedmesh_peers{state=\"");
		fmd_mtext_label(&t, fm_peer_state_name((enum fm_peer_state)r));
		fmd_mtext_printf(&t, "\"} %" PRIu64 "\n", peers_by_state[r]);
	}

	fmd_mtext_family(&t, "fedmesh_http_requests_total", "counter",
	                 "Answers of the local HTTP API, by status class.");
	for (cls = 1; cls < sizeof(d->counters.http_requests) /
	                            sizeof(d->counters.http_requests[0]);
	     cls++)
		fmd_mtext_printf(&t,
		                 "fedmesh_http_requests_total{code=\"%uxx\"} "
		                 "%" PRIu64 "\n",
		                 cls, d->counters.http_requests[cls]);

	fmd_mtext_family(&t, "fedmesh_http_unauthorized_total", "counter",
	                 "API requests refused for a missing or wrong token.");
	fmd_mtext_printf(&t, "fedmesh_http_unauthorized_total %" PRIu64 "\n",
	                 d->counters.http_unauthorized);

	fmd_mtext_family(&t, "fedmesh_http_forbidden_host_total", "counter",
	                 "API requests refused for a foreign Host header.");
	fmd_mtext_printf(&t, "fedmesh_http_forbidden_host_total %" PRIu64 "\n",
	                 d->counters.http_forbidden_host);

	fmd_mtext_family(&t, "fedmesh_udp_send_errors_total", "counter",
	                 "Datagrams the peer port failed to send.");
	fmd_mtext_printf(&t, "fedmesh_udp_send_errors_total %" PRIu64 "\n",
	                 d->counters.udp_send_errors);

	fmd_mtext_family(
	        &t, "fedmesh_connections_refused_total", "counter",
	        "Inbound connections closed at once, by [limits] key.");
	fmd_mtext_printf(&t,
	                 "fedmesh_connections_refused_total{reason=\"limit\"} "
	                 "%" PRIu64 "\n"
	                 "fedmesh_connections_refused_total{reason=\"rate\"} "
	                 "%" PRIu64 "\n",
	                 d->counters.connections_refused[FMD_REFUSED_LIMIT],
	                 d->counters.connections_refused[FMD_REFUSED_RATE]);

	fmd_mtext_family(&t, "fedmesh_peer_queue_overflows_total", "counter",
	                 "Connections closed because their peer did not read.");
	fmd_mtext_printf(&t, "fedmesh_peer_queue_overflows_total %" PRIu64 "\n",
	                 d->counters.peer_queue_overflows);

	if (!t.overflow) {
		int n = fmd_jobs_metrics(d, t.buf, t.len, t.cap);

		if (n < 0)
			t.overflow = 1;
		else
			t.len = (size_t)n;
	}
	if (!t.overflow) {
		int n = fmd_dht_metrics(d, t.buf, t.len, t.cap);

		if (n < 0)
			t.overflow = 1;
		else
			t.len = (size_t)n;
	}
	if (t.overflow) {
		free(t.buf);
		fmd_log(FM_LOG_ERROR, "api", "metrics page over %d bytes",
		        FMD_API_METRICS_MAX_BYTES);
		return api_error(api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
		                 "internal", "metrics page too large", NULL,
		                 NULL);
	}
	return api_queue(api, conn, MHD_HTTP_OK,
	                 api_response_new(t.buf, t.len, FMD_API_METRICS_TYPE,
	                                  NULL, NULL));
}

static const api_route api_routes[] = {
        {.path = "/livez",
         .public_route = 1,
         .get = api_get_livez,
         .allow = FMD_API_ALLOW},
        {.path = "/readyz",
         .public_route = 1,
         .get = api_get_readyz,
         .allow = FMD_API_ALLOW},
        {.path = "/v1/status", .get = api_get_status, .allow = FMD_API_ALLOW},
        {.path = "/v1/peers", .get = api_get_peers, .allow = FMD_API_ALLOW},
        {.path = "/v1/invite", .get = api_get_invite, .allow = FMD_API_ALLOW},
        {.path = "/v1/join",
         .post = api_post_join,
         .allow = FMD_API_ALLOW_POST},
        {.path = "/metrics", .get = api_get_metrics, .allow = FMD_API_ALLOW},
};

static const api_route *api_route_find(const char *url)
{
	size_t i;

	for (i = 0; i < sizeof(api_routes) / sizeof(api_routes[0]); i++)
		if (strcmp(url, api_routes[i].path) == 0)
			return &api_routes[i];
	return NULL;
}

/* ---- request flow -------------------------------------------------------- */

/* Content-Length as announced; -1 when absent or not a plain number (MHD
 * itself refuses malformed values before we are called). */
static int64_t api_content_length(struct MHD_Connection *conn)
{
	const char *v;
	char *end;
	unsigned long long n;

	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (v == NULL || *v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n > INT64_MAX)
		return INT64_MAX;
	return (int64_t)n;
}

/* First callback, headers only: refuses what it can before any body is
 * read. An answer queued here makes MHD close the connection afterwards,
 * which is what we want for these refusals. */
static enum MHD_Result api_on_headers(fmd_api *api, struct MHD_Connection *conn,
                                      const char *url, api_req *req)
{
	const char *host;

	/* Host first: a rebinding page must learn nothing, not even whether
	 * its token guess was right. HTTP/1.0 may omit Host: refused too. */
	host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                   MHD_HTTP_HEADER_HOST);
	if (!fmd_api_host_allowed(host)) {
		api->d->counters.http_forbidden_host++;
		return api_error(api, conn, MHD_HTTP_FORBIDDEN,
		                 "forbidden_host",
		                 "Host header must be localhost, 127.0.0.1 or "
		                 "[::1]",
		                 NULL, NULL);
	}
	/* Unknown paths need the token too, so the API's shape is not
	 * revealed to whoever lacks it. */
	req->route = api_route_find(url);
	req->jobs = req->route == NULL && fmd_api_jobs_match(url);
	req->dht = req->route == NULL && fmd_api_dht_match(url);
	req->body_max = req->jobs ? FMD_API_JOBS_BODY_MAX_BYTES
	                          : FMD_API_BODY_MAX_BYTES;
	if ((req->route == NULL || !req->route->public_route) &&
	    !api_bearer_ok(api, conn)) {
		api->d->counters.http_unauthorized++;
		return api_error(api, conn, MHD_HTTP_UNAUTHORIZED,
		                 "unauthorized",
		                 "missing or wrong bearer token",
		                 MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	}
	if (api_content_length(conn) > (int64_t)api_drain_max(req))
		return api_error(api, conn, MHD_HTTP_CONTENT_TOO_LARGE,
		                 "payload_too_large", "request body too large",
		                 NULL, NULL);
	return MHD_YES;
}

/* Keeps up to req->body_max bytes of body; beyond that the request is
 * marked for a 413 and the rest thrown away. Returns -EMSGSIZE once the
 * drain limit is passed (the connection is then dropped unanswered: MHD
 * cannot answer in the middle of an upload). */
static int api_req_take_body(api_req *req, const char *data, size_t len)
{
	req->body_seen_bytes += len;
	if (req->body_seen_bytes > api_drain_max(req))
		return -EMSGSIZE;
	if (req->reject_status != 0)
		return 0;
	if (len > req->body_max - req->body_len) {
		req->reject_status = MHD_HTTP_CONTENT_TOO_LARGE;
		goto drop;
	}
	if (req->body_len + len + 1 > req->body_alloc) {
		size_t want = req->body_alloc ? req->body_alloc
		                              : FMD_API_BODY_INITIAL_BYTES;
		char *p;

		while (want < req->body_len + len + 1)
			want *= 2;
		if (want > req->body_max + 1)
			want = req->body_max + 1;
		p = realloc(req->body, want);
		if (p == NULL) {
			req->reject_status = MHD_HTTP_INTERNAL_SERVER_ERROR;
			goto drop;
		}
		req->body = p;
		req->body_alloc = want;
	}
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	req->body[req->body_len] = '\0';
	return 0;
drop:
	free(req->body);
	req->body = NULL;
	req->body_len = 0;
	req->body_alloc = 0;
	return 0;
}

static enum MHD_Result api_on_request(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *version,
                                      const char *upload_data,
                                      size_t *upload_data_size, void **req_cls)
{
	fmd_api *api = cls;
	api_req *req = *req_cls;

	(void)version;
	if (req == NULL) {
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
		return api_on_headers(api, conn, url, req);
	}
	if (*upload_data_size != 0) {
		int rc = api_req_take_body(req, upload_data, *upload_data_size);

		*upload_data_size = 0;
		return rc < 0 ? MHD_NO : MHD_YES;
	}

	/* The whole request is in. The size check comes before routing, so
	 * an oversized body gets 413 wherever it was sent. */
	if (req->reject_status == MHD_HTTP_CONTENT_TOO_LARGE)
		return api_error(api, conn, MHD_HTTP_CONTENT_TOO_LARGE,
		                 "payload_too_large", "request body too large",
		                 NULL, NULL);
	if (req->reject_status != 0)
		return api_respond_internal(api, conn);
	if (req->dht)
		return fmd_api_dht_request(api, api->d, conn, method, url,
		                           &req->dht_state);
	if (req->jobs)
		return fmd_api_jobs_request(api, api->d, conn, method, url,
		                            req->body, req->body_len,
		                            &req->jobs_state);
	if (req->route == NULL)
		return api_error(api, conn, MHD_HTTP_NOT_FOUND, "not_found",
		                 "no such endpoint", NULL, NULL);
	if (req->route->get != NULL &&
	    (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	     strcmp(method, MHD_HTTP_METHOD_HEAD) == 0))
		return req->route->get(api, conn);
	if (req->route->post != NULL &&
	    strcmp(method, MHD_HTTP_METHOD_POST) == 0)
		return req->route->post(api, conn, req->body, req->body_len);
	return api_error(
	        api, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
	        req->route->post != NULL ? "this endpoint takes POST only"
	                                 : "this endpoint takes GET only",
	        MHD_HTTP_HEADER_ALLOW, req->route->allow);
}

static void api_on_completed(void *cls, struct MHD_Connection *conn,
                             void **req_cls,
                             enum MHD_RequestTerminationCode toe)
{
	api_req *req = *req_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (req == NULL)
		return;
	fmd_api_jobs_request_done(req->jobs_state);
	fmd_api_dht_request_done(req->dht_state);
	free(req->body);
	free(req);
	*req_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void
api_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[FMD_API_LOG_LINE_MAX];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	fmd_log(FM_LOG_WARN, "api", "microhttpd: %s", line);
}

/* ---- the libuv side ------------------------------------------------------ */

static void api_on_timer(uv_timer_t *timer);

/* Runs MHD once, then sleeps until its next deadline: the epoll fd covers
 * socket readiness, the timer covers timeouts and leftover work. */
static void api_run(fmd_api *api, int from_timer)
{
	MHD_UNSIGNED_LONG_LONG timeout_ms;

	/* MHD_NO here means misuse (wrong mode), not a client's error. */
	if (MHD_run(api->mhd) != MHD_YES)
		fmd_log(FM_LOG_ERROR, "api", "MHD_run failed");
	if (MHD_get_timeout(api->mhd, &timeout_ms) != MHD_YES) {
		uv_timer_stop(&api->timer);
		return;
	}
	if (timeout_ms == 0 && from_timer)
		timeout_ms = FMD_API_RERUN_DELAY_MS;
	uv_timer_start(&api->timer, api_on_timer, (uint64_t)timeout_ms, 0);
}

static void api_on_timer(uv_timer_t *timer)
{
	api_run(timer->data, 1);
}

static void api_on_poll(uv_poll_t *poll, int status, int events)
{
	(void)events;
	if (status < 0)
		fmd_log(FM_LOG_WARN, "api", "poll on the MHD epoll fd: %s",
		        uv_strerror(status));
	api_run(poll->data, 0);
}

static void api_free(fmd_api *api)
{
	sodium_memzero(api->token, sizeof(api->token));
	free(api);
}

static void api_on_handle_closed(uv_handle_t *handle)
{
	fmd_api *api = handle->data;

	if (--api->handles_open == 0)
		api_free(api);
}

/* Shared by stop and by a failed start. The poll handle is closed before
 * MHD closes the epoll fd it watches; the struct is freed by the last close
 * callback (or at once when no handle was initialised). */
static void api_release(fmd_api *api)
{
	if (api->poll_inited)
		uv_close((uv_handle_t *)&api->poll, api_on_handle_closed);
	if (api->timer_inited)
		uv_close((uv_handle_t *)&api->timer, api_on_handle_closed);
	api->poll_inited = 0;
	api->timer_inited = 0;
	if (api->mhd != NULL)
		MHD_stop_daemon(api->mhd);
	api->mhd = NULL;
	if (api->handles_open == 0)
		api_free(api);
}

/* Builds the sockaddr MHD binds from "ADDR:PORT" / "[V6]:PORT". */
static int api_sockaddr(const fm_addr *fa, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (fa->family == FM_AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(fa->port);
		memcpy(&sin->sin_addr, fa->ip, 4);
		return 0;
	}
	if (fa->family == FM_AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(fa->port);
		memcpy(&sin6->sin6_addr, fa->ip, 16);
		return 0;
	}
	return -EINVAL;
}

/* What clients should dial: the bound address, with a wildcard replaced by
 * loopback (the API answers only to local Host names anyway). */
static int api_public_addr(const fm_addr *bound, uint16_t port, char *out,
                           size_t out_len)
{
	static const uint8_t zero[16];
	fm_addr shown = *bound;

	shown.port = port;
	if (shown.family == FM_AF_INET && memcmp(shown.ip, zero, 4) == 0) {
		static const uint8_t v4_loopback[4] = {127, 0, 0, 1};

		memcpy(shown.ip, v4_loopback, sizeof(v4_loopback));
	} else if (shown.family == FM_AF_INET6 &&
	           memcmp(shown.ip, zero, 16) == 0) {
		shown.ip[15] = 1;
	}
	return fm_addr_format(&shown, out, out_len);
}

int fmd_api_start(fmd *d, const char *addr, const char *token, fmd_api **out,
                  char *err, size_t err_len)
{
	fmd_api *api = NULL;
	fm_addr fa;
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	/* Suspend/resume: the long-polls of /v1/jobs?wait (api_jobs.c). */
	unsigned int flags =
	        MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	int epoll_fd;
	uint16_t port;
	int rc;

	if (d == NULL || d->loop == NULL || addr == NULL || out == NULL) {
		api_set_err(err, err_len, "api: missing argument");
		return -EINVAL;
	}
	*out = NULL;
	if (!api_token_valid(token)) {
		api_set_err(err, err_len,
		            "api: token must be %d hex characters",
		            FMD_API_TOKEN_HEX_LEN);
		return -EINVAL;
	}
	if (fm_addr_parse(addr, &fa) != 0 || api_sockaddr(&fa, &ss) != 0) {
		api_set_err(err, err_len,
		            "api: bad address '%s' (want ADDR:PORT or "
		            "[V6]:PORT)",
		            addr);
		return -EINVAL;
	}
	if (fa.family == FM_AF_INET6)
		flags |= MHD_USE_IPv6;

	api = calloc(1, sizeof(*api));
	if (api == NULL) {
		api_set_err(err, err_len, "api: out of memory");
		return -ENOMEM;
	}
	api->d = d;
	memcpy(api->token, token, FMD_API_TOKEN_HEX_LEN);

	errno = 0;
	api->mhd = MHD_start_daemon(
	        flags, 0, NULL, NULL, api_on_request, api,
	        /* First, so MHD's complaints about later options reach us. */
	        MHD_OPTION_EXTERNAL_LOGGER, (MHD_LogCallback)api_mhd_log, api,
	        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	        MHD_OPTION_CONNECTION_LIMIT,
	        (unsigned int)FMD_API_CONNECTION_LIMIT,
	        MHD_OPTION_CONNECTION_TIMEOUT,
	        (unsigned int)FMD_API_CONNECTION_TIMEOUT_S,
	        MHD_OPTION_NOTIFY_COMPLETED, api_on_completed, api,
	        /* Refuse sloppy HTTP rather than guess at it. */
	        MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
	if (api->mhd == NULL) {
		rc = errno != 0 ? -errno : -EIO;
		api_set_err(err, err_len, "api: cannot listen on %s: %s", addr,
		            strerror(-rc));
		goto fail;
	}

	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	epoll_fd = info != NULL ? info->epoll_fd : -1;
	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	port = info != NULL ? info->port : 0;
	if (epoll_fd < 0 || port == 0) {
		rc = -EIO;
		api_set_err(err, err_len,
		            "api: microhttpd gave no epoll fd or port");
		goto fail;
	}
	rc = api_public_addr(&fa, port, d->api_addr, sizeof(d->api_addr));
	if (rc < 0) {
		api_set_err(err, err_len, "api: cannot format bound address");
		goto fail;
	}

	rc = uv_poll_init(d->loop, &api->poll, epoll_fd);
	if (rc < 0) {
		api_set_err(err, err_len, "api: uv_poll_init: %s",
		            uv_strerror(rc));
		goto fail;
	}
	api->poll.data = api;
	api->poll_inited = 1;
	api->handles_open++;
	rc = uv_timer_init(d->loop, &api->timer);
	if (rc < 0) {
		api_set_err(err, err_len, "api: uv_timer_init: %s",
		            uv_strerror(rc));
		goto fail;
	}
	api->timer.data = api;
	api->timer_inited = 1;
	api->handles_open++;
	rc = uv_poll_start(&api->poll, UV_READABLE, api_on_poll);
	if (rc < 0) {
		api_set_err(err, err_len, "api: uv_poll_start: %s",
		            uv_strerror(rc));
		goto fail;
	}

	fmd_log(FM_LOG_INFO, "api", "listening on %s", d->api_addr);
	*out = api;
	return 0;
fail:
	d->api_addr[0] = '\0';
	api_release(api);
	return rc;
}

void fmd_api_stop(fmd_api *api)
{
	if (api == NULL)
		return;
	if (api->d->api == api)
		api->d->api = NULL;
	/* MHD must not stop with suspended connections. */
	fmd_api_jobs_stop(api->d);
	fmd_api_dht_stop(api->d);
	if (api->mhd != NULL)
		MHD_run(api->mhd);
	api_release(api);
}

void fmd_api_kick(fmd_api *api)
{
	/* From the loop, not from here: this may run inside MHD_run. */
	if (api != NULL && api->timer_inited)
		uv_timer_start(&api->timer, api_on_timer, 0, 0);
}

enum MHD_Result fmd_api_respond_json(fmd_api *api, struct MHD_Connection *conn,
                                     unsigned status, json_t *body)
{
	return api_respond_json(api, conn, status, body, NULL, NULL);
}

enum MHD_Result fmd_api_respond_error(fmd_api *api, struct MHD_Connection *conn,
                                      unsigned status, const char *code,
                                      const char *message, const char *allow)
{
	return api_error(api, conn, status, code, message,
	                 allow != NULL ? MHD_HTTP_HEADER_ALLOW : NULL, allow);
}
