/* struct fm_node: the state of one fedmesh node and the entry points the
 * drivers call with explicit time. The node owns its identity, its signed
 * record, its sessions (session.c), its peer table (peer.c) and local
 * discovery (mdns.c, beacon.c), the DHT (dht.c) and jobs (jobs.c).
 * Datagrams are the discovery beacon and the DHT's; every other datagram
 * is dropped and counted: non-members get silence. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "jobs.h"
#include "mdns.h"

#define FM__VERSION "0.1.0"

const char *fm_version(void)
{
	return FM__VERSION;
}

void fm__log(const fm_node *node, enum fm_log_level level,
             const char *subsystem, const char *fmt, ...)
{
	char line[FM__LOG_LINE_MAX];
	va_list ap;

	if (node->io.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	node->io.log(node->io.ctx, level, subsystem, line);
}

static int build_record(fm_node *node, const fm_node_config *cfg)
{
	fm_record *r = &node->record;
	uint8_t i;

	if (cfg->advertise_count > FM_RECORD_ADDRS_MAX ||
	    cfg->service_count > FM_RECORD_SERVICES_MAX)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->seq = cfg->record_seq;
	for (i = 0; i < cfg->advertise_count; i++)
		r->addrs[i] = cfg->advertise[i];
	r->addr_count = cfg->advertise_count;
	for (i = 0; i < cfg->service_count; i++)
		r->services[i] = cfg->services[i];
	r->service_count = cfg->service_count;
	r->capacity = cfg->capacity;
	if (fm_record_sign(r, &node->identity) != 0)
		return -EINVAL;
	return fm_record_encode(r, node->record_bytes,
	                        sizeof(node->record_bytes), &node->record_len);
}

int fm_node_new(const fm_node_config *cfg, const fm_io *io, uint64_t now_ms,
                fm_node **out)
{
	fm_node *node;
	int rc;

	if (cfg == NULL || io == NULL || out == NULL)
		return -EINVAL;
	*out = NULL;
	if (io->send_datagram == NULL || io->random_bytes == NULL)
		return -EINVAL;
	node = calloc(1, sizeof(*node));
	if (node == NULL)
		return -ENOMEM;
	node->io = *io;
	node->identity = cfg->identity;
	memcpy(node->federation_key, cfg->federation_key,
	       FM_FEDERATION_KEY_BYTES);
	rc = fm_identity_check(&node->identity);
	if (rc == 0)
		rc = fm__session_keys_init(node);
	if (rc == 0)
		rc = build_record(node, cfg);
	node->started_ms = now_ms;
	node->last_now_ms = now_ms;
	node->handshakes_max = cfg->handshakes_max;
	if (node->handshakes_max == 0 || node->handshakes_max > FM_SESSIONS_MAX)
		node->handshakes_max = FM_HANDSHAKES_MAX;
	if (rc == 0)
		rc = fm__disc_new(node, cfg);
	if (rc == 0)
		rc = fm__jobs_new(node, cfg);
	if (rc == 0 && !cfg->dht_disabled) {
		fm__dht_config dc;
		memset(&dc, 0, sizeof(dc));
		dc.identity = node->identity;
		memcpy(dc.federation_key, node->federation_key,
		       FM_FEDERATION_KEY_BYTES);
		dc.record = &node->record;
		dc.subnet_max = cfg->dht_subnet_max;
		rc = fm__dht_new(&dc, &node->io, now_ms, &node->dht);
		sodium_memzero(&dc, sizeof(dc));
	}
	if (rc != 0) {
		fm_node_free(node);
		return rc;
	}
	*out = node;
	return 0;
}

void fm_node_free(fm_node *node)
{
	if (node == NULL)
		return;
	fm__sessions_free(node);
	fm__disc_free(node);
	fm__jobs_free(node);
	fm__dht_free(node->dht);
	free(node->peers);
	sodium_memzero(node->x25519_secret, sizeof(node->x25519_secret));
	sodium_memzero(node->federation_key, sizeof(node->federation_key));
	sodium_memzero(node->mac1_key, sizeof(node->mac1_key));
	fm_identity_wipe(&node->identity);
	free(node);
}

void fm_node_set_federation(fm_node *node, uint64_t now_ms,
                            const uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	fm__session_close_all(node, now_ms, "federation changed");
	fm__peer_forget_all(node);
	memcpy(node->federation_key, key, FM_FEDERATION_KEY_BYTES);
	fm__session_set_federation(node);
	fm__disc_set_federation(node, node->last_now_ms);
	if (node->dht != NULL)
		fm__dht_set_federation(node->dht, node->last_now_ms, key);
	fm__log(node, FM_LOG_INFO, "node", "switched federation");
}

void fm_node_get_record(const fm_node *node, fm_record *out)
{
	*out = node->record;
}

/* Drivers must hand in a monotonic clock; a clock that steps backwards is
 * clamped so timers never fire twice or go negative. */
static void advance_clock(fm_node *node, uint64_t now_ms)
{
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
}

