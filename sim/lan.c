/* LAN segments and mDNS (sim.h, `[lan]`). Nodes are put on segments of
 * `segment_size` consecutive nodes (node i on segment i / segment_size);
 * each node's core gets one interface ("sim0", index 1, its 10.b.c.d
 * address) with mDNS on, and the simulator implements fm_io.send_mdns:
 * a packet to the group 224.0.0.251:5353 reaches every other running node
 * of the sender's segment, a unicast packet the node at that address if
 * it is on the same segment, each after `delay_ms` (constant: a switched
 * LAN; no loss). Packets arrive from the sender's address, port 5353.
 *
 * Discovery time of a node: from its start until its core counts as
 * discovered (fm_node_stats.peers_discovered) every member of its segment
 * that was running when it started (`discovery` in results.json: first
 * peer and all of them). Found members are dialled by the core (the
 * sessions they lead to are in `sessions`). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define LAN_IFINDEX 1
#define MDNS_PORT 5353
#define DISC_DONE UINT64_MAX

static inline uint32_t node_index(const struct fms_sim *sim,
                                  const struct fms_node *nd)
{
	return (uint32_t)(nd - sim->nodes);
}

int fms_lan_setup(struct fms_sim *sim)
{
	uint32_t i;

	sim->m.disc_first.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
	sim->m.disc_all.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
	if (sim->m.disc_first.buckets == NULL ||
	    sim->m.disc_all.buckets == NULL)
		return -ENOMEM;
	for (i = 0; i < sim->sc.nodes; i++)
		sim->nodes[i].segment = i / sim->sc.lan_segment_size;
	sim->m.lan_segments = (sim->sc.nodes + sim->sc.lan_segment_size - 1) /
	                      sim->sc.lan_segment_size;
	return 0;
}

void fms_lan_free(struct fms_sim *sim)
{
	uint32_t i;

	free(sim->m.disc_first.buckets);
	free(sim->m.disc_first.over);
	free(sim->m.disc_all.buckets);
	free(sim->m.disc_all.over);
	sim->m.disc_first.buckets = sim->m.disc_all.buckets = NULL;
	sim->m.disc_first.over = sim->m.disc_all.over = NULL;
	for (i = 0; i < sim->mdns_cap; i++)
		free(sim->mdns[i].buf);
	free(sim->mdns);
	sim->mdns = NULL;
	sim->mdns_cap = 0;
}

static uint32_t pkt_new(struct fms_sim *sim, const uint8_t *buf, size_t len,
                        int unicast)
{
	struct fms_mdns_pkt *p;
	uint32_t slot;

	if (sim->mdns_free == 0) {
		uint32_t cap = sim->mdns_cap ? sim->mdns_cap * 2 : 64, i;
		struct fms_mdns_pkt *grown =
		        realloc(sim->mdns, cap * sizeof(*grown));
		if (grown == NULL)
			fms_fatal_oom("mdns");
		memset(grown + sim->mdns_cap, 0,
		       (cap - sim->mdns_cap) * sizeof(*grown));
		/* free list through len, 1-based in mdns_free */
		for (i = sim->mdns_cap; i < cap; i++)
			grown[i].len = i + 1 < cap ? i + 2 : 0;
		sim->mdns_free = sim->mdns_cap + 1;
		sim->mdns = grown;
		sim->mdns_cap = cap;
	}
	slot = sim->mdns_free - 1;
	p = &sim->mdns[slot];
	sim->mdns_free = p->len;
	p->buf = malloc(len ? len : 1);
	if (p->buf == NULL)
		fms_fatal_oom("mdns");
	memcpy(p->buf, buf, len);
	p->len = (uint32_t)len;
	p->refs = 0;
	p->unicast = (uint8_t)unicast;
	return slot;
}

static void pkt_unref(struct fms_sim *sim, uint32_t slot)
{
	struct fms_mdns_pkt *p = &sim->mdns[slot];

	if (--p->refs > 0)
		return;
	free(p->buf);
	p->buf = NULL;
	p->len = sim->mdns_free;
	sim->mdns_free = slot + 1;
}

