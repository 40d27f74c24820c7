/* Misbehaving members (sim.h): sybils and liars. They hold the federation
 * key, so they can seal DHT datagrams and prove their keys, but they run
 * no core: this file speaks the DHT protocol for them (docs/PROTOCOL.md), with
 * the core's own message codec and seal (src/core/dht.h), and lies.
 *
 * - Sybils have IDs that share at least `prefix_bits` leading bits with
 *   one target key (a victim node's ID, or the provider key of the
 *   scenario's service): identities are ground by drawing seeds until the
 *   node ID has the prefix (2^prefix_bits tries on average). They prove
 *   their keys, answer every FIND_NODE and FIND_VALUE with the sybils
 *   nearest the key asked (never a value), and acknowledge every STORE
 *   without keeping it (STORED 0): records stored on them vanish.
 * - Liars prove their keys too and answer FIND_NODE and FIND_VALUE with
 *   made-up contacts: IDs sharing 24 bits with the key asked, at
 *   addresses where no node lives (the request times out) or where an
 *   honest node with another ID lives (the answer does not match); STOREs
 *   vanish as with sybils.
 * Both crawl: every `interval` (exponential) each sends a padded
 * FIND_NODE for the target key to the three honest nodes it knows nearest
 * the key (its bootstrap contacts first, then those learned from NODES),
 * so that honest nodes near the key meet it, challenge it and take it
 * into their tables. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/dht.h"
#include "sim.h"

#define ADV_CONTACTS 32 /* honest nodes an adversary remembers */
#define ADV_ASK 3       /* asked per crawl */
#define LIAR_PREFIX_BITS 24
#define GRIND_TRIES_MAX (1ULL << 32)

struct fms_adv {
	fm_identity id;
	uint32_t contacts[ADV_CONTACTS]; /* by distance to the target key */
	uint32_t contact_count;
	uint32_t cursor;
};

static inline uint32_t node_index(const struct fms_sim *sim,
                                  const struct fms_node *nd)
{
	return (uint32_t)(nd - sim->nodes);
}

static int shared_bits(const uint8_t *a, const uint8_t *b)
{
	int i, bit;

	for (i = 0; i < FM_NODE_ID_BYTES; i++) {
		uint8_t x = a[i] ^ b[i];
		if (x == 0)
			continue;
		for (bit = 0; bit < 8 && !(x & (0x80 >> bit)); bit++)
			;
		return i * 8 + bit;
	}
	return FM_NODE_ID_BYTES * 8;
}

/* Draws seeds from the node's identity stream until the ID shares
 * prefix_bits with the target key. */
static int grind(struct fms_sim *sim, uint32_t idx, fm_identity *out)
{
	struct fms_rng r;
	uint8_t seed[FM_SEED_BYTES];
	uint64_t t;
	int rc;

	fms_rng_seed(&r, sim->sc.seed,
	             ((uint64_t)FMS_RNG_STREAM_IDENTITY << 32) | idx);
	for (t = 0; t < GRIND_TRIES_MAX; t++) {
		fms_rng_bytes(&r, seed, sizeof(seed));
		rc = fm_identity_from_seed(seed, out);
		if (rc != 0)
			return rc;
		sim->m.grind_tries++;
		if (shared_bits(out->node_id, sim->target_key) >=
		    (int)sim->sc.sybil_prefix_bits)
			break;
	}
	sodium_memzero(seed, sizeof(seed));
	return 0;
}

static const struct fms_sim *sort_sim;

static int cmp_target(const void *a, const void *b)
{
	const struct fms_sim *sim = sort_sim;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int c = fm__dht_distance_cmp(sim->target_key, sim->nodes[x].node_id,
	                             sim->nodes[y].node_id);

	return c != 0 ? c : (x < y ? -1 : x > y);
}

