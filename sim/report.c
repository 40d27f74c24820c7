/* Reports of a simulation run (report.h). Everything but the host section
 * is a function of the seed, the scenario and the build, printed with
 * fixed formats, so two runs can be compared byte for byte. */
#include <errno.h>
#include <jansson.h>
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
		        nd->kind == FMS_GARBAGE ? "garbage" : "honest",
		        states[nd->state & 3], st.peers_connected,
		        (unsigned long long)ns.handshakes_completed,
		        nd->boot_count, established, nd->incarnation);
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
	set_d(host, "events_per_s",
	      sim->wall_s > 0 ? (double)sim->events / sim->wall_s : 0.0);
	set_u(host, "peak_rss_bytes", rss);
	set_u(host, "bytes_per_node", rss / sim->sc.nodes);
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
	        "(%llu events, %.2f M/s), peak RSS %.1f MiB (%llu B/node)\n",
	        sim->sc.name, sim->sc.nodes, (unsigned long long)sim->sc.seed,
	        (double)sim->end_us / 1e6, sim->wall_s,
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
	fms_jobs_summary(sim, out);
}
