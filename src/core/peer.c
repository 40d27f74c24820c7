/* The peer table and the reputation of its entries. A peer is a node ID we
 * have authenticated at least once, with the addresses we know for it and
 * how it has behaved; a contact is an address we were told to try (an
 * invite, --bootstrap) whose node ID we do not know yet. Both live in one
 * bounded table so that a contact becomes a peer in place once a session
 * proves who answers there. Reconnects are scheduled here, with
 * exponential backoff and jitter so a restart never becomes a storm. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static const char *const source_names[FM_SRC_COUNT] = {
        "bootstrap", "invite", "mdns", "beacon", "dht", "record", "inbound",
};

static const char *const state_names[FM_PEER_STATE_COUNT] = {
        "idle", "connecting", "connected", "backoff", "banned",
};

const char *fm_addr_source_name(enum fm_addr_source source)
{
	return (unsigned)source < FM_SRC_COUNT ? source_names[source]
	                                       : "unknown";
}

int fm_addr_source_parse(const char *name, enum fm_addr_source *out)
{
	int i;

	for (i = 0; i < FM_SRC_COUNT; i++) {
		if (name != NULL && strcmp(name, source_names[i]) == 0) {
			*out = (enum fm_addr_source)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *fm_peer_state_name(enum fm_peer_state state)
{
	return (unsigned)state < FM_PEER_STATE_COUNT ? state_names[state]
	                                             : "unknown";
}

double fm_reputation_score(const fm_reputation *rep)
{
	double good = rep->successes < FM_REPUTATION_SUCCESS_CAP
	                      ? rep->successes
	                      : FM_REPUTATION_SUCCESS_CAP;

	return FM_REPUTATION_W_SUCCESS * good -
	       FM_REPUTATION_W_FAILURE * rep->failures -
	       FM_REPUTATION_W_TIMEOUT * rep->timeouts -
	       FM_REPUTATION_W_INVALID * rep->invalid;
}

uint64_t fm__random_u64(const fm_node *node)
{
	uint64_t v = 0;

	node->io.random_bytes(node->io.ctx, (uint8_t *)&v, sizeof(v));
	return v;
}

int fm__addr_equal(const fm_addr *a, const fm_addr *b)
{
	size_t n = a->family == FM_AF_INET ? 4 : 16;

	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, n) == 0;
}

int fm__peer_find(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	size_t i;

	for (i = 0; i < node->peer_count; i++)
		if (node->peers[i].id_known &&
		    memcmp(node->peers[i].info.node_id, id, FM_NODE_ID_BYTES) ==
		            0)
			return (int)i;
	return -1;
}

int fm__peer_find_addr(const fm_node *node, const fm_addr *addr)
{
	size_t i;
	uint8_t j;

	for (i = 0; i < node->peer_count; i++) {
		const fm_peer_info *info = &node->peers[i].info;
		for (j = 0; j < info->addr_count; j++)
			if (info->addrs[j].source != FM_SRC_INBOUND &&
			    fm__addr_equal(&info->addrs[j].addr, addr))
				return (int)i;
	}
	return -1;
}

int fm__peer_new(fm_node *node, uint64_t now_ms)
{
	struct fm__peer *p;

	if (node->peer_count == node->peer_cap) {
		size_t cap = node->peer_cap == 0 ? 16 : node->peer_cap * 2;
		struct fm__peer *grown;
		if (cap > FM_PEERS_MAX)
			cap = FM_PEERS_MAX;
		if (cap <= node->peer_count)
			return -ENOSPC;
		grown = realloc(node->peers, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		node->peers = grown;
		node->peer_cap = cap;
	}
	p = &node->peers[node->peer_count];
	memset(p, 0, sizeof(*p));
	p->session = -1;
	p->info.rtt_ms = -1.0;
	p->rep_updated_ms = now_ms;
	return (int)node->peer_count++;
}

/* Removes entry index; the last entry moves into its place, so the session
 * pointing at the moved entry is repointed. */
static void remove_entry(fm_node *node, int index)
{
	size_t last = node->peer_count - 1;

	if ((size_t)index != last) {
		node->peers[index] = node->peers[last];
		if (node->peers[index].session >= 0)
			node->sessions[node->peers[index].session]->peer =
			        index;
	}
	node->peer_count--;
}

