/* Harness: the session layer (src/core/session.c) as a peer on the other
 * end of a TCP stream sees it: framing, the mac1 gate, the three Noise
 * XXpsk3 messages, the hello each side sends (identity binding, record),
 * and then transport messages. The harness plays the other side with the
 * core's own Noise code (src/core/noise.c) and a fixed identity, so the
 * fuzzer reaches each step's parser rather than stopping at a MAC.
 *
 * Input: the first byte picks a mode, the rest is:
 *   0 raw       bytes written to an inbound stream as they are;
 *   1 msg1      the body of message 1 (e || payload), sent with a valid
 *               mac1 and frame header: the responder's Noise read;
 *   2 msg3      the node answers an inbound handshake; the harness sends
 *               message 3 with a payload and then transport messages;
 *   3 msg2      the node dials; the harness answers with message 2 with a
 *               payload, reads message 3, then sends transport messages.
 * Modes 2 and 3 read the rest as chunks, each a 2-byte big-endian length
 * and that many bytes: the first chunk is the handshake payload (a hello,
 * fuzz/corpus/handshake has valid ones), every further chunk one transport
 * message, encrypted by the harness (which switches to the next key
 * after a REKEY message, as a peer does). */
#include <string.h>

#include <sodium.h>

#include "core/core.h"
#include "core/noise.h"
#include "core/wire.h"
#include "fuzz.h"

enum { MODE_RAW = 0, MODE_MSG1, MODE_MSG3, MODE_MSG2, MODE_COUNT };

#define NOW_MS FZ_NOW_MS
#define TRANSPORT_MAX 64 /* transport messages read from one input */

static uint8_t frame[FM_FRAME_HEADER_BYTES + FM_FRAME_MAX_BYTES];

struct input {
	const uint8_t *p;
	size_t left;
};

/* The next chunk; 0 when there is none (or it is cut short: the rest). */
static int next_chunk(struct input *in, const uint8_t **chunk, size_t *len)
{
	size_t n;

	if (in->left < 2)
		return 0;
	n = ((size_t)in->p[0] << 8) | in->p[1];
	in->p += 2;
	in->left -= 2;
	if (n > in->left)
		n = in->left;
	*chunk = in->p;
	*len = n;
	in->p += n;
	in->left -= n;
	return 1;
}

static void put_len(uint8_t *out, size_t len)
{
	out[0] = (uint8_t)(len >> 8);
	out[1] = (uint8_t)len;
}

/* The first complete frame the node sent at or after *off. */
static int take_frame(const fz_io *ctx, size_t *off, const uint8_t **body,
                      size_t *len)
{
	size_t n;

	if (ctx->sent_len - *off < FM_FRAME_HEADER_BYTES)
		return 0;
	n = ((size_t)ctx->sent[*off] << 8) | ctx->sent[*off + 1];
	if (ctx->sent_len - *off - FM_FRAME_HEADER_BYTES < n)
		return 0;
	*body = ctx->sent + *off + FM_FRAME_HEADER_BYTES;
	*len = n;
	*off += FM_FRAME_HEADER_BYTES + n;
	return 1;
}

static void send_transport(fm_node *node, uint64_t stream,
                           fm__noise_cipher *send, struct input *in)
{
	const uint8_t *msg;
	size_t len, out_len;
	fm__msg m;
	int i;

	for (i = 0; i < TRANSPORT_MAX && next_chunk(in, &msg, &len); i++) {
		if (len > FM__NOISE_MAX_PLAINTEXT)
			len = FM__NOISE_MAX_PLAINTEXT;
		if (fm__noise_encrypt(send, NULL, 0, msg, len,
		                      frame + FM_FRAME_HEADER_BYTES,
		                      FM_FRAME_MAX_BYTES, &out_len) != 0)
			return;
		put_len(frame, out_len);
		fm_node_stream_data(node, NOW_MS + (uint64_t)i, stream, frame,
		                    FM_FRAME_HEADER_BYTES + out_len);
		/* After a REKEY the node expects the next key, as a real
		 * peer would switch to it. */
		if (fm__msg_decode(msg, len, &m) == 0 &&
		    m.type == FM__MSG_REKEY && fm__noise_rekey(send) != 0)
			return;
	}
}

static void init_peer_hs(fm__noise_handshake *hs, int initiator)
{
	uint8_t s_priv[32], s_pub[32], e[32], psk[32];

	if (fz_peer_static(s_priv, s_pub) != 0)
		fz_fail("handshake", "peer static key");
	memset(e, initiator ? 0x33 : 0x44, sizeof(e));
	fz_federation_key(psk);
	if (fm__noise_handshake_init(hs, FM__SESSION_PROTOCOL, initiator,
	                             (const uint8_t *)FM__SESSION_PROLOGUE,
	                             sizeof(FM__SESSION_PROLOGUE) - 1, s_priv,
	                             NULL, psk, 1, e) != 0)
		fz_fail("handshake", "fm__noise_handshake_init");
}

/* The node responds: harness msg1, node msg2, harness msg3 (payload from
 * the input), then transport. */
