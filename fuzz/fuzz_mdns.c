/* Harness: the mDNS / DNS-SD responder and querier (src/core/mdns.c) and
 * the encrypted beacon (src/core/beacon.c), as a node with both enabled on
 * one interface receives them. The first byte picks what the rest is:
 *   even  an mDNS packet arriving on the interface (the second byte picks
 *         the source: IPv4 or IPv6, port 5353 or a unicast port);
 *   odd   the plaintext of a beacon (node ID, port, flags), sealed by the
 *         harness under the federation's beacon key so it gets past the
 *         MAC, delivered as a datagram.
 * Then the node's timers run (answers, probes, announcements). */
#include <string.h>

#include <sodium.h>

#include "core/core.h"
#include "core/mdns.h"
#include "fuzz.h"

#define NOW_MS FZ_NOW_MS
#define IFINDEX 2

static void beacon(fm_node *node, const uint8_t *plain, size_t len)
{
	uint8_t key[32], fed[FM_FEDERATION_KEY_BYTES];
	uint8_t buf[FM_BEACON_BYTES + 64];
	unsigned long long clen = 0;
	crypto_generichash_state st;
	fm_addr from;

	if (len > 64)
		len = 64;
	fz_federation_key(fed);
	crypto_generichash_init(&st, NULL, 0, sizeof(key));
	crypto_generichash_update(&st, (const uint8_t *)FM_BEACON_KEY_LABEL,
	                          sizeof(FM_BEACON_KEY_LABEL) - 1);
	crypto_generichash_update(&st, fed, sizeof(fed));
	crypto_generichash_final(&st, key, sizeof(key));
	memcpy(buf, FM_BEACON_MAGIC, FM_BEACON_MAGIC_BYTES);
	memset(buf + FM_BEACON_MAGIC_BYTES, 0x42, FM_BEACON_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        buf + FM_BEACON_MAGIC_BYTES + FM_BEACON_NONCE_BYTES, &clen,
	        plain, len, (const uint8_t *)FM_BEACON_MAGIC,
	        FM_BEACON_MAGIC_BYTES, NULL, buf + FM_BEACON_MAGIC_BYTES, key);
	if (fm_addr_parse("10.0.0.7:4242", &from) != 0)
		fz_fail("mdns", "fm_addr_parse");
	fm_node_recv_datagram(node, NOW_MS, &from, buf,
	                      FM_BEACON_MAGIC_BYTES + FM_BEACON_NONCE_BYTES +
	                              (size_t)clen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static fz_io ctx;
	static const char *const sources[] = {
	        "10.0.0.7:5353",
	        "[fe80::7]:5353",
	        "10.0.0.7:40000",
	        "[fd00::7]:40000",
	};
	fm_node_config cfg;
	fm_node *node = NULL;
	fm_iface ifc;
	fm_addr from;
	fm_io io;

	if (size < 2 || sodium_init() < 0)
		return 0;
	fz_io_reset(&ctx);
	fz_io_init(&io, &ctx);
	fz_node_config(&cfg);
	cfg.mdns_enabled = 1;
	cfg.beacon_enabled = 1;
	if (fm_node_new(&cfg, &io, NOW_MS, &node) != 0)
		fz_fail("mdns", "fm_node_new");
	memset(&ifc, 0, sizeof(ifc));
	ifc.index = IFINDEX;
	memcpy(ifc.name, "eth0", 5);
	if (fm_addr_parse("10.0.0.1:0", &ifc.addrs[0]) != 0 ||
	    fm_addr_parse("[fe80::1]:0", &ifc.addrs[1]) != 0 ||
	    fm_addr_parse("10.0.0.255:0", &ifc.broadcast[0]) != 0)
		fz_fail("mdns", "fm_addr_parse");
	ifc.addr_count = 2;
	ifc.broadcast_count = 1;
	if (fm_node_iface_update(node, NOW_MS, &ifc) != 0)
		fz_fail("mdns", "fm_node_iface_update");
	/* Past probing, so the node answers queries as the owner. */
	(void)fm_node_tick(node, NOW_MS + 5000);
	if (data[0] & 1) {
		beacon(node, data + 1, size - 1);
	} else {
		if (fm_addr_parse(sources[data[1] % 4], &from) != 0)
			fz_fail("mdns", "fm_addr_parse");
		fm_node_recv_mdns(node, NOW_MS + 5000, IFINDEX, &from, data + 2,
		                  size - 2);
	}
	(void)fm_node_tick(node, NOW_MS + 6000);
	(void)fm_node_tick(node, NOW_MS + 10000);
	fm_node_shutdown(node, NOW_MS + 10001);
	fm_node_free(node);
	return 0;
}
