/* Unit tests of the protocol core, linked against the core library and
 * libsodium/msgpack-c only (see Makefile.am): if the core grows a
 * dependency on libuv, sqlite or microhttpd, this program stops linking. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fedmesh/fedmesh.h"

struct fake_io {
	int datagrams_sent;
	int streams_closed;
	uint64_t last_closed;
	uint8_t next_random;
};

/* The ops context of the node made by node_setup(). */
static struct fake_io fake;

static int fake_send(void *ctx, const fm_addr *to, const uint8_t *buf,
                     size_t len)
{
	struct fake_io *f = ctx;

	(void)to, (void)buf, (void)len;
	f->datagrams_sent++;
	return 0;
}

static void fake_random(void *ctx, uint8_t *buf, size_t len)
{
	struct fake_io *f = ctx;

	memset(buf, f->next_random++, len);
}

static void fake_stream_close(void *ctx, uint64_t id)
{
	struct fake_io *f = ctx;

	f->streams_closed++;
	f->last_closed = id;
}

static void make_identity(fm_identity *id, uint8_t fill)
{
	uint8_t seed[FM_SEED_BYTES];

	memset(seed, fill, sizeof(seed));
	assert_int_equal(fm_identity_from_seed(seed, id), 0);
}

static void test_identity_is_deterministic(void **state)
{
	fm_identity a, b, c;
	uint8_t expect[FM_NODE_ID_BYTES];

	(void)state;
	make_identity(&a, 7);
	make_identity(&b, 7);
	make_identity(&c, 8);
	assert_memory_equal(a.node_id, b.node_id, FM_NODE_ID_BYTES);
	assert_memory_not_equal(a.node_id, c.node_id, FM_NODE_ID_BYTES);
	/* node ID is BLAKE2b-256 of the public key, nothing else */
	crypto_generichash(expect, sizeof(expect), a.public_key,
	                   FM_PUBLIC_KEY_BYTES, NULL, 0);
	assert_memory_equal(a.node_id, expect, FM_NODE_ID_BYTES);
}

/* proto/identity-vectors.txt is the protocol's reference: every line must
 * come out of the core unchanged. */
static void test_identity_vectors(void **state)
{
	const char *srcdir = getenv("top_srcdir");
	char path[1024], line[512], seed_hex[65], pk_hex[65], id_hex[65];
	uint8_t seed[FM_SEED_BYTES];
	fm_identity id;
	char got[65];
	int vectors = 0;
	FILE *fp;

	(void)state;
	snprintf(path, sizeof(path), "%s/proto/identity-vectors.txt",
	         srcdir != NULL ? srcdir : ".");
	fp = fopen(path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (line[0] == '#')
			continue;
		assert_int_equal(sscanf(line, "%64s %64s %64s", seed_hex,
		                        pk_hex, id_hex),
		                 3);
		assert_int_equal(fm_hex_decode(seed_hex, seed, sizeof(seed)),
		                 0);
		assert_int_equal(fm_identity_from_seed(seed, &id), 0);
		fm_hex_encode(id.public_key, FM_PUBLIC_KEY_BYTES, got);
		assert_string_equal(got, pk_hex);
		fm_hex_encode(id.node_id, FM_NODE_ID_BYTES, got);
		assert_string_equal(got, id_hex);
		vectors++;
	}
	fclose(fp);
	assert_true(vectors >= 3);
}

static void test_identity_check_rejects_mismatch(void **state)
{
	fm_identity a;

	(void)state;
	make_identity(&a, 1);
	assert_int_equal(fm_identity_check(&a), 0);
	a.public_key[0] ^= 1;
	assert_int_equal(fm_identity_check(&a), -EINVAL);
}

static void test_identity_signs(void **state)
{
	fm_identity a;
	uint8_t sig[crypto_sign_BYTES];
	const uint8_t msg[] = "fedmesh";

	(void)state;
	make_identity(&a, 3);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), a.secret_key);
	assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg),
	                                             a.public_key),
	                 0);
}

static void test_hex_round_trip(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x10, 0xff};
	uint8_t out[4];
	char hex[9];

	(void)state;
	fm_hex_encode(in, sizeof(in), hex);
	assert_string_equal(hex, "00ab10ff");
	assert_int_equal(fm_hex_decode("00AB10ff", out, sizeof(out)), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(fm_hex_decode("00ab10f", out, sizeof(out)), -EINVAL);
	assert_int_equal(fm_hex_decode("00ab10ff00", out, sizeof(out)),
	                 -EINVAL);
	assert_int_equal(fm_hex_decode("00ab10fg", out, sizeof(out)), -EINVAL);
}