int fms_adv_setup(struct fms_sim *sim)
{
	uint32_t n = sim->sc.nodes, i, sybils = 0;
	fm_identity vid;
	int rc;

	if (sim->sc.sybils == 0 && sim->sc.liars == 0)
		return 0;
	fm__dht_derive_key(sim->federation_key, sim->dht_key);
	if (sim->sc.sybil_target == FMS_SYBIL_SERVICE) {
		if (fm__dht_service_key(sim->sc.service, sim->target_key) != 0)
			return -EINVAL;
		sim->victim = FMS_NET_NOWHERE;
	} else {
		/* The victim: a random honest node. */
		do
			sim->victim = (uint32_t)fms_rng_below(&sim->rng,
			                                      sim->sc.nodes);
		while (sim->nodes[sim->victim].kind != FMS_HONEST);
		rc = fms_node_identity(sim, sim->victim, &vid);
		if (rc != 0)
			return rc;
		memcpy(sim->target_key, vid.node_id, FM_NODE_ID_BYTES);
		fm_identity_wipe(&vid);
	}
	sim->adv_index = calloc(n, sizeof(*sim->adv_index));
	sim->sybil_near = calloc(sim->sc.sybils + 1, sizeof(uint32_t));
	if (sim->adv_index == NULL || sim->sybil_near == NULL)
		return -ENOMEM;
	sim->m.sybil_prefix_min = 256;
	for (i = 0; i < n; i++) {
		struct fms_node *nd = &sim->nodes[i];
		struct fms_adv *a;
		int bits;
		if (nd->kind != FMS_SYBIL && nd->kind != FMS_LIAR)
			continue;
		a = calloc(1, sizeof(*a));
		if (a == NULL)
			return -ENOMEM;
		nd->adv = a;
		rc = nd->kind == FMS_SYBIL ? grind(sim, i, &a->id)
		                           : fms_node_identity(sim, i, &a->id);
		if (rc != 0)
			return rc;
		memcpy(nd->node_id, a->id.node_id, FM_NODE_ID_BYTES);
		nd->id_known = 1;
		sim->adv_index[sim->adv_count++] = i;
		if (nd->kind != FMS_SYBIL)
			continue;
		sim->sybil_near[sybils++] = i;
		bits = shared_bits(a->id.node_id, sim->target_key);
		if ((uint32_t)bits < sim->m.sybil_prefix_min)
			sim->m.sybil_prefix_min = (uint32_t)bits;
		if ((uint32_t)bits > sim->m.sybil_prefix_max)
			sim->m.sybil_prefix_max = (uint32_t)bits;
	}
	if (sybils == 0)
		sim->m.sybil_prefix_min = 0;
	if (sim->sc.sybil_shared_subnet && sybils > 0) {
		/* In index order (the loop above), before they sort. */
		sim->sybil_shared = malloc(sybils * sizeof(uint32_t));
		if (sim->sybil_shared == NULL)
			return -ENOMEM;
		memcpy(sim->sybil_shared, sim->sybil_near,
		       sybils * sizeof(uint32_t));
		fms_addr_share_subnet(sim->sybil_shared, sybils);
	}
	sort_sim = sim;
	qsort(sim->sybil_near, sybils, sizeof(uint32_t), cmp_target);
	sort_sim = NULL;
	return 0;
}

void fms_adv_free(struct fms_sim *sim)
{
	uint32_t i;

	for (i = 0; i < sim->adv_count; i++) {
		struct fms_node *nd = &sim->nodes[sim->adv_index[i]];
		if (nd->adv != NULL)
			fm_identity_wipe(&nd->adv->id);
		free(nd->adv);
		nd->adv = NULL;
	}
	if (sim->sybil_shared != NULL)
		fms_addr_share_subnet(NULL, 0);
	free(sim->adv_index);
	free(sim->sybil_near);
	free(sim->sybil_shared);
	sim->sybil_shared = NULL;
	sim->adv_index = NULL;
	sim->sybil_near = NULL;
}

/* Remembers honest node c, keeping the ADV_CONTACTS nearest the key. */
static void learn(struct fms_sim *sim, struct fms_adv *a, uint32_t c)
{
	uint32_t i, j;

	if (c >= sim->sc.nodes || sim->nodes[c].kind != FMS_HONEST ||
	    !sim->nodes[c].id_known)
		return;
	for (i = 0; i < a->contact_count; i++)
		if (a->contacts[i] == c)
			return;
	for (i = 0; i < a->contact_count; i++)
		if (fm__dht_distance_cmp(sim->target_key, sim->nodes[c].node_id,
		                         sim->nodes[a->contacts[i]].node_id) <
		    0)
			break;
	if (i == ADV_CONTACTS)
		return;
	j = a->contact_count < ADV_CONTACTS ? a->contact_count
	                                    : ADV_CONTACTS - 1;
	memmove(&a->contacts[i + 1], &a->contacts[i],
	        (j - i) * sizeof(a->contacts[0]));
	a->contacts[i] = c;
	if (a->contact_count < ADV_CONTACTS)
		a->contact_count++;
}

