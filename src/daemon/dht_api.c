/* The DHT in the daemon: the stored routing table back into the core at
 * start, GET /v1/dht, GET /v1/find/SERVICE and the DHT metrics.
 *
 * A find starts a lookup in the core (fm_node_find_service) and suspends
 * the connection (MHD_suspend_connection). The core calls back later, on
 * the loop thread, from inside fm_node_recv_datagram() or fm_node_tick();
 * the callback copies the providers out and resumes the connection, and the
 * handler, called again, answers. A timer bounds the wait. A lookup cannot
 * be cancelled, so what the core holds is a small `find_pending` that
 * outlives the request when the client goes away or the timer fires first:
 * it is freed by the core's callback, which always comes (-ECANCELED when
 * the node is freed). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "api_jobs.h" /* fmd_api_kick, fmd_api_respond_json/_error */
#include "dht_api.h"
#include "log.h"
#include "metrics_text.h"
#include "net.h"

#define FMD_DHT_TIME_MAX 32
#define FMD_DHT_ALLOW "GET, HEAD"

/* ---- restoring the table ------------------------------------------------ */

int fmd_dht_restore(fmd *d)
{
	const size_t hex_cap = 2 * (size_t)FMD_DHT_TABLE_MAX_BYTES + 1;
	fm_dht_stats st;
	uint8_t *buf = NULL;
	char *hex = NULL;
	size_t len;
	int rc;

	if (d == NULL || d->store == NULL || d->node == NULL)
		return -EINVAL;
	hex = malloc(hex_cap);
	if (hex == NULL)
		return -ENOMEM;
	rc = fmd_store_setting_get(d->store, FMD_DHT_TABLE_SETTING, hex,
	                           hex_cap);
	if (rc == -ENOENT || (rc == 0 && hex[0] == '\0')) {
		rc = 0; /* first start, or a fresh federation */
		goto cleanup;
	}
	if (rc < 0) {
		fmd_log(FM_LOG_WARN, "dht",
		        "cannot read the stored routing table: %s",
		        strerror(-rc));
		goto cleanup;
	}
	len = strlen(hex);
	buf = malloc(len / 2 + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = (len % 2 == 0) ? fm_hex_decode(hex, buf, len / 2) : -EINVAL;
	if (rc == 0)
		rc = fm_node_dht_restore(d->node, fmd_now_ms(d), buf, len / 2);
	if (rc == -ENOTSUP) { /* --no-dht */
		rc = 0;
		goto cleanup;
	}
	if (rc < 0) {
		fmd_log(FM_LOG_WARN, "dht",
		        "ignoring the stored routing table (%s); the node "
		        "joins through its bootstrap addresses only",
		        rc == -EBADMSG || rc == -EINVAL ? "malformed"
		                                        : strerror(-rc));
		goto cleanup;
	}
	fm_node_dht_stats(d->node, &st);
	fmd_log(FM_LOG_INFO, "dht",
	        "restored the stored routing table: %" PRIu32
	        " known address(es) to rejoin through",
	        st.known_addrs);
cleanup:
	free(buf);
	free(hex);
	return rc;
}

/* ---- helpers ---------------------------------------------------------- */

static json_t *time_json(const fmd *d, uint64_t node_ms)
{
	char text[FMD_DHT_TIME_MAX];
	int64_t unix_ms;
	struct tm tm;
	time_t t;

	if (node_ms == 0)
		return json_null();
	unix_ms = fmd_unix_from_node_ms(d, node_ms);
	if (unix_ms <= 0)
		return json_null();
	t = (time_t)(unix_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return json_null();
	return json_string(text);
}

/* A ratio rounded to 4 decimals, or null when there is nothing to divide. */
static json_t *ratio_json(uint64_t num, uint64_t den)
{
	double v;

	if (den == 0)
		return json_null();
	v = (double)num / (double)den;
	return json_real(round(v * 10000.0) / 10000.0);
}

static int is_get(const char *method)
{
	return strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	       strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

int fmd_api_dht_match(const char *url)
{
	size_t n = sizeof(FMD_API_FIND_PATH) - 1;

	if (strcmp(url, FMD_API_DHT_PATH) == 0)
		return 1;
	return strncmp(url, FMD_API_FIND_PATH, n) == 0 &&
	       (url[n] == '\0' || url[n] == '/');
}

/* ---- GET /v1/dht ------------------------------------------------------ */

static enum MHD_Result get_dht(fmd_api *api, const fmd *d,
                               struct MHD_Connection *conn)
{
	json_t *buckets = json_array();
	json_t *body;
	fm_dht_stats st;
	int i;

	memset(&st, 0, sizeof(st));
	if (d->node != NULL)
		fm_node_dht_stats(d->node, &st);
	/* Only the buckets that hold something: a table of a few hundred
	 * nodes fills the top ten or so of 256. */
	for (i = 0; buckets != NULL && i < FM_DHT_BUCKET_COUNT; i++) {
		if (st.bucket_fill[i] == 0)
			continue;
		if (json_array_append_new(
		            buckets, json_pack("{s:i, s:i}", "index", i, "fill",
		                               (int)st.bucket_fill[i])) != 0) {
			json_decref(buckets);
			buckets = NULL;
		}
	}
	body = json_pack(
	        "{s:b, s:I, s:I, s:o, s:{s:I, s:I, s:o, s:o, s:o}, s:o, s:I, "
	        "s:I, s:I, s:{s:I, s:I, s:I}, s:I}",
	        "enabled", (int)st.enabled, "table_size",
	        (json_int_t)st.table_size, "table_live",
	        (json_int_t)st.table_live, "buckets", buckets, "lookups",
	        "count", (json_int_t)st.lookups, "succeeded",
	        (json_int_t)st.lookups_succeeded, "success_rate",
	        ratio_json(st.lookups_succeeded, st.lookups), "hops_mean",
	        ratio_json(st.lookup_hops_sum, st.lookups_succeeded),
	        "messages_mean", ratio_json(st.lookup_messages_sum, st.lookups),
	        "last_bootstrap", time_json(d, st.last_bootstrap_ms),
	        "bootstraps", (json_int_t)st.bootstraps, "known_addrs",
	        (json_int_t)st.known_addrs, "values_stored",
	        (json_int_t)st.values_stored, "datagrams", "received",
	        (json_int_t)st.datagrams_received, "sent",
	        (json_int_t)st.datagrams_sent, "dropped",
	        (json_int_t)st.datagrams_dropped, "rpc_timeouts",
	        (json_int_t)st.rpc_timeouts);
	return fmd_api_respond_json(api, conn, MHD_HTTP_OK, body);
}

/* ---- GET /v1/find/SERVICE ---------------------------------------------- */

struct find_req;

/* What the core holds as the lookup's ctx; freed by its callback. */
typedef struct find_pending {
	struct find_req *req; /* NULL once the request has gone */
} find_pending;

typedef struct find_req {
	struct find_req *next, *prev; /* every live find request */
	fmd *d;
	fmd_api *api;
	struct MHD_Connection *conn;
	find_pending *pending; /* NULL once the core answered or we gave up */
	uv_timer_t timer;
	int timer_open;
	int suspended;
	int done;
	/* 0, or why there is no answer: the core's status, -ETIME when the
	 * wait ran out, -ESHUTDOWN when the API is stopping. */
	int status;
	json_t *providers;
	char service[FM_SERVICE_NAME_MAX + 1];
} find_req;

static find_req *find_reqs; /* one daemon per process */

static void find_unlink(find_req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (find_reqs == r)
		find_reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
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

/* One provider: its node ID, its advertised addresses, and the slots its
 * record gives the service. */
static json_t *provider_json(const fm_record *rec, const char *service)
{
	char id[FM_NODE_ID_HEX_LEN + 1];
	char addr[FM_ADDR_STR_MAX];
	json_t *addrs = json_array();
	json_t *slots = json_null();
	size_t i;

	fm_hex_encode(rec->node_id, FM_NODE_ID_BYTES, id);
	for (i = 0;
	     addrs != NULL && i < rec->addr_count && i < FM_RECORD_ADDRS_MAX;
	     i++) {
		if (fm_addr_format(&rec->addrs[i], addr, sizeof(addr)) != 0)
			continue;
		if (json_array_append_new(addrs, json_string(addr)) != 0) {
			json_decref(addrs);
			addrs = NULL;
		}
	}
	for (i = 0; i < rec->service_count && i < FM_RECORD_SERVICES_MAX; i++)
		if (strncmp(rec->services[i].name, service,
		            sizeof(rec->services[i].name)) == 0) {
			json_decref(slots);
			slots = json_integer(rec->services[i].slots);
			break;
		}
	return json_pack("{s:s, s:o, s:o}", "node_id", id, "addresses", addrs,
	                 "slots", slots);
}

static void find_wake(find_req *r)
{
	r->done = 1;
	if (r->timer_open)
		uv_timer_stop(&r->timer);
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		fmd_api_kick(r->api);
	}
}

/* The core's answer: on the loop thread, inside recv or tick (or inside
 * fm_node_free, with -ECANCELED). The records live only during the call. */
static void on_found(void *ctx, int status, const fm_record *records,
                     size_t count, uint32_t hops)
{
	find_pending *p = ctx;
	find_req *r = p->req;
	size_t i;

	(void)hops;
	free(p);
	if (r == NULL) /* the client left, or the wait ran out */
		return;
	r->pending = NULL;
	r->status = status;
	/* -ENOENT is "no value" and "no node answered" alike: with no live
	 * entry left it was the latter, and "no provider" would mislead. */
	if (status == -ENOENT && count == 0 && r->d->node != NULL) {
		fm_dht_stats st;

		fm_node_dht_stats(r->d->node, &st);
		if (st.table_live == 0)
			r->status = -EHOSTUNREACH;
	}
	if (r->status == 0 || r->status == -ENOENT) {
		r->status = 0;
		r->providers = json_array();
		for (i = 0; r->providers != NULL && i < count; i++)
			if (json_array_append_new(
			            r->providers,
			            provider_json(&records[i], r->service)) !=
			    0) {
				json_decref(r->providers);
				r->providers = NULL;
			}
		if (r->providers == NULL)
			r->status = -ENOMEM;
	}
	find_wake(r);
}

static void on_find_timer(uv_timer_t *t)
{
	find_req *r = t->data;

	if (r->done)
		return;
	/* The lookup goes on in the core; its answer will find no one. */
	if (r->pending != NULL)
		r->pending->req = NULL;
	r->pending = NULL;
	r->status = -ETIME;
	find_wake(r);
}

static void on_find_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static enum MHD_Result find_answer(fmd_api *api, struct MHD_Connection *conn,
                                   find_req *r)
{
	char msg[160];
	json_t *body;

	switch (r->status) {
	case 0:
		body = r->providers;
		r->providers = NULL;
		return fmd_api_respond_json(api, conn, MHD_HTTP_OK, body);
	case -ETIME:
	case -ETIMEDOUT:
		snprintf(msg, sizeof(msg),
		         "the DHT lookup for '%s' did not finish within %d s",
		         r->service, FMD_DHT_FIND_WAIT_MS / 1000);
		return fmd_api_respond_error(api, conn,
		                             MHD_HTTP_GATEWAY_TIMEOUT,
		                             "timeout", msg, NULL);
	case -EHOSTUNREACH:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_GATEWAY_TIMEOUT, "unreachable",
		        "no node of the DHT answered the lookup (is the "
		        "network down?)",
		        NULL);
	case -ESHUTDOWN:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		        "fedmeshd is shutting down", NULL);
	case -ECANCELED:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "cancelled",
		        "the lookup was cancelled (the node left the "
		        "federation or is stopping)",
		        NULL);
	default:
		snprintf(msg, sizeof(msg), "the DHT lookup failed: %s",
		         strerror(-r->status));
		return fmd_api_respond_error(api, conn,
		                             MHD_HTTP_INTERNAL_SERVER_ERROR,
		                             "internal", msg, NULL);
	}
}

