/* Reports of a simulation run (report.h). Everything but the host section
 * is a function of the seed, the scenario and the build, printed with
 * fixed formats, so two runs can be compared byte for byte. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"

#define PATH_MAX_BYTES 4096

/* CPU time of this process so far (user + system), seconds: unlike the
 * wall time, it does not grow when other processes share the machine. */
static double cpu_time_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

unsigned long long fms_peak_rss_bytes(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (unsigned long long)ru.ru_maxrss * 1024ULL; /* KiB on Linux */
}

static int report_fail(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int report_fail(char *err, size_t err_len, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	return saved > 0 ? -saved : -EIO;
}

static int mkdir_p(const char *dir)
{
	char path[PATH_MAX_BYTES];
	size_t i, len = strlen(dir);

	if (len == 0 || len >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, len + 1);
	for (i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0777) != 0 && errno != EEXIST)
			return -1;
		path[i] = i < len ? '/' : '\0';
	}
	return 0;
}

static FILE *open_out(const char *dir, const char *name, char *path,
                      size_t path_len)
{
	snprintf(path, path_len, "%s/%s", dir, name);
	return fopen(path, "w");
}

static double ms_to_s(uint64_t ms)
{
	return (double)ms / 1000.0;
}

static void set_u(json_t *o, const char *k, uint64_t v)
{
	json_object_set_new(o, k, json_integer((json_int_t)v));
}

static void set_d(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, json_real(v));
}

static void set_s(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, json_string(v));
}

static double max_rtt_ms(const struct fms_sim *sim)
{
	double max = 0;
	uint32_t i, j;

	for (i = 0; i < sim->sc.net.region_count; i++)
		for (j = 0; j < sim->sc.net.region_count; j++)
			if (sim->sc.region_weight[i] > 0 &&
			    sim->sc.region_weight[j] > 0 &&
			    sim->sc.net.rtt_ms[i][j] > max)
				max = sim->sc.net.rtt_ms[i][j];
	return max;
}

static json_t *sessions_json(const struct fms_sim *sim)
{
	const struct fms_metrics *m = &sim->m;
	json_t *o = json_object(), *errs = json_object(),
	       *drops = json_object();
	fm_node_stats st;
	uint32_t up, lo, hi;
	uint64_t links;
	int i;

	fms_sim_stats(sim, &st);
	links = fms_sim_peer_links(sim, &up, &lo, &hi);
	set_u(o, "dials", m->dials);
	set_u(o, "established", m->hs_initiator);
	set_u(o, "acceptor_handshakes", m->hs_acceptor);
	set_u(o, "bootstrap_pairs", m->bootstrap_pairs);
	set_u(o, "bootstrap_established", m->bootstrap_established);
	set_d(o, "bootstrap_established_ratio",
	      m->bootstrap_pairs ? (double)m->bootstrap_established /
	                                   (double)m->bootstrap_pairs
	                         : 0.0);
	set_u(o, "handshake_ms_p50", fms_hist_percentile(&m->hs, 50));
	set_u(o, "handshake_ms_p90", fms_hist_percentile(&m->hs, 90));
	set_u(o, "handshake_ms_p99", fms_hist_percentile(&m->hs, 99));
	set_u(o, "handshake_ms_max", m->hs.max_ms);
	set_d(o, "handshake_ms_mean",
	      m->hs.count ? (double)m->hs.sum_ms / (double)m->hs.count : 0.0);
	set_u(o, "connected_sessions", links / 2);
	set_d(o, "connected_peers_mean", up ? (double)links / up : 0.0);
	set_u(o, "connected_peers_min", lo);
	set_u(o, "connected_peers_max", hi);
	set_u(o, "nodes_running", up);
	for (i = 0; i < FM_SESS_ERROR_COUNT; i++)
		set_u(errs, fm_session_error_name((enum fm_session_error)i),
		      st.session_errors[i]);
	json_object_set_new(o, "errors", errs);
	for (i = 0; i < FM_DROP_REASON_COUNT; i++)
		set_u(drops, fm_drop_reason_name((enum fm_drop_reason)i),
		      st.datagrams_dropped[i]);
	json_object_set_new(o, "datagrams_dropped", drops);
	set_u(o, "frames_sent", st.frames_sent);
	set_u(o, "frames_received", st.frames_received);
	set_u(o, "rekeys", st.rekeys);
	set_u(o, "peers_banned", st.peers_banned);
	return o;
}

static json_t *network_json(const struct fms_sim *sim)
{
	const struct fms_net_stats *ns = &sim->net.stats;
	const struct fms_net_params *p = &sim->sc.net;
	json_t *o = json_object(), *regions = json_object();
	uint32_t counts[FMS_NET_REGIONS_MAX] = {0}, i;

	for (i = 0; i < sim->sc.nodes; i++)
		counts[sim->nodes[i].region]++;
	for (i = 0; i < p->region_count; i++)
		if (counts[i] > 0)
			set_u(regions, p->region_names[i], counts[i]);
	json_object_set_new(o, "nodes_per_region", regions);
	set_d(o, "max_rtt_ms", max_rtt_ms(sim));
	set_d(o, "jitter_ms", p->jitter_ms);
	set_d(o, "loss", p->loss);
	set_d(o, "duplicate", p->duplicate);
	set_d(o, "reorder", p->reorder);
	set_u(o, "bandwidth_kbps", p->bandwidth_kbps);
	set_u(o, "datagrams_sent", ns->dgrams_sent);
	set_u(o, "datagrams_delivered", ns->dgrams_delivered);
	set_u(o, "datagrams_lost", ns->dgrams_lost);
	set_u(o, "datagrams_duplicated", ns->dgrams_duplicated);
	set_u(o, "datagrams_reordered", ns->dgrams_reordered);
	set_u(o, "datagrams_unroutable", ns->dgrams_unroutable);
	set_u(o, "datagrams_partitioned", ns->dgrams_partitioned);
	set_u(o, "datagrams_to_down_hosts", ns->dgrams_host_down);
	set_u(o, "streams_opened", ns->streams_opened);
	set_u(o, "streams_accepted", ns->streams_accepted);
	set_u(o, "streams_refused", ns->streams_refused);
	set_u(o, "streams_timed_out", ns->streams_timed_out);
	set_u(o, "streams_reset", ns->streams_reset);
	set_u(o, "streams_cut", ns->streams_cut);
	set_u(o, "streams_live_end", sim->net.streams_live);
	set_u(o, "stream_bytes", ns->stream_bytes);
	set_u(o, "stream_bytes_dropped", ns->stream_bytes_dropped);
	set_u(o, "segments_retransmitted", ns->segments_retransmitted);
	return o;
}