void fm__peer_forget(fm_node *node, int index)
{
	struct fm__peer *p = &node->peers[index];

	if (p->session >= 0)
		node->sessions[p->session]->peer = -1;
	if (p->id_known && node->io.peer_changed != NULL)
		node->io.peer_changed(node->io.ctx, &p->info, 1);
	remove_entry(node, index);
}

void fm__peer_forget_all(fm_node *node)
{
	while (node->peer_count > 0)
		fm__peer_forget(node, (int)node->peer_count - 1);
}

int fm__peer_add_addr(struct fm__peer *p, const fm_addr *addr,
                      enum fm_addr_source source)
{
	fm_peer_info *info = &p->info;
	uint8_t i;

	for (i = 0; i < info->addr_count; i++) {
		if (!fm__addr_equal(&info->addrs[i].addr, addr))
			continue;
		/* A dialable source beats "inbound" for the same address. */
		if (info->addrs[i].source == FM_SRC_INBOUND &&
		    source != FM_SRC_INBOUND) {
			info->addrs[i].source = (uint8_t)source;
			return 1;
		}
		return 0;
	}
	if (info->addr_count == FM_PEER_ADDRS_MAX) {
		/* Full: an inbound address (never dialled) gives way. */
		for (i = 0; i < info->addr_count; i++)
			if (info->addrs[i].source == FM_SRC_INBOUND &&
			    source != FM_SRC_INBOUND)
				break;
		if (i == info->addr_count)
			return 0;
	} else {
		i = info->addr_count++;
	}
	info->addrs[i].addr = *addr;
	info->addrs[i].source = (uint8_t)source;
	return 1;
}

void fm__peer_remove_addr(struct fm__peer *p, const fm_addr *addr)
{
	fm_peer_info *info = &p->info;
	uint8_t i;

	for (i = 0; i < info->addr_count; i++) {
		if (!fm__addr_equal(&info->addrs[i].addr, addr))
			continue;
		info->addrs[i] = info->addrs[info->addr_count - 1];
		info->addr_count--;
		return;
	}
}

int fm__peer_dialable(const struct fm__peer *p)
{
	uint8_t i;

	for (i = 0; i < p->info.addr_count; i++)
		if (p->info.addrs[i].source != FM_SRC_INBOUND)
			return 1;
	return 0;
}

void fm__peer_set_error(struct fm__peer *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->info.last_error, sizeof(p->info.last_error), fmt, ap);
	va_end(ap);
}

/* Counters decay continuously; they are brought up to date lazily. */
static void decay(struct fm__peer *p, uint64_t now_ms)
{
	fm_reputation *r = &p->info.reputation;
	double f;

	if (now_ms <= p->rep_updated_ms)
		return;
	f = pow(0.5, (double)(now_ms - p->rep_updated_ms) /
	                     (double)FM_REPUTATION_HALF_LIFE_MS);
	r->invalid *= f;
	r->failures *= f;
	r->timeouts *= f;
	r->successes *= f;
	p->rep_updated_ms = now_ms;
}

static void refresh_public(struct fm__peer *p, uint64_t now_ms)
{
	decay(p, now_ms);
	p->info.score = fm_reputation_score(&p->info.reputation);
	p->info.reputation.ban_remaining_ms =
	        p->ban_until_ms > now_ms ? p->ban_until_ms - now_ms : 0;
}

void fm__peer_changed(fm_node *node, uint64_t now_ms, int index)
{
	struct fm__peer *p = &node->peers[index];

	refresh_public(p, now_ms);
	p->persisted_ms = now_ms;
	if (p->id_known && node->io.peer_changed != NULL)
		node->io.peer_changed(node->io.ctx, &p->info, 0);
}

void fm__peer_record_rtt(struct fm__peer *p, double sample_ms)
{
	if (sample_ms < 0)
		return;
	if (p->info.rtt_ms < 0)
		p->info.rtt_ms = sample_ms;
	else
		p->info.rtt_ms = (1.0 - FM_RTT_EWMA_WEIGHT) * p->info.rtt_ms +
		                 FM_RTT_EWMA_WEIGHT * sample_ms;
}