static void send_msg(struct fms_sim *sim, struct fms_node *nd, uint32_t to,
                     fm__dht_msg *m)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES], out[FM_DATAGRAM_MAX_BYTES];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	size_t body_len, len;

	memcpy(m->sender, nd->adv->id.node_id, FM_DHT_ID_BYTES);
	if (fm__dht_msg_encode(m, body, sizeof(body), &body_len) != 0)
		return;
	fms_rng_bytes(&nd->rng, nonce, sizeof(nonce));
	if (fm__dht_seal(sim->dht_key, nonce, body, body_len, out, sizeof(out),
	                 &len) != 0)
		return;
	fms_net_send_datagram(&sim->net, node_index(sim, nd), to, out, len);
	sim->m.adv_dgrams_out++;
}

/* A request padded to a full datagram: it buys a full answer and the
 * credit for a CHALLENGE (docs/PROTOCOL.md, "Anti-amplification"). */
static void send_padded(struct fms_sim *sim, struct fms_node *nd, uint32_t to,
                        fm__dht_msg *m)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	size_t len, avail;

	m->pad_len = 0;
	memcpy(m->sender, nd->adv->id.node_id, FM_DHT_ID_BYTES);
	if (fm__dht_msg_encode(m, body, sizeof(body), &len) == 0 &&
	    len + 3 + 256 <= FM_DHT_BODY_MAX_BYTES) {
		avail = FM_DHT_BODY_MAX_BYTES - len;
		m->pad_len = avail - 3; /* bin16 header */
	}
	send_msg(sim, nd, to, m);
}

void fms_adv_start(struct fms_sim *sim, struct fms_node *nd)
{
	struct fms_adv *a = nd->adv;
	uint8_t i;

	if (a == NULL)
		return;
	for (i = 0; i < nd->boot_count; i++)
		learn(sim, a, nd->boot[i]);
	fms_push(sim,
	         sim->now_us + 1000 +
	                 (uint64_t)fms_rng_exp(&nd->rng, 1e6), /* ~1 s */
	         FMS_EV_ADV, node_index(sim, nd), 0, 0);
}

void fms_adv_act(struct fms_sim *sim, struct fms_node *nd)
{
	struct fms_adv *a = nd->adv;
	fm__dht_msg m;
	uint32_t i;

	for (i = 0; i < ADV_ASK && i < a->contact_count; i++) {
		uint32_t c = a->contacts[(a->cursor + i) % a->contact_count];
		memset(&m, 0, sizeof(m));
		m.type = FM__DHT_FIND_NODE;
		fms_rng_bytes(&nd->rng, m.txid, sizeof(m.txid));
		memcpy(m.key, sim->target_key, FM_DHT_ID_BYTES);
		send_padded(sim, nd, c, &m);
		sim->m.adv_crawls++;
	}
	/* The nearest three, then the next ones in turn. */
	a->cursor = a->contact_count > ADV_ASK
	                    ? (a->cursor + 1) % a->contact_count
	                    : 0;
	fms_push(sim,
	         sim->now_us + 1000 +
	                 (uint64_t)fms_rng_exp(
	                         &nd->rng,
	                         (double)sim->sc.adversary_interval_ms * 1000),
	         FMS_EV_ADV, node_index(sim, nd), 0, 0);
}

/* NODES for `key`: sybils, the sybils nearest it; liars, made-up
 * contacts. */