static enum MHD_Result find_start_error(fmd_api *api,
                                        struct MHD_Connection *conn, int rc)
{
	switch (rc) {
	case -ENOTSUP:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "dht_disabled",
		        "the DHT is disabled on this node (--no-dht)", NULL);
	case -ENOTCONN:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "dht_empty",
		        "the DHT routing table is empty: no node to ask yet "
		        "(join a federation, or wait for the bootstrap)",
		        NULL);
	case -EBUSY:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
		        "too many DHT lookups are running; try again shortly",
		        NULL);
	default:
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
		        "cannot start the DHT lookup", NULL);
	}
}

static enum MHD_Result get_find(fmd_api *api, fmd *d,
                                struct MHD_Connection *conn,
                                const char *service, void **state)
{
	find_pending *p;
	find_req *r;
	int rc;

	if (!service_valid(service))
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_BAD_REQUEST, "bad_request",
		        "a service name is 1 to 32 characters of a-z, 0-9, "
		        "'_', '.' and '-'",
		        NULL);
	if (d->node == NULL)
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		        "the node is not running", NULL);
	r = calloc(1, sizeof(*r));
	p = calloc(1, sizeof(*p));
	if (r == NULL || p == NULL) {
		free(r);
		free(p);
		return fmd_api_respond_error(api, conn,
		                             MHD_HTTP_INTERNAL_SERVER_ERROR,
		                             "internal", "out of memory", NULL);
	}
	r->d = d;
	r->api = api;
	r->conn = conn;
	snprintf(r->service, sizeof(r->service), "%s", service);
	p->req = r;
	r->pending = p;
	/* On an error the callback is never called. */
	rc = fm_node_find_service(d->node, fmd_now_ms(d), service, on_found, p);
	if (rc < 0) {
		free(p);
		free(r);
		return find_start_error(api, conn, rc);
	}
	r->next = find_reqs;
	if (find_reqs != NULL)
		find_reqs->prev = r;
	find_reqs = r;
	*state = r;
	/* The lookup's first requests leave now; this may even end it. */
	fmd_net_kick(d);
	if (r->done)
		return find_answer(api, conn, r);
	if (uv_timer_init(d->loop, &r->timer) != 0) {
		r->pending->req = NULL;
		r->pending = NULL;
		r->status = -ENOMEM;
		r->done = 1;
		return find_answer(api, conn, r);
	}
	r->timer.data = r;
	r->timer_open = 1;
	uv_timer_start(&r->timer, on_find_timer, FMD_DHT_FIND_WAIT_MS, 0);
	r->suspended = 1;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