static void ban(fm_node *node, uint64_t now_ms, int index)
{
	struct fm__peer *p = &node->peers[index];
	uint64_t len = FM_REPUTATION_BAN_BASE_MS;
	uint32_t i;

	for (i = 0;
	     i < p->info.reputation.bans && len < FM_REPUTATION_BAN_MAX_MS; i++)
		len *= 2;
	if (len > FM_REPUTATION_BAN_MAX_MS)
		len = FM_REPUTATION_BAN_MAX_MS;
	p->info.reputation.bans++;
	p->ban_until_ms = now_ms + len;
	p->info.state = FM_PEER_BANNED;
	node->stats.peers_banned++;
	fm__peer_set_error(p, "banned for %llu s: score %.1f",
	                   (unsigned long long)(len / 1000),
	                   fm_reputation_score(&p->info.reputation));
	fm__log(node, FM_LOG_WARN, "peer", "banning a peer for %llu s",
	        (unsigned long long)(len / 1000));
	if (p->session >= 0)
		fm__session_close(node, now_ms, p->session, FM_SESS_BANNED, 1);
}

void fm__peer_reputation(fm_node *node, uint64_t now_ms, int index,
                         enum fm__rep_event ev)
{
	struct fm__peer *p = &node->peers[index];
	fm_reputation *r = &p->info.reputation;

	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	decay(p, now_ms);
	switch (ev) {
	case FM__REP_SUCCESS:
		r->successes += 1.0;
		break;
	case FM__REP_FAILURE:
		r->failures += 1.0;
		break;
	case FM__REP_TIMEOUT:
		r->timeouts += 1.0;
		break;
	case FM__REP_INVALID:
		r->invalid += 1.0;
		break;
	}
	if (ev != FM__REP_SUCCESS && p->info.state != FM_PEER_BANNED &&
	    fm_reputation_score(r) < FM_REPUTATION_BAN_SCORE)
		ban(node, now_ms, index);
	fm__peer_changed(node, now_ms, index);
}

void fm__peer_schedule_dial(fm_node *node, uint64_t now_ms, int index,
                            int failed)
{
	struct fm__peer *p = &node->peers[index];
	uint64_t delay = FM_DIAL_BACKOFF_MIN_MS;
	uint32_t i;

	if (p->info.state == FM_PEER_BANNED)
		return;
	if (!fm__peer_dialable(p)) {
		p->info.state = FM_PEER_IDLE;
		return;
	}
	if (failed) {
		p->dial_failures++;
		node->dial_failures_in_row++;
	}
	for (i = 1; i < p->dial_failures && delay < FM_DIAL_BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > FM_DIAL_BACKOFF_MAX_MS)
		delay = FM_DIAL_BACKOFF_MAX_MS;
	/* +-25 % jitter: peers that failed together do not retry together. */
	delay = delay * 3 / 4 + fm__random_u64(node) % (delay / 2 + 1);
	p->next_dial_ms = now_ms + delay;
	p->info.state = FM_PEER_BACKOFF;
}

void fm__peer_network_back(fm_node *node, uint64_t now_ms)
{
	size_t i;

	for (i = 0; i < node->peer_count; i++) {
		struct fm__peer *p = &node->peers[i];
		uint64_t soon;
		if (p->info.state != FM_PEER_BACKOFF || p->session >= 0)
			continue;
		soon = now_ms +
		       fm__random_u64(node) % FM_DIAL_RESTORE_SPREAD_MS;
		if (p->next_dial_ms > soon) {
			p->next_dial_ms = soon;
			p->dial_failures = 0;
		}
	}
}

uint64_t fm__peer_tick(fm_node *node, uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE;
	size_t i;

	for (i = 0; i < node->peer_count; i++) {
		struct fm__peer *p = &node->peers[i];
		if (p->info.state == FM_PEER_BANNED) {
			if (now_ms < p->ban_until_ms) {
				if (p->ban_until_ms < next)
					next = p->ban_until_ms;
				continue;
			}
			/* The ban is over; the counters keep decaying, and
			 * the next offence bans for twice as long. */
			p->info.state = FM_PEER_IDLE;
			p->info.last_error[0] = '\0';
			fm__peer_schedule_dial(node, now_ms, (int)i, 0);
			fm__peer_changed(node, now_ms, (int)i);
		}
		if (p->info.state != FM_PEER_BACKOFF || p->session >= 0)
			continue;
		if (now_ms >= p->next_dial_ms) {
			if (fm__session_dial(node, now_ms, (int)i) != 0) {
				fm__peer_schedule_dial(node, now_ms, (int)i, 1);
			} else {
				/* The new session's handshake deadline: the
				 * session tick already ran this time. */
				uint64_t d = now_ms +
				             FM_SESSION_HANDSHAKE_TIMEOUT_MS;
				if (d < next)
					next = d;
			}
			if (p->info.state == FM_PEER_BACKOFF &&
			    p->next_dial_ms < next)
				next = p->next_dial_ms;
			continue;
		}
		if (p->next_dial_ms < next)
			next = p->next_dial_ms;
	}
	return next;
}