static json_t *partition_json(const struct fms_sim *sim)
{
	const struct fms_metrics *m = &sim->m;
	json_t *o = json_object();

	set_s(o, "mode", fms_split_name(sim->sc.split_mode));
	set_d(o, "split_at_s", ms_to_s(sim->sc.split_at_ms));
	if (sim->sc.heal_at_ms > 0)
		set_d(o, "heal_at_s", ms_to_s(sim->sc.heal_at_ms));
	if (!m->split_done)
		return o;
	set_u(o, "cut_off_nodes", m->side_a_nodes);
	set_u(o, "sessions_before", m->sessions_before);
	set_u(o, "streams_cut", m->streams_cut);
	if (!m->heal_done)
		return o;
	set_u(o, "sessions_at_heal", m->sessions_at_heal);
	set_u(o, "sessions_lost",
	      m->sessions_before > m->sessions_at_heal
	              ? m->sessions_before - m->sessions_at_heal
	              : 0);
	if (m->t90_us)
		set_d(o, "reconnect_90_s", (double)m->t90_us / 1e6);
	if (m->t99_us)
		set_d(o, "reconnect_99_s", (double)m->t99_us / 1e6);
	if (m->t100_us)
		set_d(o, "reconnect_100_s", (double)m->t100_us / 1e6);
	json_object_set_new(o, "reconnected", json_boolean(m->t100_us != 0));
	set_u(o, "sessions_last_check", m->sessions_last_check);
	return o;
}

static json_t *churn_json(const struct fms_sim *sim)
{
	const struct fms_metrics *m = &sim->m;
	json_t *o = json_object();
	double p1, p2;
	uint32_t up;

	fms_sim_peer_links(sim, &up, NULL, NULL);
	if (sim->sc.churn) {
		fms_scenario_session_params(&sim->sc, &p1, &p2);
		set_s(o, "session_distribution",
		      fms_dist_name(sim->sc.session_dist));
		set_d(o, "session_median_s",
		      ms_to_s(sim->sc.session_median_ms));
		set_d(o, "session_p80_s", ms_to_s(sim->sc.session_p80_ms));
		set_d(o, "offline_mean_s", ms_to_s(sim->sc.offline_mean_ms));
		set_d(o, "graceful", sim->sc.graceful);
		set_u(o, "leaves", m->leaves);
		set_u(o, "leaves_graceful", m->leaves_graceful);
		set_u(o, "returns", m->returns);
	}
	if (sim->sc.crash) {
		set_d(o, "mtbf_s", ms_to_s(sim->sc.mtbf_ms));
		set_u(o, "crashes", m->crashes);
		set_u(o, "restarts", m->restarts);
	}
	set_u(o, "peers_restored", m->peers_restored);
	set_u(o, "restore_errors", m->restore_errors);
	set_u(o, "saved_peers_max", m->peers_saved_max);
	set_d(o, "nodes_running_mean",
	      m->online_samples
	              ? (double)m->online_sum / (double)m->online_samples
	              : 0.0);
	set_u(o, "nodes_running_end", up);
	set_u(o, "starts_after_first", m->restarts + m->returns);
	set_u(o, "reconnects", m->reconnect.count);
	set_u(o, "reconnect_ms_p50", fms_hist_percentile(&m->reconnect, 50));
	set_u(o, "reconnect_ms_p90", fms_hist_percentile(&m->reconnect, 90));
	set_u(o, "reconnect_ms_p99", fms_hist_percentile(&m->reconnect, 99));
	return o;
}

static json_t *garbage_json(const struct fms_sim *sim)
{
	json_t *o = json_object();

	set_u(o, "senders", sim->garbage);
	set_d(o, "fraction", sim->sc.garbage_fraction);
	set_u(o, "datagrams_sent", sim->m.garbage_dgrams);
	set_u(o, "streams_opened", sim->m.garbage_streams);
	set_u(o, "stream_bytes_sent", sim->m.garbage_bytes);
	return o;
}

/* Nearest-rank percentile of a hops histogram. */
static uint64_t hops_percentile(const struct fms_lookup_metrics *lk, double pct)
{
	uint64_t total = 0, rank, seen = 0;
	int h;

	for (h = 0; h <= FMS_HOPS_MAX; h++)
		total += lk->hops[h];
	if (total == 0)
		return 0;
	rank = (uint64_t)ceil(pct / 100.0 * (double)total);
	if (rank == 0)
		rank = 1;
	for (h = 0; h <= FMS_HOPS_MAX; h++) {
		seen += lk->hops[h];
		if (seen >= rank)
			return (uint64_t)h;
	}
	return FMS_HOPS_MAX;
}

struct rtt_pair {
	double rtt;
	double weight;
};

static int cmp_rtt(const void *a, const void *b)
{
	double x = ((const struct rtt_pair *)a)->rtt,
	       y = ((const struct rtt_pair *)b)->rtt;

	return x < y ? -1 : x > y;
}

/* The median RTT between two distinct honest nodes, from the regions
 * they were placed in (the table's figures, without jitter). */
