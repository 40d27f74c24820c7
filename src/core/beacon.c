/* The encrypted UDP beacon: local discovery for networks that filter
 * multicast (and so mDNS) but pass broadcast, such as many Wi-Fi setups.
 *
 *   datagram = "FMB1" || nonce (24 random bytes) ||
 *              XChaCha20-Poly1305-IETF(key, ad = "FMB1",
 *                  node ID (32) || TCP peer port (2, big-endian) || flags (1))
 *   key      = BLAKE2b-256("fedmesh-beacon-v1" || federation key)
 *   flags    = 0 announce, 1 reply (other bits: ignored, for later use)
 *
 * Announces go to each interface's IPv4 broadcast addresses on the peer
 * port when the interface appears and every 30 s +-10 % after (mdns.c's
 * tick). A member that hears an announce from a member it has no session
 * with answers once, by unicast, at most every FM_BEACON_REPLY_MIN_MS per
 * sender, so a node that just arrived learns the others at once instead of
 * within 30 s. Either kind hands the sender's IP and the advertised port to
 * the peer table (FM_SRC_BEACON).
 *
 * Why it is safe: without the federation key a beacon can be neither read
 * (the node ID and port are encrypted, so outsiders cannot even tell which
 * nodes share a federation) nor forged (Poly1305); anything starting with
 * the magic that fails to open is dropped and counted (beacons_invalid, and
 * the unauthenticated drop counter), and never answered. A beacon can be
 * replayed, but that only makes us dial an address the session handshake
 * then refuses, at most once per FM_DISC_CONTACT_MIN_MS for that node ID,
 * after which the peer table's backoff applies; replies are rate-limited
 * per sender and never larger than what provoked them. */
#include <sodium.h>
#include <string.h>

#include "mdns.h"

void fm__beacon_set_federation(fm_node *node)
{
	crypto_generichash_state st;
	struct fm__disc *d = node->disc;

	crypto_generichash_init(&st, NULL, 0, sizeof(d->beacon_key));
	crypto_generichash_update(&st, (const uint8_t *)FM_BEACON_KEY_LABEL,
	                          sizeof(FM_BEACON_KEY_LABEL) - 1);
	crypto_generichash_update(&st, node->federation_key,
	                          FM_FEDERATION_KEY_BYTES);
	crypto_generichash_final(&st, d->beacon_key, sizeof(d->beacon_key));
}

int fm__beacon_is(const uint8_t *buf, size_t len)
{
	return buf != NULL && len >= FM_BEACON_MAGIC_BYTES &&
	       memcmp(buf, FM_BEACON_MAGIC, FM_BEACON_MAGIC_BYTES) == 0;
}

void fm__beacon_seal(const fm_node *node, uint8_t flags,
                     uint8_t out[FM_BEACON_BYTES])
{
	uint8_t plain[FM_BEACON_PLAIN_BYTES];
	uint8_t *nonce = out + FM_BEACON_MAGIC_BYTES;
	unsigned long long clen = 0;

	memcpy(out, FM_BEACON_MAGIC, FM_BEACON_MAGIC_BYTES);
	node->io.random_bytes(node->io.ctx, nonce, FM_BEACON_NONCE_BYTES);
	memcpy(plain, node->identity.node_id, FM_NODE_ID_BYTES);
	plain[FM_NODE_ID_BYTES] = (uint8_t)(node->disc->peer_port >> 8);
	plain[FM_NODE_ID_BYTES + 1] = (uint8_t)node->disc->peer_port;
	plain[FM_NODE_ID_BYTES + 2] = flags;
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        nonce + FM_BEACON_NONCE_BYTES, &clen, plain, sizeof(plain),
	        (const uint8_t *)FM_BEACON_MAGIC, FM_BEACON_MAGIC_BYTES, NULL,
	        nonce, node->disc->beacon_key);
}