static void test_addr_parse_format(void **state)
{
	const char *good[] = {"127.0.0.1:7420", "0.0.0.0:0", "[::1]:7421",
	                      "[fe80::1]:65535"};
	const char *bad[] = {"",
	                     "127.0.0.1",
	                     "127.0.0.1:",
	                     "127.0.0.1:65536",
	                     "127.0.0.1:-1",
	                     "localhost:7420",
	                     "[::1]7420",
	                     "::1:7420",
	                     "1.2.3.4:12a",
	                     "[::1]:",
	                     "256.0.0.1:1",
	                     "[::1]:123456"};
	char text[FM_ADDR_STR_MAX];
	fm_addr a;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(fm_addr_parse(good[i], &a), 0);
		assert_int_equal(fm_addr_format(&a, text, sizeof(text)), 0);
		assert_string_equal(text, good[i]);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(fm_addr_parse(bad[i], &a), -EINVAL);
	assert_int_equal(fm_addr_parse("[::ffff:1.2.3.4]:1", &a), 0);
	assert_int_equal(a.family, FM_AF_INET6);
}

static int node_setup(void **state)
{
	struct fake_io *f = &fake;
	fm_node_config cfg;
	fm_io io;
	fm_node *node = NULL;

	memset(f, 0, sizeof(*f));
	memset(&cfg, 0, sizeof(cfg));
	cfg.dht_disabled =
	        1; /* nothing to maintain: see test_dht_wakes_rarely */
	memset(&io, 0, sizeof(io));
	io.ctx = f;
	io.send_datagram = fake_send;
	io.random_bytes = fake_random;
	io.stream_close = fake_stream_close;
	make_identity(&cfg.identity, 9);
	if (fm_node_new(&cfg, &io, 1000, &node) != 0)
		return -1;
	state[0] = node;
	return 0;
}

static int node_teardown(void **state)
{
	fm_node_free(state[0]);
	return 0;
}

static void test_node_status(void **state)
{
	fm_node *node = *state;
	fm_node_status st;
	fm_identity id;

	make_identity(&id, 9);
	fm_node_get_status(node, &st);
	assert_memory_equal(st.node_id, id.node_id, FM_NODE_ID_BYTES);
	assert_int_equal(st.peers_connected, 0);
	assert_int_equal(st.started_ms, 1000);
}

static void test_node_new_requires_ops(void **state)
{
	fm_node_config cfg;
	fm_io io;
	fm_node *node = NULL;

	(void)state;
	memset(&io, 0, sizeof(io));
	memset(&cfg, 0, sizeof(cfg));
	make_identity(&cfg.identity, 1);
	assert_int_equal(fm_node_new(&cfg, &io, 0, &node), -EINVAL);
	assert_null(node);
	io.send_datagram = fake_send;
	io.random_bytes = fake_random;
	cfg.identity.public_key[5] ^= 0x20; /* not our key pair */
	assert_int_equal(fm_node_new(&cfg, &io, 0, &node), -EINVAL);
	assert_null(node);
	fm_node_free(NULL);
}

static void test_node_drops_and_counts(void **state)
{
	fm_node *node = *state;
	uint8_t big[FM_DATAGRAM_MAX_BYTES + 1];
	fm_node_stats st;
	fm_addr from;

	memset(big, 0xaa, sizeof(big));
	assert_int_equal(fm_addr_parse("10.0.0.1:7420", &from), 0);
	fm_node_recv_datagram(node, 2000, &from, big, sizeof(big));
	fm_node_recv_datagram(node, 2001, &from, big, 10);
	fm_node_recv_datagram(node, 2002, &from, big, 0);
	fm_node_get_stats(node, &st);
	assert_int_equal(st.datagrams_received, 3);
	assert_int_equal(st.datagrams_dropped[FM_DROP_OVERSIZE], 1);
	assert_int_equal(st.datagrams_dropped[FM_DROP_UNAUTHENTICATED], 2);
	assert_string_equal(fm_drop_reason_name(FM_DROP_OVERSIZE), "oversize");
	assert_string_equal(fm_drop_reason_name(FM_DROP_UNAUTHENTICATED),
	                    "unauthenticated");
}