static double median_rtt(const struct fms_sim *sim)
{
	struct rtt_pair pairs[FMS_NET_REGIONS_MAX * FMS_NET_REGIONS_MAX];
	double counts[FMS_NET_REGIONS_MAX] = {0}, total = 0, seen = 0;
	uint32_t i, j, n = 0, r = sim->sc.net.region_count;

	for (i = 0; i < sim->sc.nodes; i++)
		if (sim->nodes[i].kind == FMS_HONEST)
			counts[sim->nodes[i].region] += 1;
	for (i = 0; i < r; i++)
		for (j = 0; j < r; j++) {
			double w = i == j ? counts[i] * (counts[i] - 1)
			                  : counts[i] * counts[j];
			if (w <= 0)
				continue;
			pairs[n].rtt = sim->sc.net.rtt_ms[i][j];
			pairs[n].weight = w;
			total += w;
			n++;
		}
	if (n == 0)
		return 0;
	qsort(pairs, n, sizeof(pairs[0]), cmp_rtt);
	for (i = 0; i < n; i++) {
		seen += pairs[i].weight;
		if (seen >= total / 2)
			return pairs[i].rtt;
	}
	return pairs[n - 1].rtt;
}

static json_t *lookups_json(const struct fms_sim *sim, int kind)
{
	const struct fms_lookup_metrics *lk = &sim->m.lk[kind];
	json_t *o = json_object();
	uint64_t count = lk->done + lk->start_errors;

	set_u(o, "count", count);
	set_d(o, "success_rate",
	      count ? (double)lk->succeeded / (double)count : 0.0);
	set_u(o, "succeeded", lk->succeeded);
	set_d(o, "hops_mean",
	      lk->succeeded ? (double)lk->hops_sum / (double)lk->succeeded
	                    : 0.0);
	set_u(o, "hops_p50", hops_percentile(lk, 50));
	set_u(o, "hops_p99", hops_percentile(lk, 99));
	set_u(o, "latency_ms_p50", fms_hist_percentile(&lk->latency, 50));
	set_u(o, "latency_ms_p99", fms_hist_percentile(&lk->latency, 99));
	set_d(o, "latency_ms_mean",
	      lk->latency.count
	              ? (double)lk->latency.sum_ms / (double)lk->latency.count
	              : 0.0);
	set_u(o, "latency_ms_max", lk->latency.max_ms);
	set_d(o, "messages_per_lookup",
	      lk->msg_samples ? (double)lk->msg_sum / (double)lk->msg_samples
	                      : 0.0);
	set_u(o, "messages_samples", lk->msg_samples);
	set_u(o, "issued", lk->issued);
	set_u(o, "start_errors", lk->start_errors);
	set_u(o, "failed", lk->failed_status);
	if (kind == FMS_LK_NODE)
		set_u(o, "wrong_record", lk->wrong_record);
	set_u(o, "cancelled", lk->cancelled);
	set_u(o, "no_issuer", lk->no_issuer);
	set_u(o, "all_latency_ms_p50",
	      fms_hist_percentile(&lk->latency_all, 50));
	set_u(o, "all_latency_ms_p99",
	      fms_hist_percentile(&lk->latency_all, 99));
	if (kind == FMS_LK_NODE) {
		double rtt = median_rtt(sim);
		double bound = 2.0 * rtt * (double)hops_percentile(lk, 50);
		set_d(o, "rtt_ms_p50_pairs", rtt);
		set_d(o, "rtt_ms_mean_succeeded",
		      lk->rtt_samples ? lk->rtt_sum_ms / (double)lk->rtt_samples
		                      : 0.0);
		set_d(o, "median_bound_ms", bound);
		json_object_set_new(
		        o, "median_within_bound",
		        json_boolean(lk->latency.count > 0 &&
		                     (double)fms_hist_percentile(&lk->latency,
		                                                 50) <= bound));
	} else {
		set_u(o, "providers", sim->m.providers);
		set_d(o, "providers_per_lookup_mean",
		      lk->succeeded ? (double)lk->providers_sum /
		                              (double)lk->succeeded
		                    : 0.0);
	}
	return o;
}

static json_t *dht_json(const struct fms_sim *sim)
{
	json_t *o = json_object();
	fm_dht_stats st;
	uint32_t up = 0, i;

	for (i = 0; i < sim->sc.nodes; i++)
		up += sim->nodes[i].core != NULL;
	fms_dht_sum(sim, &st);
	set_s(o, "bootstrap_mode", fms_boot_mode_name(sim->sc.boot_mode));
	set_u(o, "bootstrap_fixed", sim->sc.boot_fixed);
	set_u(o, "subnet_max", sim->sc.subnet_max);
	set_d(o, "table_size_mean", up ? (double)st.table_size / up : 0.0);
	set_d(o, "table_live_fraction",
	      st.table_size ? (double)st.table_live / st.table_size : 0.0);
	set_d(o, "known_addrs_mean", up ? (double)st.known_addrs / up : 0.0);
	set_d(o, "values_stored_mean",
	      up ? (double)st.values_stored / up : 0.0);
	set_u(o, "lookups_all", st.lookups);
	set_u(o, "lookups_all_succeeded", st.lookups_succeeded);
	set_u(o, "bootstrap_rounds", st.bootstraps);
	if (sim->sc.join_refresh) {
		set_u(o, "join_refresh_lookups", sim->m.refresh_lookups);
		set_u(o, "join_refresh_errors", sim->m.refresh_errors);
	}
	set_u(o, "datagrams_sent", st.datagrams_sent);
	set_u(o, "datagrams_received", st.datagrams_received);
	set_u(o, "datagrams_dropped", st.datagrams_dropped);
	set_u(o, "rpc_timeouts", st.rpc_timeouts);
	set_d(o, "datagrams_sent_per_node_s",
	      sim->honest && sim->end_us
	              ? (double)st.datagrams_sent / sim->honest /
	                        ((double)sim->end_us / 1e6)
	              : 0.0);
	return o;
}

