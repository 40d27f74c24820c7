/* Harness: the Kademlia DHT's RPCs (src/core/dht.c). Its datagrams are
 * sealed under a key derived from the federation key, so the harness seals
 * the fuzzer's bytes with the known key: the fuzzer writes RPC bodies, not
 * ciphertext. The first byte picks the mode, the rest is chunks (a 2-byte
 * big-endian length and that many bytes):
 *   0 sealed   each chunk is an RPC body: decoded by fm__dht_msg_decode
 *              (and must encode back to a stable encoding), then sealed
 *              and delivered to a node that has a bootstrap contact
 *              (FZ_DHT_BOOTSTRAP) and so RPCs of its own in flight, whose
 *              answers come from that address (the seed "bootstrap"
 *              answers them all: the node's CHALLENGE with a valid PROOF,
 *              its lookups with contacts);
 *   1 raw      each chunk is a datagram delivered as it is (the drop
 *              paths: bad seal, beacon magic, oversize, garbage);
 *   2 restore  the whole rest is a saved routing table for
 *              fm_node_dht_restore().
 * The node's timers run after each datagram, and at the end. */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "core/dht.h"
#include "fuzz.h"

enum { MODE_SEALED = 0, MODE_RAW, MODE_RESTORE, MODE_COUNT };

#define NOW_MS FZ_NOW_MS
#define DATAGRAMS_MAX 64

static uint8_t again[FM_DATAGRAM_MAX_BYTES * 2];
static uint8_t third[FM_DATAGRAM_MAX_BYTES * 2];
static uint8_t sealed[FM_DATAGRAM_MAX_BYTES * 2];

static void round_trip(const uint8_t *body, size_t len)
{
	fm__dht_msg m, m2;
	size_t len1 = 0, len2 = 0;
	int rc;

	rc = fm__dht_msg_decode(body, len, &m);
	if (rc != 0) {
		if (rc != -EBADMSG && rc != -ENOTSUP)
			fz_fail("dht", "fm__dht_msg_decode: unexpected error");
		return;
	}
	rc = fm__dht_msg_encode(&m, again, sizeof(again), &len1);
	if (rc != 0)
		fz_fail("dht", "a decoded message does not encode");
	if (fm__dht_msg_decode(again, len1, &m2) != 0 || m2.type != m.type)
		fz_fail("dht", "an encoded message does not decode");
	if (fm__dht_msg_encode(&m2, third, sizeof(third), &len2) != 0 ||
	    len2 != len1 || memcmp(again, third, len1) != 0)
		fz_fail("dht", "encode(decode(x)) is not stable");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static fz_io ctx;
	uint8_t fed[FM_FEDERATION_KEY_BYTES], key[32];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	fm_node_config cfg;
	fm_node *node = NULL;
	fm_addr from;
	fm_io io;
	const uint8_t *p = data + 1;
	size_t left, n, len;
	int mode, i;

	if (size < 1 || sodium_init() < 0)
		return 0;
	mode = data[0] % MODE_COUNT;
	left = size - 1;
	fz_io_reset(&ctx);
	fz_io_init(&io, &ctx);
	fz_node_config(&cfg);
	cfg.dht_disabled = 0;
	if (fm_node_new(&cfg, &io, NOW_MS, &node) != 0)
		fz_fail("dht", "fm_node_new");
	if (mode == MODE_RESTORE) {
		(void)fm_node_dht_restore(node, NOW_MS, p, left);
		goto timers;
	}
	if (fm_addr_parse(FZ_DHT_BOOTSTRAP, &from) != 0 ||
	    fm_node_add_contact(node, NOW_MS, &from, FM_SRC_BOOTSTRAP) != 0)
		fz_fail("dht", "fm_node_add_contact");
	(void)fm_node_tick(node, NOW_MS);
	fz_federation_key(fed);
	fm__dht_derive_key(fed, key);
	memset(nonce, 0x24, sizeof(nonce));
	for (i = 0; i < DATAGRAMS_MAX && left >= 2; i++) {
		n = ((size_t)p[0] << 8) | p[1];
		p += 2;
		left -= 2;
		if (n > left)
			n = left;
		if (mode == MODE_RAW) {
			fm_node_recv_datagram(node, NOW_MS + 1 + (uint64_t)i,
			                      &from, p, n);
		} else {
			round_trip(p, n);
			nonce[0] = (uint8_t)i;
			if (fm__dht_seal(key, nonce, p, n, sealed,
			                 sizeof(sealed), &len) == 0)
				fm_node_recv_datagram(node,
				                      NOW_MS + 1 + (uint64_t)i,
				                      &from, sealed, len);
		}
		/* What the datagram started (lookups, challenges) goes out. */
		(void)fm_node_tick(node, NOW_MS + 1 + (uint64_t)i);
		p += n;
		left -= n;
	}
timers:
	(void)fm_node_tick(node, NOW_MS + 1000);
	(void)fm_node_tick(node, NOW_MS + 5000);
	fm_node_shutdown(node, NOW_MS + 5001);
	fm_node_free(node);
	return 0;
}