static void run_responder(fm_node *node, fz_io *ctx, struct input *in)
{
	fm__noise_handshake hs;
	fm__noise_cipher send, recv;
	uint8_t payload[FM__NOISE_MAX_PLAINTEXT];
	const uint8_t *body, *hello = NULL;
	size_t len = 0, off = 0, hello_len = 0, payload_len;
	const uint64_t stream = 77;

	init_peer_hs(&hs, 1);
	fm_node_stream_opened(node, NOW_MS, stream, NULL, 1);
	if (fm__noise_write_message(
	            &hs, NULL, 0, frame + FM_FRAME_HEADER_BYTES + 16,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES - 16, &len) != 0)
		fz_fail("handshake", "write msg1");
	fz_mac1(frame + FM_FRAME_HEADER_BYTES + 16, len,
	        frame + FM_FRAME_HEADER_BYTES);
	put_len(frame, 16 + len);
	fm_node_stream_data(node, NOW_MS, stream, frame,
	                    FM_FRAME_HEADER_BYTES + 16 + len);
	if (!take_frame(ctx, &off, &body, &len))
		fz_fail("handshake", "the node did not answer message 1");
	if (fm__noise_read_message(&hs, body, len, payload, sizeof(payload),
	                           &payload_len) != 0)
		fz_fail("handshake", "the node's message 2 does not read");
	(void)next_chunk(in, &hello, &hello_len);
	if (fm__noise_write_message(
	            &hs, hello, hello_len, frame + FM_FRAME_HEADER_BYTES,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES, &len) != 0)
		goto cleanup;
	put_len(frame, len);
	fm_node_stream_data(node, NOW_MS, stream, frame,
	                    FM_FRAME_HEADER_BYTES + len);
	if (fm__noise_split(&hs, &send, &recv) != 0)
		fz_fail("handshake", "split");
	send_transport(node, stream, &send, in);
	fm__noise_wipe_cipher(&send);
	fm__noise_wipe_cipher(&recv);
cleanup:
	fm__noise_wipe_handshake(&hs);
}

/* The node dials: node msg1, harness msg2 (payload from the input), node
 * msg3, then transport. */
static void run_initiator(fm_node *node, fz_io *ctx, struct input *in)
{
	fm__noise_handshake hs;
	fm__noise_cipher send, recv;
	uint8_t payload[FM__NOISE_MAX_PLAINTEXT];
	const uint8_t *body, *hello = NULL;
	size_t len = 0, off = 0, hello_len = 0, payload_len;
	fm_addr addr;

	if (fm_addr_parse("192.0.2.2:4242", &addr) != 0 ||
	    fm_node_add_contact(node, NOW_MS, &addr, FM_SRC_BOOTSTRAP) != 0)
		fz_fail("handshake", "fm_node_add_contact");
	(void)fm_node_tick(node, NOW_MS);
	if (ctx->opened_stream == 0)
		fz_fail("handshake", "the node did not dial its contact");
	fm_node_stream_opened(node, NOW_MS, ctx->opened_stream, &addr, 0);
	if (!take_frame(ctx, &off, &body, &len) || len < 16)
		fz_fail("handshake", "the node sent no message 1");
	init_peer_hs(&hs, 0);
	if (fm__noise_read_message(&hs, body + 16, len - 16, payload,
	                           sizeof(payload), &payload_len) != 0)
		fz_fail("handshake", "the node's message 1 does not read");
	(void)next_chunk(in, &hello, &hello_len);
	if (fm__noise_write_message(
	            &hs, hello, hello_len, frame + FM_FRAME_HEADER_BYTES,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES, &len) != 0)
		goto cleanup;
	put_len(frame, len);
	fm_node_stream_data(node, NOW_MS, ctx->opened_stream, frame,
	                    FM_FRAME_HEADER_BYTES + len);
	/* Message 3 only comes when the node accepted our hello. */
	if (!take_frame(ctx, &off, &body, &len) ||
	    fm__noise_read_message(&hs, body, len, payload, sizeof(payload),
	                           &payload_len) != 0)
		goto cleanup;
	if (fm__noise_split(&hs, &send, &recv) != 0)
		fz_fail("handshake", "split");
	send_transport(node, ctx->opened_stream, &send, in);
	fm__noise_wipe_cipher(&send);
	fm__noise_wipe_cipher(&recv);
cleanup:
	fm__noise_wipe_handshake(&hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static fz_io ctx;
	fm_node_config cfg;
	fm_node *node = NULL;
	fm_io io;
	struct input in;
	size_t len;

	if (size < 1 || sodium_init() < 0)
		return 0;
	in.p = data + 1;
	in.left = size - 1;
	fz_io_reset(&ctx);
	fz_io_init(&io, &ctx);
	fz_node_config(&cfg);
	if (fm_node_new(&cfg, &io, NOW_MS, &node) != 0)
		fz_fail("handshake", "fm_node_new");
	switch (data[0] % MODE_COUNT) {
	case MODE_RAW:
		fm_node_stream_opened(node, NOW_MS, 5, NULL, 1);
		fm_node_stream_data(node, NOW_MS, 5, in.p, in.left);
		break;
	case MODE_MSG1:
		len = in.left;
		if (len > FM__MSG1_MAX_BYTES - 16)
			len = FM__MSG1_MAX_BYTES - 16;
		memcpy(frame + FM_FRAME_HEADER_BYTES + 16, in.p, len);
		fz_mac1(in.p, len, frame + FM_FRAME_HEADER_BYTES);
		put_len(frame, 16 + len);
		fm_node_stream_opened(node, NOW_MS, 5, NULL, 1);
		fm_node_stream_data(node, NOW_MS, 5, frame,
		                    FM_FRAME_HEADER_BYTES + 16 + len);
		break;
	case MODE_MSG3:
		run_responder(node, &ctx, &in);
		break;
	default:
		run_initiator(node, &ctx, &in);
		break;
	}
	/* Timers after the input: keepalives, timeouts, job retries. */
	(void)fm_node_tick(node, NOW_MS + 60000);
	fm_node_shutdown(node, NOW_MS + 60001);
	fm_node_free(node);
	return 0;
}