static json_t *sybil_json(const struct fms_sim *sim)
{
	const struct fms_metrics *m = &sim->m;
	json_t *o = json_object();
	char hex[2 * FM_NODE_ID_BYTES + 1];
	int kind = sim->sc.sybil_target == FMS_SYBIL_SERVICE ? FMS_LK_PROVIDER
	                                                     : FMS_LK_NODE;
	const struct fms_lookup_metrics *lk = &m->lk[kind];

	fm_hex_encode(sim->target_key, FM_NODE_ID_BYTES, hex);
	set_u(o, "sybils", sim->sc.sybils);
	set_u(o, "liars", sim->sc.liars);
	set_s(o, "target",
	      sim->sc.sybil_target == FMS_SYBIL_SERVICE ? "service" : "node");
	set_s(o, "target_key", hex);
	if (sim->sc.sybil_target == FMS_SYBIL_NODE)
		set_u(o, "victim", sim->victim);
	set_u(o, "prefix_bits", sim->sc.sybil_prefix_bits);
	set_u(o, "prefix_bits_min", m->sybil_prefix_min);
	set_u(o, "prefix_bits_max", m->sybil_prefix_max);
	set_u(o, "grind_tries", m->grind_tries);
	set_u(o, "target_lookups", lk->victim_done);
	set_u(o, "target_lookups_succeeded", lk->victim_succeeded);
	set_d(o, "target_success_rate",
	      lk->victim_done
	              ? (double)lk->victim_succeeded / (double)lk->victim_done
	              : 0.0);
	set_u(o, "adversary_datagrams_in", m->adv_dgrams_in);
	set_u(o, "adversary_datagrams_out", m->adv_dgrams_out);
	set_u(o, "proofs_sent", m->adv_proofs);
	set_u(o, "lying_answers", m->adv_lies);
	set_u(o, "stores_swallowed", m->adv_stores_swallowed);
	set_u(o, "crawl_requests", m->adv_crawls);
	return o;
}

static json_t *discovery_json(const struct fms_sim *sim)
{
	const struct fms_metrics *m = &sim->m;
	json_t *o = json_object();

	set_u(o, "segments", m->lan_segments);
	set_u(o, "segment_size", sim->sc.lan_segment_size);
	set_d(o, "lan_delay_ms", sim->sc.lan_delay_ms);
	set_u(o, "mdns_packets", m->mdns_packets);
	set_u(o, "mdns_deliveries", m->mdns_deliveries);
	set_u(o, "nodes_measured", m->disc_first.count);
	set_u(o, "first_peer_ms_p50", fms_hist_percentile(&m->disc_first, 50));
	set_u(o, "first_peer_ms_p99", fms_hist_percentile(&m->disc_first, 99));
	set_u(o, "all_found", m->disc_all.count);
	set_u(o, "all_peers_ms_p50", fms_hist_percentile(&m->disc_all, 50));
	set_u(o, "all_peers_ms_p99", fms_hist_percentile(&m->disc_all, 99));
	set_u(o, "all_peers_ms_max", m->disc_all.max_ms);
	return o;
}

static json_t *results_json(const struct fms_sim *sim)
{
	json_t *o = json_object();

	set_s(o, "scenario", sim->sc.name);
	set_u(o, "seed", sim->sc.seed);
	set_u(o, "nodes", sim->sc.nodes);
	set_u(o, "honest_nodes", sim->honest);
	set_d(o, "sim_time_s", (double)sim->end_us / 1e6);
	set_u(o, "events", sim->events);
	set_s(o, "core_version", fm_version());
	json_object_set_new(o, "sessions", sessions_json(sim));
	json_object_set_new(o, "network", network_json(sim));
	if (sim->sc.partition)
		json_object_set_new(o, "partition", partition_json(sim));
	if (sim->sc.churn || sim->sc.crash)
		json_object_set_new(o, "churn", churn_json(sim));
	if (sim->garbage > 0)
		json_object_set_new(o, "garbage", garbage_json(sim));
	if (sim->sc.dht)
		json_object_set_new(o, "dht", dht_json(sim));
	if (sim->sc.dht && sim->sc.lookup_rate > 0)
		json_object_set_new(o, "lookups",
		                    lookups_json(sim, FMS_LK_NODE));
	if (sim->sc.dht && sim->sc.provider_rate > 0)
		json_object_set_new(o, "provider_lookups",
		                    lookups_json(sim, FMS_LK_PROVIDER));
	if (sim->sc.sybils > 0 || sim->sc.liars > 0)
		json_object_set_new(o, "sybil", sybil_json(sim));
	if (sim->sc.lan)
		json_object_set_new(o, "discovery", discovery_json(sim));
	if (sim->jobs != NULL) { /* jobs_workload.c */
		json_object_set_new(o, "jobs", fms_jobs_json(sim));
		json_object_set_new(o, "jobs_workload",
		                    fms_jobs_workload_json(sim));
		if (sim->sc.jobs.failover)
			json_object_set_new(o, "failover",
			                    fms_jobs_failover_json(sim));
	}
	return o;
}

static int write_json(json_t *o, const char *dir, const char *name, char *err,
                      size_t err_len)
{
	char path[PATH_MAX_BYTES];
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	                                   JSON_REAL_PRECISION(12));
	FILE *f;
	int ok;

	if (text == NULL)
		return report_fail(err, err_len, "cannot format %s", name);
	f = open_out(dir, name, path, sizeof(path));
	if (f == NULL) {
		free(text);
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	}
	ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
	free(text);
	if (fclose(f) != 0 || !ok)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