static void send_beacon(fm_node *node, const fm_addr *to, uint8_t flags)
{
	uint8_t buf[FM_BEACON_BYTES];

	fm__beacon_seal(node, flags, buf);
	node->stats.beacons_sent++;
	(void)node->io.send_datagram(node->io.ctx, to, buf, sizeof(buf));
}

void fm__beacon_announce(fm_node *node, struct fm__disc_iface *ifc)
{
	struct fm__disc *d = node->disc;
	uint8_t i;

	if (d == NULL || !d->beacon_enabled || d->stopped || d->peer_port == 0)
		return;
	for (i = 0; i < ifc->iface.broadcast_count; i++) {
		fm_addr to = ifc->iface.broadcast[i];
		to.port = d->peer_port;
		send_beacon(node, &to, 0);
	}
}

/* 1 when node `id` at `from` may get a reply now (and records that it
 * did). */
static int reply_allowed(struct fm__disc *d, const fm_addr *from,
                         const uint8_t id[FM_NODE_ID_BYTES], uint64_t now_ms)
{
	struct fm__beacon_sender *slot = NULL;
	size_t i;

	for (i = 0; i < FM_BEACON_SENDERS_MAX; i++) {
		struct fm__beacon_sender *s = &d->senders[i];
		if (s->used && fm__addr_equal(&s->addr, from) &&
		    memcmp(s->id, id, FM_NODE_ID_BYTES) == 0) {
			if (now_ms < s->reply_ms + FM_BEACON_REPLY_MIN_MS)
				return 0;
			s->reply_ms = now_ms;
			return 1;
		}
		if (slot == NULL || !s->used ||
		    (slot->used && s->reply_ms < slot->reply_ms))
			slot = s;
	}
	slot->used = 1;
	slot->addr = *from;
	memcpy(slot->id, id, FM_NODE_ID_BYTES);
	slot->reply_ms = now_ms;
	return 1;
}

void fm__beacon_recv(fm_node *node, uint64_t now_ms, const fm_addr *from,
                     const uint8_t *buf, size_t len)
{
	struct fm__disc *d = node->disc;
	uint8_t plain[FM_BEACON_PLAIN_BYTES];
	const uint8_t *nonce = buf + FM_BEACON_MAGIC_BYTES;
	unsigned long long plain_len = 0;
	const uint8_t *id = plain;
	fm_addr contact;
	int peer;

	if (len != FM_BEACON_BYTES ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
	            plain, &plain_len, NULL, nonce + FM_BEACON_NONCE_BYTES,
	            FM_BEACON_PLAIN_BYTES + FM_BEACON_TAG_BYTES,
	            (const uint8_t *)FM_BEACON_MAGIC, FM_BEACON_MAGIC_BYTES,
	            nonce, d->beacon_key) != 0 ||
	    plain_len != FM_BEACON_PLAIN_BYTES) {
		node->stats.beacons_invalid++;
		node->stats.datagrams_dropped[FM_DROP_UNAUTHENTICATED]++;
		return;
	}
	if (d->stopped || from == NULL ||
	    memcmp(id, node->identity.node_id, FM_NODE_ID_BYTES) == 0)
		return; /* our own broadcast, looped back: not counted */
	node->stats.beacons_received++;
	peer = fm__peer_find(node, id);
	if (!(plain[FM_NODE_ID_BYTES + 2] & FM_BEACON_FLAG_REPLY) &&
	    !(peer >= 0 && node->peers[peer].info.state == FM_PEER_CONNECTED) &&
	    d->peer_port != 0 && reply_allowed(d, from, id, now_ms))
		send_beacon(node, from, FM_BEACON_FLAG_REPLY);
	contact = *from;
	contact.port = (uint16_t)((plain[FM_NODE_ID_BYTES] << 8) |
	                          plain[FM_NODE_ID_BYTES + 1]);
	fm__disc_member(node, now_ms, id, &contact, FM_SRC_BEACON, 0);
}