enum MHD_Result fmd_api_dht_request(fmd_api *api, fmd *d,
                                    struct MHD_Connection *conn,
                                    const char *method, const char *url,
                                    void **state)
{
	find_req *r = *state;
	size_t n = sizeof(FMD_API_FIND_PATH) - 1;

	/* Called again after a resume: the lookup is over. */
	if (r != NULL) {
		if (!r->done)
			return MHD_YES;
		return find_answer(api, conn, r);
	}
	if (!is_get(method))
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		        "method_not_allowed", "this endpoint takes GET only",
		        FMD_DHT_ALLOW);
	if (strcmp(url, FMD_API_DHT_PATH) == 0)
		return get_dht(api, d, conn);
	if (url[n] == '\0' || url[n + 1] == '\0')
		return fmd_api_respond_error(
		        api, conn, MHD_HTTP_NOT_FOUND, "not_found",
		        "no such endpoint (GET /v1/find/SERVICE)", NULL);
	return get_find(api, d, conn, url + n + 1, state);
}

void fmd_api_dht_request_done(void *state)
{
	find_req *r = state;

	if (r == NULL)
		return;
	find_unlink(r);
	if (r->pending != NULL)
		r->pending->req = NULL;
	r->pending = NULL;
	json_decref(r->providers);
	r->providers = NULL;
	if (r->timer_open) {
		r->timer_open = 0;
		uv_close((uv_handle_t *)&r->timer, on_find_timer_closed);
		return;
	}
	free(r);
}