static int io_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                        const uint8_t *buf, size_t len)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	uint32_t from = node_index(sim, nd), seg = nd->segment, i, lo, hi;
	uint64_t at = sim->now_us + (uint64_t)(sim->sc.lan_delay_ms * 1000);
	uint32_t slot;

	if (ifindex != LAN_IFINDEX || to == NULL)
		return -EINVAL;
	sim->m.mdns_packets++;
	if (to->family == FM_AF_INET && to->ip[0] == 224) {
		/* the group: everyone else on the segment */
		slot = pkt_new(sim, buf, len, 0);
		lo = seg * sim->sc.lan_segment_size;
		hi = lo + sim->sc.lan_segment_size;
		if (hi > sim->sc.nodes)
			hi = sim->sc.nodes;
		for (i = lo; i < hi; i++) {
			if (i == from || sim->nodes[i].core == NULL)
				continue;
			sim->mdns[slot].refs++;
			fms_push(sim, at, FMS_EV_MDNS, i, from, slot);
		}
		if (sim->mdns[slot].refs == 0) {
			sim->mdns[slot].refs = 1;
			pkt_unref(sim, slot);
		}
		return 0;
	}
	{
		fm_addr a = *to;
		a.port = FMS_PORT;
		i = fms_node_of_addr(&a, sim->sc.nodes);
	}
	if (i == FMS_NET_NOWHERE || sim->nodes[i].segment != seg)
		return 0; /* not on this LAN: lost */
	slot = pkt_new(sim, buf, len, 1);
	sim->mdns[slot].refs = 1;
	fms_push(sim, at, FMS_EV_MDNS, i, from, slot);
	return 0;
}

void fms_lan_node_started(struct fms_sim *sim, struct fms_node *nd)
{
	fm_iface ifc;
	uint32_t idx = node_index(sim, nd), lo, hi, i, need = 0;
	lo = nd->segment * sim->sc.lan_segment_size;
	hi = lo + sim->sc.lan_segment_size;
	if (hi > sim->sc.nodes)
		hi = sim->sc.nodes;
	for (i = lo; i < hi; i++)
		if (i != idx && sim->nodes[i].core != NULL &&
		    sim->nodes[i].kind == FMS_HONEST)
			need++;
	/* members running now: what this node must find */
	nd->disc_first_us = need > 0 ? 0 : DISC_DONE;
	nd->disc_all_us = need > 0 ? 0 : DISC_DONE;
	nd->lan_need = need;
	memset(&ifc, 0, sizeof(ifc));
	ifc.index = LAN_IFINDEX;
	snprintf(ifc.name, sizeof(ifc.name), "sim0");
	fms_addr_of(idx, 0, &ifc.addrs[0]);
	ifc.addr_count = 1;
	fm_node_iface_update(nd->core, sim->now_us / 1000, &ifc);
}

void fms_lan_check(struct fms_sim *sim, struct fms_node *nd)
{
	fm_node_stats st;
	uint64_t ms;

	if (nd->core == NULL || nd->disc_all_us == DISC_DONE)
		return;
	fm_node_get_stats(nd->core, &st);
	ms = (sim->now_us - nd->up_since_us) / 1000;
	if (nd->disc_first_us == 0 && st.peers_discovered >= 1) {
		nd->disc_first_us = DISC_DONE;
		fms_hist_add(&sim->m.disc_first, ms);
	}
	if (st.peers_discovered >= nd->lan_need) {
		nd->disc_all_us = DISC_DONE;
		fms_hist_add(&sim->m.disc_all, ms);
	}
}

void fms_lan_deliver(struct fms_sim *sim, const struct fms_event *ev)
{
	struct fms_node *nd = &sim->nodes[ev->a];
	struct fms_mdns_pkt *p = &sim->mdns[ev->c];
	fm_addr from;

	if (nd->core != NULL) {
		fms_addr_of(ev->b, MDNS_PORT, &from);
		sim->m.mdns_deliveries++;
		fm_node_recv_mdns(nd->core, sim->now_us / 1000, LAN_IFINDEX,
		                  &from, p->buf, p->len);
		fms_lan_check(sim, nd);
		fms_sim_kick(sim, (uint32_t)(nd - sim->nodes));
	}
	pkt_unref(sim, ev->c);
}

/* The ops table entry, for sim.c. */
int fms_lan_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                      const uint8_t *buf, size_t len)
{
	return io_send_mdns(ctx, ifindex, to, buf, len);
}