static void test_node_never_answers_outsiders(void **state)
{
	fm_node *node = *state;
	fm_node_stats st;
	fm_addr from;
	uint8_t junk[64];

	assert_int_equal(fm_addr_parse("[::1]:5555", &from), 0);
	memset(junk, 1, sizeof(junk));
	fm_node_recv_datagram(node, 3000, &from, junk, sizeof(junk));
	fm_node_stream_opened(node, 3001, 77, &from, 1);
	fm_node_stream_data(node, 3002, 77, junk, sizeof(junk));
	fm_node_stream_closed(node, 3003, 77, 0);
	fm_node_get_stats(node, &st);
	assert_int_equal(st.streams_opened, 1);
	assert_int_equal(st.streams_closed, 1);
	assert_int_equal(st.stream_bytes_received, sizeof(junk));
	/* the inbound stream was closed by the core, and nothing was sent */
	assert_int_equal(fake.streams_closed, 1);
	assert_int_equal(fake.last_closed, 77);
	assert_int_equal(fake.datagrams_sent, 0);
}

static void test_tick_idle_has_no_deadline(void **state)
{
	fm_node *node = *state;
	fm_node_stats st;

	assert_true(fm_node_tick(node, 5000) == FM_DEADLINE_NONE);
	/* a clock that goes backwards must not break anything */
	assert_true(fm_node_tick(node, 10) == FM_DEADLINE_NONE);
	fm_node_get_stats(node, &st);
	assert_int_equal(st.ticks, 2);
}

/* With the DHT on, an idle node wakes rarely: never within a second of the
 * last tick (no busy polling), and once nothing is due, never. A node that
 * knows no address has nothing to bootstrap, look up or republish; its
 * only timer is the sweep of its own record, which it stores, at that
 * record's expiry (FM_DHT_VALUE_TTL_MS). After that it has no deadline,
 * like a node without the DHT (test_tick_idle_has_no_deadline): whatever
 * gives it work (a contact, a datagram, fm_node_dht_bootstrap) comes with
 * a tick of its own. A periodic timer (the store sweep once ran every
 * 60 s) never reaches FM_DEADLINE_NONE in these 20 ticks and fails. */
static void test_dht_wakes_rarely(void **state)
{
	fm_node_config cfg;
	fm_node *node = NULL;
	uint64_t now = 1000, next;
	fm_io io;
	int i;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(&io, 0, sizeof(io));
	memset(&fake, 0, sizeof(fake));
	io.ctx = &fake;
	io.send_datagram = fake_send;
	io.random_bytes = fake_random;
	make_identity(&cfg.identity, 4);
	assert_int_equal(fm_node_new(&cfg, &io, now, &node), 0);
	for (i = 0; i < 20; i++) {
		next = fm_node_tick(node, now);
		if (next == FM_DEADLINE_NONE)
			break;
		assert_true(next >= now + 1000);
		now = next;
	}
	assert_true(next == FM_DEADLINE_NONE);
	assert_true(fm_node_tick(node, now + 1) == FM_DEADLINE_NONE);
	fm_node_free(node);
}

static void test_version(void **state)
{
	(void)state;
#ifdef PACKAGE_VERSION
	assert_string_equal(fm_version(), PACKAGE_VERSION);
#else
	assert_non_null(fm_version());
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_identity_is_deterministic),
	        cmocka_unit_test(test_identity_vectors),
	        cmocka_unit_test(test_identity_check_rejects_mismatch),
	        cmocka_unit_test(test_identity_signs),
	        cmocka_unit_test(test_hex_round_trip),
	        cmocka_unit_test(test_addr_parse_format),
	        cmocka_unit_test(test_node_new_requires_ops),
	        cmocka_unit_test_setup_teardown(test_node_status, node_setup,
	                                        node_teardown),
	        cmocka_unit_test_setup_teardown(test_node_drops_and_counts,
	                                        node_setup, node_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_node_never_answers_outsiders, node_setup,
	                node_teardown),
	        cmocka_unit_test_setup_teardown(test_tick_idle_has_no_deadline,
	                                        node_setup, node_teardown),
	        cmocka_unit_test(test_dht_wakes_rarely),
	        cmocka_unit_test(test_version),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