static void fill_nodes(struct fms_sim *sim, struct fms_node *nd,
                       const uint8_t *key, uint32_t asker, fm__dht_msg *a)
{
	uint32_t i, n = 0, sybils = 0;

	a->type = FM__DHT_NODES;
	if (nd->kind == FMS_SYBIL) {
		for (i = 0; i < sim->adv_count; i++)
			sybils +=
			        sim->nodes[sim->adv_index[i]].kind == FMS_SYBIL;
		/* sybil_near is sorted for the target key; any other key
		 * gets them in that order too, which is what a coalition
		 * wanting to be asked about the target would answer. */
		for (i = 0; i < sybils && n < FM_DHT_K; i++) {
			uint32_t s = sim->sybil_near[i];
			if (s == asker)
				continue;
			memcpy(a->contacts[n].id, sim->nodes[s].node_id,
			       FM_DHT_ID_BYTES);
			fms_addr_of(s, FMS_PORT, &a->contacts[n].addr);
			n++;
		}
	} else {
		for (n = 0; n < FM_DHT_K; n++) {
			uint8_t *id = a->contacts[n].id;
			uint32_t where;
			fms_rng_bytes(&nd->rng, id, FM_DHT_ID_BYTES);
			memcpy(id, key, LIAR_PREFIX_BITS / 8);
			if (fms_rng_double(&nd->rng) < 0.5) {
				/* nobody lives there */
				where = sim->sc.nodes +
				        (uint32_t)fms_rng_below(&nd->rng,
				                                1u << 16);
			} else {
				/* an honest node, under another ID */
				where = (uint32_t)fms_rng_below(&nd->rng,
				                                sim->sc.nodes);
			}
			fms_addr_of(where, FMS_PORT, &a->contacts[n].addr);
		}
	}
	a->contact_count = (uint8_t)n;
	sim->m.adv_lies++;
}

static void answer(struct fms_sim *sim, struct fms_node *nd, uint32_t from,
                   const fm__dht_msg *q)
{
	static const char label[] = FM_DHT_PROOF_LABEL;
	uint8_t signed_msg[sizeof(label) - 1 + FM_DHT_CHALLENGE_NONCE_BYTES +
	                   FM_DHT_ADDR6_BYTES];
	fm__dht_msg *a = calloc(1, sizeof(*a));
	size_t n = sizeof(label) - 1, alen;

	if (a == NULL)
		fms_fatal_oom("adversary");
	memcpy(a->txid, q->txid, sizeof(a->txid));
	switch (q->type) {
	case FM__DHT_PING:
		a->type = FM__DHT_PONG;
		break;
	case FM__DHT_FIND_NODE:
	case FM__DHT_FIND_VALUE:
		fill_nodes(sim, nd, q->key, from, a);
		break;
	case FM__DHT_STORE:
		a->type = FM__DHT_STORED;
		a->status = 0; /* "stored": it is not */
		sim->m.adv_stores_swallowed++;
		break;
	case FM__DHT_CHALLENGE:
		memcpy(signed_msg, label, n);
		memcpy(signed_msg + n, q->nonce, FM_DHT_CHALLENGE_NONCE_BYTES);
		n += FM_DHT_CHALLENGE_NONCE_BYTES;
		if (fm__dht_addr_encode(&q->observed, signed_msg + n, &alen) !=
		    0) {
			free(a);
			return;
		}
		n += alen;
		a->type = FM__DHT_PROOF;
		memcpy(a->public_key, nd->adv->id.public_key,
		       FM_PUBLIC_KEY_BYTES);
		crypto_sign_detached(a->signature, NULL, signed_msg, n,
		                     nd->adv->id.secret_key);
		sim->m.adv_proofs++;
		break;
	default:
		free(a);
		return;
	}
	send_msg(sim, nd, from, a);
	free(a);
}

void fms_adv_datagram(struct fms_sim *sim, struct fms_node *nd, uint32_t from,
                      const uint8_t *buf, size_t len)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	fm__dht_msg *m;
	size_t body_len;
	uint8_t i;

	if (nd->state != FMS_NODE_UP ||
	    fm__dht_open(sim->dht_key, buf, len, body, sizeof(body),
	                 &body_len) != 0)
		return;
	m = malloc(sizeof(*m));
	if (m == NULL)
		fms_fatal_oom("adversary");
	if (fm__dht_msg_decode(body, body_len, m) != 0) {
		free(m);
		return;
	}
	sim->m.adv_dgrams_in++;
	learn(sim, nd->adv, from);
	switch (m->type) {
	case FM__DHT_PING:
	case FM__DHT_FIND_NODE:
	case FM__DHT_FIND_VALUE:
	case FM__DHT_STORE:
	case FM__DHT_CHALLENGE:
		answer(sim, nd, from, m);
		break;
	case FM__DHT_NODES:
		for (i = 0; i < m->contact_count; i++)
			learn(sim, nd->adv,
			      fms_node_of_addr(&m->contacts[i].addr,
			                       sim->sc.nodes));
		break;
	default:
		break;
	}
	free(m);
}