void fm_node_recv_datagram(fm_node *node, uint64_t now_ms, const fm_addr *from,
                           const uint8_t *buf, size_t len)
{
	advance_clock(node, now_ms);
	node->stats.datagrams_received++;
	if (len > FM_DATAGRAM_MAX_BYTES) {
		node->stats.datagrams_dropped[FM_DROP_OVERSIZE]++;
		return;
	}
	/* The discovery beacon is sealed with a key derived from the
	 * federation key; beacon.c counts what fails to open. */
	if (node->disc != NULL && node->disc->beacon_enabled &&
	    fm__beacon_is(buf, len)) {
		fm__beacon_recv(node, node->last_now_ms, from, buf, len);
		return;
	}
	/* DHT RPCs are sealed with their own key; dht.c drops and counts
	 * what does not open, and answers nothing to it. */
	if (node->dht != NULL && fm__dht_is_datagram(buf, len)) {
		fm__dht_recv(node->dht, node->last_now_ms, from, buf, len);
		return;
	}
	/* Nothing else is a fedmesh datagram: drop without answering so
	 * outsiders learn nothing. */
	node->stats.datagrams_dropped[FM_DROP_UNAUTHENTICATED]++;
}

uint64_t fm_node_tick(fm_node *node, uint64_t now_ms)
{
	uint64_t next, peers, disc;

	advance_clock(node, now_ms);
	now_ms = node->last_now_ms;
	node->stats.ticks++;
	/* After shutdown nothing is dialled or sent again. */
	if (node->shut_down)
		return FM_DEADLINE_NONE;
	next = fm__session_tick(node, now_ms);
	/* Discovery first: the contacts it adds are dialled just below. */
	disc = fm__disc_tick(node, now_ms);
	if (disc < next)
		next = disc;
	peers = fm__peer_tick(node, now_ms);
	/* Dialling may have opened sessions with deadlines of their own. */
	if (peers < next)
		next = peers;
	if (node->dht != NULL) {
		uint64_t dht = fm__dht_tick(node->dht, now_ms);
		if (dht < next)
			next = dht;
	}
	/* Last: jobs fail over from sessions the ticks above ended. */
	{
		uint64_t jobs = fm__jobs_tick(node, now_ms);
		if (jobs < next)
			next = jobs;
	}
	return next;
}

int fm_node_iface_update(fm_node *node, uint64_t now_ms, const fm_iface *iface)
{
	if (node == NULL)
		return -EINVAL;
	advance_clock(node, now_ms);
	return fm__disc_iface_update(node, node->last_now_ms, iface);
}

void fm_node_iface_remove(fm_node *node, uint64_t now_ms, uint32_t ifindex)
{
	advance_clock(node, now_ms);
	fm__disc_iface_remove(node, node->last_now_ms, ifindex);
}

void fm_node_recv_mdns(fm_node *node, uint64_t now_ms, uint32_t ifindex,
                       const fm_addr *from, const uint8_t *buf, size_t len)
{
	advance_clock(node, now_ms);
	fm__mdns_recv(node, node->last_now_ms, ifindex, from, buf, len);
}

/* Goodbyes first, while the interfaces can still send, then the sessions.
 * Closing a session schedules a redial in the peer table; fm_node_tick()
 * no longer runs the table, so none happens. */
void fm_node_shutdown(fm_node *node, uint64_t now_ms)
{
	if (node == NULL || node->shut_down)
		return;
	advance_clock(node, now_ms);
	fm__disc_shutdown(node, node->last_now_ms);
	if (node->dht != NULL)
		(void)fm__dht_persist(node->dht, node->last_now_ms);
	fm__session_close_all(node, node->last_now_ms, "shutdown");
	node->shut_down = 1;
	fm__log(node, FM_LOG_INFO, "node", "shut down");
}

void fm_node_get_status(const fm_node *node, fm_node_status *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	memcpy(out->node_id, node->identity.node_id, FM_NODE_ID_BYTES);
	for (i = 0; i < node->peer_count; i++)
		if (node->peers[i].info.state == FM_PEER_CONNECTED)
			out->peers_connected++;
	out->started_ms = node->started_ms;
}

void fm_node_get_stats(const fm_node *node, fm_node_stats *out)
{
	*out = node->stats;
}

const char *fm_drop_reason_name(enum fm_drop_reason reason)
{
	switch (reason) {
	case FM_DROP_OVERSIZE:
		return "oversize";
	case FM_DROP_UNAUTHENTICATED:
		return "unauthenticated";
	case FM_DROP_REASON_COUNT:
		break;
	}
	return "unknown";
}

const char *fm_session_error_name(enum fm_session_error err)
{
	static const char *const names[FM_SESS_ERROR_COUNT] = {
	        "bad_mac",      "bad_handshake",
	        "bad_identity", "bad_frame",
	        "bad_message",  "bad_record",
	        "oversize",     "handshake_timeout",
	        "idle_timeout", "limit",
	        "banned",       "duplicate",
	        "self",         "wrong_node",
	};

	return (unsigned)err < FM_SESS_ERROR_COUNT ? names[err] : "unknown";
}