static int write_timeseries(const struct fms_sim *sim, const char *dir,
                            char *err, size_t err_len)
{
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "timeseries.csv", path, sizeof(path));
	size_t i;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	fprintf(f, "t_s,nodes_running,sessions,connected_peers_mean,"
	           "handshakes,dials,events,core_datagram_drops,"
	           "session_errors,streams_live\n");
	for (i = 0; i < sim->row_count; i++) {
		const struct fms_row *r = &sim->rows[i];
		fprintf(f, "%.3f,%u,%llu,%.4f,%llu,%llu,%llu,%llu,%llu,%u\n",
		        (double)r->t_ms / 1000.0, r->nodes_up,
		        (unsigned long long)(r->peer_links / 2),
		        r->nodes_up ? (double)r->peer_links / r->nodes_up : 0.0,
		        (unsigned long long)r->handshakes,
		        (unsigned long long)r->dials,
		        (unsigned long long)r->events,
		        (unsigned long long)r->drops,
		        (unsigned long long)r->session_errors, r->streams_live);
	}
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

static int write_hist(const struct fms_hist *h, const char *dir,
                      const char *name, char *err, size_t err_len)
{
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, name, path, sizeof(path));
	uint64_t seen = 0, *over;
	size_t i, j;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	fprintf(f, "ms,count,cdf\n");
	for (i = 0; i < FMS_HIST_MS; i++) {
		if (h->buckets[i] == 0)
			continue;
		seen += h->buckets[i];
		fprintf(f, "%zu,%u,%.6f\n", i, h->buckets[i],
		        (double)seen / (double)h->count);
	}
	over = fms_hist_sorted_over(h);
	for (i = 0; i < h->over_count; i = j) {
		for (j = i; j < h->over_count && over[j] == over[i]; j++)
			;
		seen += j - i;
		fprintf(f, "%llu,%zu,%.6f\n", (unsigned long long)over[i],
		        j - i, (double)seen / (double)h->count);
	}
	free(over);
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

static int write_nodes(const struct fms_sim *sim, const char *dir, char *err,
                       size_t err_len)
{
	static const char *const states[] = {"unborn", "up", "crashed",
	                                     "offline"};
	static const char *const kinds[] = {"honest", "garbage", "sybil",
	                                    "liar"};
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "nodes.csv", path, sizeof(path));
	uint32_t i;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	fprintf(f, "node,region,kind,state,peers_connected,"
	           "handshakes_completed,bootstrap_contacts,"
	           "bootstrap_established,restarts\n");
	for (i = 0; i < sim->sc.nodes; i++) {
		const struct fms_node *nd = &sim->nodes[i];
		fm_node_status st = {0};
		fm_node_stats ns = {0};
		int established = 0, b;
		if (nd->core != NULL) {
			fm_node_get_status(nd->core, &st);
			fm_node_get_stats(nd->core, &ns);
		}
		for (b = 0; b < nd->boot_count; b++)
			established += (nd->boot_ok >> b) & 1;
		fprintf(f, "%u,%s,%s,%s,%u,%llu,%u,%d,%u\n", i,
		        sim->sc.net.region_names[nd->region],
		        kinds[nd->kind & 3], states[nd->state & 3],
		        st.peers_connected,
		        (unsigned long long)ns.handshakes_completed,
		        nd->boot_count, established, nd->incarnation);
	}
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

static int write_hops(const struct fms_sim *sim, const char *dir, char *err,
                      size_t err_len)
{
	const struct fms_lookup_metrics *a = &sim->m.lk[FMS_LK_NODE],
	                                *b = &sim->m.lk[FMS_LK_PROVIDER];
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "lookup_hops.csv", path, sizeof(path));
	int h, last = 0;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	for (h = 0; h <= FMS_HOPS_MAX; h++)
		if (a->hops[h] || b->hops[h])
			last = h;
	fprintf(f, "hops,node_lookups,node_fraction,provider_lookups,"
	           "provider_fraction\n");
	for (h = 0; h <= last; h++)
		fprintf(f, "%d,%llu,%.6f,%llu,%.6f\n", h,
		        (unsigned long long)a->hops[h],
		        a->succeeded ? (double)a->hops[h] / a->succeeded : 0.0,
		        (unsigned long long)b->hops[h],
		        b->succeeded ? (double)b->hops[h] / b->succeeded : 0.0);
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

/* Every failed workload lookup (the first FMS_FAILURES_MAX). */
static int write_failures(const struct fms_sim *sim, const char *dir, char *err,
                          size_t err_len)
{
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "lookup_failures.csv", path, sizeof(path));
	size_t i;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	fprintf(f, "start_s,end_s,kind,issuer,target,target_up_s,status\n");
	for (i = 0; i < sim->m.failure_count; i++) {
		const struct fms_lookup_failure *x = &sim->m.failures[i];
		fprintf(f, "%.3f,%.3f,%s,%u,", (double)x->start_ms / 1000.0,
		        (double)x->t_ms / 1000.0,
		        x->kind == FMS_LK_NODE ? "node" : "provider",
		        x->issuer);
		if (x->kind == FMS_LK_NODE)
			fprintf(f, "%u,%.3f,", x->target,
			        (double)x->target_up_ms / 1000.0);
		else
			fprintf(f, ",,");
		fprintf(f, "%d\n", x->status);
	}
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

/* Mean fill of each bucket over the running nodes, at the end. */
static int write_buckets(const struct fms_sim *sim, const char *dir, char *err,
                         size_t err_len)
{
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "dht_buckets.csv", path, sizeof(path));
	uint64_t sum[FM_DHT_BUCKET_COUNT] = {0},
	         used[FM_DHT_BUCKET_COUNT] = {0};
	uint32_t i, n = 0;
	int b, last = -1;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	for (i = 0; i < sim->sc.nodes; i++) {
		fm_dht_stats st;
		if (sim->nodes[i].core == NULL)
			continue;
		fm_node_dht_stats(sim->nodes[i].core, &st);
		n++;
		for (b = 0; b < FM_DHT_BUCKET_COUNT; b++) {
			sum[b] += st.bucket_fill[b];
			used[b] += st.bucket_fill[b] > 0;
			if (st.bucket_fill[b] > 0 && b > last)
				last = b;
		}
	}
	fprintf(f, "bucket,fill_mean,nodes_nonempty_fraction\n");
	for (b = 0; b <= last; b++)
		fprintf(f, "%d,%.3f,%.6f\n", b, n ? (double)sum[b] / n : 0.0,
		        n ? (double)used[b] / n : 0.0);
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