/* ---- public entry points ------------------------------------------------- */

int fm_node_add_contact(fm_node *node, uint64_t now_ms, const fm_addr *addr,
                        enum fm_addr_source source)
{
	struct fm__peer *p;
	int index;
	int rc;

	if (addr == NULL || (unsigned)source >= FM_SRC_COUNT ||
	    source == FM_SRC_INBOUND ||
	    (addr->family != FM_AF_INET && addr->family != FM_AF_INET6) ||
	    addr->port == 0)
		return -EINVAL;
	index = fm__peer_find_addr(node, addr);
	if (index >= 0) {
		/* Known already: dial it now if it is waiting. */
		p = &node->peers[index];
		if (p->info.state == FM_PEER_BACKOFF ||
		    p->info.state == FM_PEER_IDLE) {
			p->info.state = FM_PEER_BACKOFF;
			p->next_dial_ms = now_ms;
		}
		return 0;
	}
	/* Bootstrap and invite addresses seed the DHT as well. */
	if (node->dht != NULL &&
	    (source == FM_SRC_BOOTSTRAP || source == FM_SRC_INVITE))
		(void)fm__dht_bootstrap(node->dht, now_ms, addr, 1);
	rc = fm__peer_new(node, now_ms);
	if (rc < 0)
		return rc;
	index = rc;
	p = &node->peers[index];
	fm__peer_add_addr(p, addr, source);
	p->info.source = (uint8_t)source;
	p->info.state = FM_PEER_BACKOFF;
	p->next_dial_ms = now_ms;
	return 0;
}

int fm_node_restore_peer(fm_node *node, uint64_t now_ms,
                         const fm_peer_info *info)
{
	struct fm__peer *p;
	int index;
	uint8_t i;
	int rc;

	if (info == NULL || info->addr_count > FM_PEER_ADDRS_MAX)
		return -EINVAL;
	if (memcmp(info->node_id, node->identity.node_id, FM_NODE_ID_BYTES) ==
	    0)
		return -EINVAL;
	if (info->has_record &&
	    memcmp(info->record.node_id, info->node_id, FM_NODE_ID_BYTES) != 0)
		return -EINVAL;
	index = fm__peer_find(node, info->node_id);
	if (index < 0) {
		rc = fm__peer_new(node, now_ms);
		if (rc < 0)
			return rc;
		index = rc;
	}
	p = &node->peers[index];
	p->info = *info;
	p->id_known = 1;
	p->session = -1;
	p->rep_updated_ms = now_ms;
	for (i = 0; i < p->info.addr_count; i++)
		if (p->info.addrs[i].addr.family != FM_AF_INET &&
		    p->info.addrs[i].addr.family != FM_AF_INET6)
			return -EINVAL;
	if (info->reputation.ban_remaining_ms > 0) {
		p->ban_until_ms = now_ms + info->reputation.ban_remaining_ms;
		p->info.state = FM_PEER_BANNED;
		return 0;
	}
	p->ban_until_ms = 0;
	if (fm__peer_dialable(p)) {
		p->info.state = FM_PEER_BACKOFF;
		p->next_dial_ms = now_ms + fm__random_u64(node) %
		                                   FM_DIAL_RESTORE_SPREAD_MS;
	} else {
		p->info.state = FM_PEER_IDLE;
	}
	return 0;
}

size_t fm_node_peer_count(const fm_node *node)
{
	size_t i, n = 0;

	for (i = 0; i < node->peer_count; i++)
		n += node->peers[i].id_known;
	return n;
}

int fm_node_peer_get(const fm_node *node, size_t index, fm_peer_info *out)
{
	size_t i;

	for (i = 0; i < node->peer_count; i++) {
		const struct fm__peer *p = &node->peers[i];
		if (!p->id_known)
			continue;
		if (index-- > 0)
			continue;
		*out = p->info;
		/* score and ban as of the node's clock */
		{
			struct fm__peer tmp = *p;
			refresh_public(&tmp, node->last_now_ms);
			out->score = tmp.info.score;
			out->reputation = tmp.info.reputation;
		}
		return 0;
	}
	return -ENOENT;
}