/* ---- the DHT (dht.c) through the public API ---------------------------- */

void fm_node_dht_stats(const fm_node *node, fm_dht_stats *out)
{
	fm__dht_stats st;
	int i;

	memset(out, 0, sizeof(*out));
	if (node->dht == NULL)
		return;
	fm__dht_get_stats(node->dht, &st);
	out->enabled = 1;
	out->table_size = st.table_size;
	out->table_live = st.table_live;
	for (i = 0; i < FM_DHT_BUCKETS; i++)
		out->bucket_fill[i] = st.bucket_fill[i];
	out->known_addrs = st.known_addrs;
	out->values_stored = st.values_stored;
	out->lookups = st.lookups;
	out->lookups_succeeded = st.lookups_succeeded;
	out->lookup_hops_sum = st.lookup_hops_sum;
	out->lookup_messages_sum = st.lookup_messages_sum;
	out->last_bootstrap_ms = st.last_bootstrap_ms;
	out->bootstraps = st.bootstraps;
	out->datagrams_received = st.datagrams_received;
	out->datagrams_sent = st.datagrams_sent;
	for (i = 0; i < FM__DHT_DROP_COUNT; i++)
		out->datagrams_dropped += st.dropped[i];
	out->rpc_timeouts = st.rpc_timeouts;
}

struct find_call {
	fm_find_cb cb;
	fm_find_result_cb cb_ex;
	void *ctx;
};

static void on_find_done(void *ctx, const fm__dht_result *res)
{
	struct find_call *call = ctx;

	if (call->cb_ex != NULL) {
		fm_find_result r;
		memset(&r, 0, sizeof(r));
		r.status = res->status;
		r.records = res->records;
		r.count = res->record_count;
		r.hops = res->hops;
		r.messages = res->messages;
		r.duration_ms = res->duration_ms;
		call->cb_ex(call->ctx, &r);
	} else {
		call->cb(call->ctx, res->status, res->records,
		         res->record_count, res->hops);
	}
	free(call);
}

static int find_start(fm_node *node, uint64_t now_ms, const char *service,
                      const uint8_t *id, fm_find_cb cb, fm_find_result_cb cb_ex,
                      void *ctx)
{
	struct find_call *call;
	int rc;

	if (node->dht == NULL)
		return -ENOTSUP;
	if (cb == NULL && cb_ex == NULL)
		return -EINVAL;
	advance_clock(node, now_ms);
	call = malloc(sizeof(*call));
	if (call == NULL)
		return -ENOMEM;
	call->cb = cb;
	call->cb_ex = cb_ex;
	call->ctx = ctx;
	rc = service != NULL
	             ? fm__dht_find_service(node->dht, node->last_now_ms,
	                                    service, on_find_done, call)
	             : fm__dht_find_record(node->dht, node->last_now_ms, id,
	                                   on_find_done, call);
	if (rc != 0)
		free(call);
	return rc;
}

int fm_node_find_service(fm_node *node, uint64_t now_ms, const char *name,
                         fm_find_cb cb, void *ctx)
{
	if (name == NULL)
		return -EINVAL;
	return find_start(node, now_ms, name, NULL, cb, NULL, ctx);
}

int fm_node_find_record(fm_node *node, uint64_t now_ms,
                        const uint8_t id[FM_NODE_ID_BYTES], fm_find_cb cb,
                        void *ctx)
{
	if (id == NULL)
		return -EINVAL;
	return find_start(node, now_ms, NULL, id, cb, NULL, ctx);
}

int fm_node_find_service_ex(fm_node *node, uint64_t now_ms, const char *name,
                            fm_find_result_cb cb, void *ctx)
{
	if (name == NULL)
		return -EINVAL;
	return find_start(node, now_ms, name, NULL, NULL, cb, ctx);
}

int fm_node_find_record_ex(fm_node *node, uint64_t now_ms,
                           const uint8_t id[FM_NODE_ID_BYTES],
                           fm_find_result_cb cb, void *ctx)
{
	if (id == NULL)
		return -EINVAL;
	return find_start(node, now_ms, NULL, id, NULL, cb, ctx);
}

int fm_node_dht_bootstrap(fm_node *node, uint64_t now_ms, const fm_addr *addrs,
                          size_t n)
{
	if (node == NULL || (addrs == NULL && n > 0))
		return -EINVAL;
	if (node->dht == NULL)
		return -ENOTSUP;
	advance_clock(node, now_ms);
	return fm__dht_bootstrap(node->dht, node->last_now_ms, addrs, n);
}

int fm_node_dht_restore(fm_node *node, uint64_t now_ms, const uint8_t *buf,
                        size_t len)
{
	if (node->dht == NULL)
		return -ENOTSUP;
	advance_clock(node, now_ms);
	return fm__dht_restore(node->dht, node->last_now_ms, buf, len);
}