static int write_dht_table(const struct fms_sim *sim, const char *dir,
                           char *err, size_t err_len)
{
	char path[PATH_MAX_BYTES];
	FILE *f = open_out(dir, "dht_table.csv", path, sizeof(path));
	size_t i;

	if (f == NULL)
		return report_fail(err, err_len, "%s: %s", path,
		                   strerror(errno));
	fprintf(f, "t_s,nodes_running,table_size_mean,table_live_mean,"
	           "live_fraction,true_live_fraction,empty_tables,"
	           "known_addrs_mean,values_stored_mean,lookups_done,"
	           "lookups_succeeded,dht_datagrams_sent\n");
	for (i = 0; i < sim->dht_row_count; i++) {
		const struct fms_dht_row *r = &sim->dht_rows[i];
		double n = r->nodes ? (double)r->nodes : 1.0;
		fprintf(f, "%.3f,%u,%.3f,%.3f,%.6f,", (double)r->t_ms / 1000.0,
		        r->nodes, (double)r->table_sum / n,
		        (double)r->live_sum / n,
		        r->table_sum ? (double)r->live_sum / r->table_sum
		                     : 0.0);
		if (r->truth_entries)
			fprintf(f, "%.6f",
			        (double)r->truth_up / (double)r->truth_entries);
		fprintf(f, ",%llu,%.3f,%.3f,%llu,%llu,%llu\n",
		        (unsigned long long)r->empty_tables,
		        (double)r->known_sum / n, (double)r->values_sum / n,
		        (unsigned long long)r->lookups_done,
		        (unsigned long long)r->lookups_ok,
		        (unsigned long long)r->dgrams_sent);
	}
	if (fclose(f) != 0)
		return report_fail(err, err_len, "%s: write failed", path);
	return 0;
}

/* gnuplot, when it is on PATH; its absence is not an error. */
static int find_gnuplot(char *out, size_t out_len)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX_BYTES], *save = NULL, *dir;

	if (path == NULL || strlen(path) >= sizeof(buf))
		return 0;
	snprintf(buf, sizeof(buf), "%s", path);
	for (dir = strtok_r(buf, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, out_len, "%s/gnuplot", *dir ? dir : ".");
		if (access(out, X_OK) == 0)
			return 1;
	}
	return 0;
}

static void write_plots(const struct fms_sim *sim, const char *dir, int quiet)
{
	char gnuplot[PATH_MAX_BYTES], path[PATH_MAX_BYTES];
	FILE *f;
	pid_t pid;
	int status;

	if (!find_gnuplot(gnuplot, sizeof(gnuplot)))
		return;
	f = open_out(dir, "plots.gp", path, sizeof(path));
	if (f == NULL)
		return;
	fprintf(f,
	        "# fedmesh-sim plots; rerun with: gnuplot plots.gp\n"
	        "set terminal svg size 900,500 dynamic background '#ffffff'\n"
	        "set datafile separator ','\n"
	        "set key autotitle columnhead\n"
	        "set grid\n");
	fprintf(f,
	        "set output 'sessions.svg'\n"
	        "set title '%s: sessions and running nodes'\n"
	        "set xlabel 'simulated time (s)'\n"
	        "set ylabel 'sessions'\n"
	        "set y2label 'nodes running'\n"
	        "set y2tics\n"
	        "set ytics nomirror\n"
	        "set yrange [0:*]\n"
	        "set y2range [0:%u]\n",
	        sim->sc.name, sim->honest + sim->honest / 10 + 1);
	if (sim->sc.partition) {
		fprintf(f,
		        "set arrow from %.3f, graph 0 to %.3f, graph 1 "
		        "nohead dt 2\n",
		        ms_to_s(sim->sc.split_at_ms),
		        ms_to_s(sim->sc.split_at_ms));
		if (sim->sc.heal_at_ms > 0)
			fprintf(f,
			        "set arrow from %.3f, graph 0 to %.3f, graph 1 "
			        "nohead dt 3\n",
			        ms_to_s(sim->sc.heal_at_ms),
			        ms_to_s(sim->sc.heal_at_ms));
	}
	fprintf(f, "plot 'timeseries.csv' using 1:3 with lines lw 2 "
	           "title 'sessions', '' using 1:2 axes x1y2 with lines "
	           "title 'nodes running'\n"
	           "unset arrow\nunset y2tics\nunset y2label\n"
	           "set ytics mirror\nset autoscale y\n");
	if (sim->m.hs.count > 0)
		fprintf(f,
		        "set output 'handshake_cdf.svg'\n"
		        "set title '%s: handshake latency (connect to "
		        "session, dialler side)'\n"
		        "set xlabel 'ms'\nset ylabel 'CDF'\n"
		        "set key bottom right\n"
		        "set yrange [0:1]\n"
		        "plot 'handshake_ms.csv' using 1:3 with steps lw 2 "
		        "title 'handshakes'\n"
		        "set autoscale y\n",
		        sim->sc.name);
	if (sim->m.reconnect.count > 0)
		fprintf(f,
		        "set output 'reconnect_cdf.svg'\n"
		        "set title '%s: restart to first session'\n"
		        "set xlabel 'ms'\nset ylabel 'CDF'\n"
		        "set key bottom right\n"
		        "set yrange [0:1]\n"
		        "plot 'reconnect_ms.csv' using 1:3 with steps lw 2 "
		        "title 'restarts'\n",
		        sim->sc.name);
	if (sim->sc.dht && sim->dht_row_count > 0)
		fprintf(f,
		        "set output 'dht_table.svg'\n"
		        "set title '%s: routing tables (mean over running "
		        "nodes)'\n"
		        "set xlabel 'simulated time (s)'\n"
		        "set ylabel 'entries'\nset y2label 'fraction'\n"
		        "set y2tics\nset ytics nomirror\n"
		        "set yrange [0:*]\nset y2range [0:1.05]\n"
		        "set key bottom right\n"
		        "plot 'dht_table.csv' using 1:3 with lines lw 2 "
		        "title 'table size', '' using 1:4 with lines "
		        "title 'live entries (core)', '' using 1:5 axes x1y2 "
		        "with lines dt 2 title 'live fraction (core)'%s\n"
		        "unset y2tics\nunset y2label\nset ytics mirror\n"
		        "set autoscale y\n",
		        sim->sc.name,
		        sim->sc.churn || sim->sc.crash
		                ? ", '' using 1:6 axes x1y2 with lines dt 3 "
		                  "title 'entries really up (saved tables)'"
		                : "");
	if (sim->m.lk[FMS_LK_NODE].latency_all.count > 0 ||
	    sim->m.lk[FMS_LK_PROVIDER].latency_all.count > 0) {
		int a = sim->m.lk[FMS_LK_NODE].latency.count > 0,
		    b = sim->m.lk[FMS_LK_PROVIDER].latency.count > 0;
		if (a || b)
			fprintf(f,
			        "set output 'lookup_cdf.svg'\n"
			        "set title '%s: lookup latency (succeeded "
			        "lookups)'\n"
			        "set xlabel 'ms'\nset ylabel 'CDF'\n"
			        "set key bottom right\nset yrange [0:1]\n"
			        "set logscale x\n"
			        "plot %s%s%s\n"
			        "unset logscale x\nset autoscale y\n",
			        sim->sc.name,
			        a ? "'lookup_ms.csv' using 1:3 with steps lw 2 "
			            "title 'node lookups'"
			          : "",
			        a && b ? ", " : "",
			        b ? "'provider_lookup_ms.csv' using 1:3 with "
			            "steps lw 2 title 'provider lookups'"
			          : "");
		fprintf(f,
		        "set output 'lookup_hops.svg'\n"
		        "set title '%s: hops of succeeded lookups'\n"
		        "set xlabel 'hops'\nset ylabel 'fraction'\n"
		        "set key top right\nset style data histograms\n"
		        "set style fill solid 0.6 border -1\n"
		        "set boxwidth 0.8\nset yrange [0:1]\n"
		        "plot 'lookup_hops.csv' using 3:xtic(1) "
		        "title 'node lookups', '' using 5 "
		        "title 'provider lookups'\n"
		        "set autoscale y\nset style data lines\n",
		        sim->sc.name);
	}
	if (fclose(f) != 0)
		return;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		if (chdir(dir) != 0)
			_exit(127);
		if (quiet && freopen("/dev/null", "w", stderr) == NULL)
			_exit(127);
		execl(gnuplot, "gnuplot", "plots.gp", (char *)NULL);
		_exit(127);
	}
	if (pid > 0) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!quiet && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
			fprintf(stderr, "fedmesh-sim: gnuplot failed; the CSV "
			                "files are complete\n");
	}
}