void fmd_api_dht_stop(fmd *d)
{
	find_req *r;

	for (r = find_reqs; r != NULL; r = r->next) {
		if (r->d != d || r->done)
			continue;
		if (r->pending != NULL)
			r->pending->req = NULL;
		r->pending = NULL;
		r->status = -ESHUTDOWN;
		find_wake(r);
	}
}

/* ---- metrics ----------------------------------------------------------- */

int fmd_dht_metrics(const fmd *d, char *buf, size_t len, size_t cap)
{
	fmd_mtext t = {.buf = buf, .len = len, .cap = cap};
	fm_dht_stats st;

	if (len > cap)
		return -ENOSPC;
	memset(&st, 0, sizeof(st));
	if (d->node != NULL)
		fm_node_dht_stats(d->node, &st);
	fmd_mtext_metric(&t, "fedmesh_dht_enabled", "gauge",
	                 "1 when the Kademlia DHT runs on this node.",
	                 st.enabled);
	fmd_mtext_metric(&t, "fedmesh_dht_table_size", "gauge",
	                 "Entries in the DHT routing table.", st.table_size);
	fmd_mtext_metric(&t, "fedmesh_dht_table_live", "gauge",
	                 "Routing table entries that are not stale.",
	                 st.table_live);
	fmd_mtext_metric(&t, "fedmesh_dht_known_addresses", "gauge",
	                 "Addresses kept for re-bootstrapping.",
	                 st.known_addrs);
	fmd_mtext_metric(&t, "fedmesh_dht_values_stored", "gauge",
	                 "Signed records this node stores for the DHT.",
	                 st.values_stored);
	fmd_mtext_metric(&t, "fedmesh_dht_lookups_total", "counter",
	                 "DHT lookups completed (maintenance included).",
	                 st.lookups);
	fmd_mtext_metric(&t, "fedmesh_dht_lookups_succeeded_total", "counter",
	                 "DHT lookups that succeeded.", st.lookups_succeeded);
	fmd_mtext_metric(&t, "fedmesh_dht_lookup_hops_total", "counter",
	                 "Hops of the succeeded lookups, summed.",
	                 st.lookup_hops_sum);
	fmd_mtext_metric(
	        &t, "fedmesh_dht_lookup_messages_total", "counter",
	        "Requests sent by lookups, resends and pages included.",
	        st.lookup_messages_sum);
	fmd_mtext_metric(&t, "fedmesh_dht_bootstraps_total", "counter",
	                 "Bootstrap rounds (the table had no live entry).",
	                 st.bootstraps);
	fmd_mtext_metric(&t, "fedmesh_dht_datagrams_received_total", "counter",
	                 "DHT datagrams received.", st.datagrams_received);
	fmd_mtext_metric(&t, "fedmesh_dht_datagrams_sent_total", "counter",
	                 "DHT datagrams sent.", st.datagrams_sent);
	fmd_mtext_metric(
	        &t, "fedmesh_dht_datagrams_dropped_total", "counter",
	        "DHT datagrams dropped (bad seal, malformed, rate limited, "
	        "...).",
	        st.datagrams_dropped);
	fmd_mtext_metric(&t, "fedmesh_dht_rpc_timeouts_total", "counter",
	                 "DHT requests that got no answer after every attempt.",
	                 st.rpc_timeouts);
	return t.overflow ? -ENOSPC : (int)t.len;
}