int fms_report_write(const struct fms_sim *sim, const char *dir,
                     const char *scenario_file, int quiet, char *err,
                     size_t err_len)
{
	unsigned long long rss = fms_peak_rss_bytes();
	json_t *o, *host;
	int rc;

	if (mkdir_p(dir) != 0)
		return report_fail(err, err_len, "%s: %s", dir,
		                   strerror(errno));
	o = results_json(sim);
	rc = write_json(o, dir, "results.deterministic.json", err, err_len);
	host = json_object();
	set_d(host, "wall_time_s", sim->wall_s);
	set_d(host, "cpu_time_s", cpu_time_s());
	set_d(host, "events_per_s",
	      sim->wall_s > 0 ? (double)sim->events / sim->wall_s : 0.0);
	set_u(host, "peak_rss_bytes", rss);
	set_u(host, "bytes_per_node", rss / sim->sc.nodes);
	set_s(host, "crypto", sim->sc.crypto_modeled ? "modeled" : "real");
	set_s(host, "verify_cache", sim->sc.verify_cache ? "on" : "off");
	set_u(host, "signature_verifications", sim->m.verify_calls);
	set_u(host, "verify_cache_hits", sim->m.verify_hits);
	set_u(host, "signatures_made", sim->m.sign_calls);
	if (scenario_file != NULL)
		set_s(host, "scenario_file", scenario_file);
	json_object_set_new(o, "host", host);
	if (rc == 0)
		rc = write_json(o, dir, "results.json", err, err_len);
	json_decref(o);
	if (rc == 0)
		rc = write_timeseries(sim, dir, err, err_len);
	if (rc == 0)
		rc = write_hist(&sim->m.hs, dir, "handshake_ms.csv", err,
		                err_len);
	if (rc == 0 && sim->m.reconnect.count > 0)
		rc = write_hist(&sim->m.reconnect, dir, "reconnect_ms.csv", err,
		                err_len);
	if (rc == 0)
		rc = write_nodes(sim, dir, err, err_len);
	if (rc == 0 && sim->sc.dht)
		rc = write_dht_table(sim, dir, err, err_len);
	if (rc == 0 && sim->sc.dht)
		rc = write_buckets(sim, dir, err, err_len);
	if (rc == 0 && (sim->sc.lookup_rate > 0 || sim->sc.provider_rate > 0))
		rc = write_hops(sim, dir, err, err_len);
	if (rc == 0 && (sim->sc.lookup_rate > 0 || sim->sc.provider_rate > 0))
		rc = write_failures(sim, dir, err, err_len);
	if (rc == 0 && sim->sc.lookup_rate > 0)
		rc = write_hist(&sim->m.lk[FMS_LK_NODE].latency, dir,
		                "lookup_ms.csv", err, err_len);
	if (rc == 0 && sim->sc.provider_rate > 0)
		rc = write_hist(&sim->m.lk[FMS_LK_PROVIDER].latency, dir,
		                "provider_lookup_ms.csv", err, err_len);
	if (rc == 0 && sim->sc.lan)
		rc = write_hist(&sim->m.disc_all, dir, "discovery_ms.csv", err,
		                err_len);
	if (rc == 0)
		write_plots(sim, dir, quiet);
	if (rc == 0)
		rc = fms_jobs_write_files(sim, dir, quiet, err, err_len);
	return rc;
}

void fms_report_summary(const struct fms_sim *sim, FILE *out)
{
	const struct fms_metrics *m = &sim->m;
	uint32_t up, lo, hi;
	uint64_t links = fms_sim_peer_links(sim, &up, &lo, &hi);
	unsigned long long rss = fms_peak_rss_bytes();

	fprintf(out,
	        "scenario %s: %u nodes, seed %llu, %.0f s simulated in %.2f s "
	        "(%.2f s CPU; %llu events, %.2f M/s), peak RSS %.1f MiB "
	        "(%llu B/node)\n",
	        sim->sc.name, sim->sc.nodes, (unsigned long long)sim->sc.seed,
	        (double)sim->end_us / 1e6, sim->wall_s, cpu_time_s(),
	        (unsigned long long)sim->events,
	        sim->wall_s > 0 ? (double)sim->events / sim->wall_s / 1e6 : 0,
	        (double)rss / 1048576.0, rss / sim->sc.nodes);
	fprintf(out,
	        "sessions: %llu established by diallers, bootstrap pairs "
	        "%llu/%llu, handshake p50 %llu ms p99 %llu ms; now %llu "
	        "sessions, %.2f peers per running node (min %u, max %u)\n",
	        (unsigned long long)m->hs_initiator,
	        (unsigned long long)m->bootstrap_established,
	        (unsigned long long)m->bootstrap_pairs,
	        (unsigned long long)fms_hist_percentile(&m->hs, 50),
	        (unsigned long long)fms_hist_percentile(&m->hs, 99),
	        (unsigned long long)(links / 2), up ? (double)links / up : 0.0,
	        lo, hi);
	if (sim->sc.partition && m->heal_done)
		fprintf(out,
		        "partition: %llu sessions before, %llu at heal, "
		        "reconnect 99%% %.1f s, 100%% %s\n",
		        (unsigned long long)m->sessions_before,
		        (unsigned long long)m->sessions_at_heal,
		        (double)m->t99_us / 1e6,
		        m->t100_us ? "reached" : "not reached");
	if (sim->sc.churn || sim->sc.crash)
		fprintf(out,
		        "churn: %llu leaves, %llu returns, %llu crashes, %llu "
		        "restarts, reconnect p50 %llu ms p99 %llu ms\n",
		        (unsigned long long)m->leaves,
		        (unsigned long long)m->returns,
		        (unsigned long long)m->crashes,
		        (unsigned long long)m->restarts,
		        (unsigned long long)fms_hist_percentile(&m->reconnect,
		                                                50),
		        (unsigned long long)fms_hist_percentile(&m->reconnect,
		                                                99));
	if (sim->garbage > 0)
		fprintf(out,
		        "garbage: %u senders, %llu datagrams, %llu streams\n",
		        sim->garbage, (unsigned long long)m->garbage_dgrams,
		        (unsigned long long)m->garbage_streams);
	{
		int k;
		for (k = 0; k < FMS_LK_KINDS; k++) {
			const struct fms_lookup_metrics *lk = &m->lk[k];
			uint64_t count = lk->done + lk->start_errors;
			if ((k == FMS_LK_NODE ? sim->sc.lookup_rate
			                      : sim->sc.provider_rate) <= 0)
				continue;
			fprintf(out,
			        "%s: %llu, success %.4f, hops mean %.2f p99 "
			        "%llu, latency p50 %llu ms p99 %llu ms, %.1f "
			        "messages per lookup\n",
			        k == FMS_LK_NODE ? "node lookups"
			                         : "provider lookups",
			        (unsigned long long)count,
			        count ? (double)lk->succeeded / (double)count
			              : 0.0,
			        lk->succeeded ? (double)lk->hops_sum /
			                                (double)lk->succeeded
			                      : 0.0,
			        (unsigned long long)hops_percentile(lk, 99),
			        (unsigned long long)fms_hist_percentile(
			                &lk->latency, 50),
			        (unsigned long long)fms_hist_percentile(
			                &lk->latency, 99),
			        lk->msg_samples
			                ? (double)lk->msg_sum /
			                          (double)lk->msg_samples
			                : 0.0);
		}
	}
	if (sim->sc.sybils > 0 || sim->sc.liars > 0) {
		int k = sim->sc.sybil_target == FMS_SYBIL_SERVICE
		                ? FMS_LK_PROVIDER
		                : FMS_LK_NODE;
		fprintf(out,
		        "sybil: %u sybils (%u-%u bits shared with the "
		        "target), %u liars; lookups of the target %llu/%llu "
		        "succeeded\n",
		        sim->sc.sybils, m->sybil_prefix_min,
		        m->sybil_prefix_max, sim->sc.liars,
		        (unsigned long long)m->lk[k].victim_succeeded,
		        (unsigned long long)m->lk[k].victim_done);
	}
	if (sim->sc.lan)
		fprintf(out,
		        "discovery: %llu nodes measured, all LAN peers found "
		        "p50 %llu ms p99 %llu ms\n",
		        (unsigned long long)m->disc_first.count,
		        (unsigned long long)fms_hist_percentile(&m->disc_all,
		                                                50),
		        (unsigned long long)fms_hist_percentile(&m->disc_all,
		                                                99));
	fms_jobs_summary(sim, out);
}
