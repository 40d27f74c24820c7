/* Scenario files (scenario.h): defaults, the INI keys, and the fit of the
 * churn distribution to two quantiles. */
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenario.h"

/* z such that P(N(0,1) < z) = 0.8. */
#define Z80 0.8416212335729143

int fms_fail(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && err_len > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

void fms_scenario_defaults(struct fms_scenario *sc)
{
	uint32_t i;

	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "unnamed");
	sc->nodes = 100;
	sc->seed = 1;
	sc->duration_ms = 5 * 60 * 1000;
	fms_net_params_default(&sc->net);
	sc->net.jitter_ms = 2.0;
	for (i = 0; i < sc->net.region_count; i++)
		sc->region_weight[i] = 1.0;
	sc->contacts_min = 1;
	sc->contacts_max = 3;
	sc->join_spread_ms = 30 * 1000;
	sc->split_mode = FMS_SPLIT_HALVES;
	sc->isolate = 1;
	sc->check_ms = 1000;
	sc->session_dist = FMS_DIST_LOGNORMAL;
	sc->session_median_ms = 2ULL * 3600 * 1000;
	sc->session_p80_ms = 8ULL * 3600 * 1000;
	sc->offline_mean_ms = 30ULL * 60 * 1000;
	sc->mtbf_ms = 6ULL * 3600 * 1000;
	sc->restart_min_ms = 5 * 1000;
	sc->restart_max_ms = 60 * 1000;
	sc->garbage_interval_ms = 1000;
	sc->garbage_datagram_share = 0.5;
	sc->garbage_max_bytes = 1600;
	sc->sample_ms = 10 * 1000;
	sc->boot_mode = FMS_BOOT_SESSIONS;
	sc->dht = 1;
	sc->verify_cache = 1;
	sc->crypto_modeled = 1;
	snprintf(sc->service, sizeof(sc->service), "echo");
	sc->lookup_start_ms = UINT64_MAX; /* join_spread + target_min_age */
	sc->target_min_age_ms = 60 * 1000;
	sc->sybil_prefix_bits = 12;
	sc->sybil_target = FMS_SYBIL_NODE;
	sc->victim_share = 0.5;
	sc->adversary_interval_ms = 60 * 1000;
	sc->lan_segment_size = 20;
	sc->lan_delay_ms = 0.5;
	fms_jobs_params_default(&sc->jobs);
}

int fms_parse_duration_ms(const char *text, uint64_t *out)
{
	char *end = NULL;
	double v, scale = 1000.0;

	if (text == NULL || *text == '\0')
		return -EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || !(v >= 0) || v > 1e15)
		return -EINVAL;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		scale = 1000.0;
	else if (strcmp(end, "ms") == 0)
		scale = 1.0;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		scale = 60.0 * 1000;
	else if (strcmp(end, "h") == 0)
		scale = 3600.0 * 1000;
	else if (strcmp(end, "d") == 0)
		scale = 86400.0 * 1000;
	else
		return -EINVAL;
	*out = (uint64_t)(v * scale + 0.5);
	return 0;
}

int fms_parse_u64(const char *text, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	if (text == NULL || *text == '\0' || *text == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int fms_parse_u32(const char *text, uint32_t max, uint32_t *out)
{
	uint64_t v;

	if (fms_parse_u64(text, &v) != 0 || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int fms_parse_double(const char *text, double lo, double hi, double *out)
{
	char *end = NULL;
	double v;

	if (text == NULL || *text == '\0')
		return -EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || *end != '\0' || !(v >= lo && v <= hi))
		return -EINVAL;
	*out = v;
	return 0;
}

int fms_parse_bool(const char *text, int *out)
{
	if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 ||
	    strcmp(text, "1") == 0 || strcmp(text, "on") == 0)
		*out = 1;
	else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 ||
	         strcmp(text, "0") == 0 || strcmp(text, "off") == 0)
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

int fms_service_name_check(const char *name)
{
	size_t i, len = strlen(name);

	if (len == 0 || len > FMS_SERVICE_NAME_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
		      name[i] == '.' || name[i] == '-'))
			return -EINVAL;
	return 0;
}

/* "us-east:20 eu-west:10": the weights of the listed regions; the others
 * get none. */
static int parse_regions(struct fms_scenario *sc, const char *value, char *err,
                         size_t err_len)
{
	char buf[512], *save = NULL, *tok;
	double w[FMS_NET_REGIONS_MAX] = {0};
	int any = 0;

	if (strlen(value) >= sizeof(buf))
		return fms_fail(err, err_len, "regions: list too long");
	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save)) {
		char *colon = strchr(tok, ':');
		double weight = 1.0;
		int r;
		if (colon != NULL) {
			*colon = '\0';
			if (fms_parse_double(colon + 1, 0, 1e9, &weight) != 0)
				return fms_fail(err, err_len,
				                "regions: bad weight for '%s'",
				                tok);
		}
		r = fms_net_region_find(&sc->net, tok);
		if (r < 0)
			return fms_fail(err, err_len,
			                "regions: unknown region '%s'", tok);
		w[r] = weight;
		if (weight > 0)
			any = 1;
	}
	if (!any)
		return fms_fail(err, err_len,
		                "regions: no region with a weight");
	memcpy(sc->region_weight, w, sizeof(w));
	return 0;
}

static int parse_side_a(struct fms_scenario *sc, const char *value, char *err,
                        size_t err_len)
{
	char buf[512], *save = NULL, *tok;

	if (strlen(value) >= sizeof(buf))
		return fms_fail(err, err_len, "side_a: list too long");
	snprintf(buf, sizeof(buf), "%s", value);
	memset(sc->side_a, 0, sizeof(sc->side_a));
	for (tok = strtok_r(buf, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save)) {
		int r = fms_net_region_find(&sc->net, tok);
		if (r < 0)
			return fms_fail(err, err_len,
			                "side_a: unknown region '%s'", tok);
		sc->side_a[r] = 1;
	}
	return 0;
}

/* [rtt] "us-east/eu-west = 85": both directions. */
static int parse_rtt(struct fms_scenario *sc, const char *key,
                     const char *value, char *err, size_t err_len)
{
	char a[FMS_NET_REGION_NAME_MAX + 1], *slash;
	double ms;
	int ra, rb;

	if (strlen(key) >= sizeof(a) * 2)
		return fms_fail(err, err_len, "rtt: bad key '%s'", key);
	slash = strchr(key, '/');
	if (slash == NULL || (size_t)(slash - key) >= sizeof(a))
		return fms_fail(err, err_len, "rtt: key must be REGION/REGION");
	memcpy(a, key, (size_t)(slash - key));
	a[slash - key] = '\0';
	ra = fms_net_region_find(&sc->net, a);
	rb = fms_net_region_find(&sc->net, slash + 1);
	if (ra < 0 || rb < 0)
		return fms_fail(err, err_len, "rtt: unknown region in '%s'",
		                key);
	if (fms_parse_double(value, 0, 60000, &ms) != 0)
		return fms_fail(err, err_len, "rtt: bad value for '%s'", key);
	sc->net.rtt_ms[ra][rb] = ms;
	sc->net.rtt_ms[rb][ra] = ms;
	return 0;
}

#define IS(s, k) (strcmp(section, s) == 0 && strcmp(key, k) == 0)

static int set_duration(uint64_t *field, const char *value)
{
	return fms_parse_duration_ms(value, field);
}

int fms_scenario_set(struct fms_scenario *sc, const char *section,
                     const char *key, const char *value, char *err,
                     size_t err_len)
{
	uint64_t ms = 0;
	int rc = 0;

	if (IS("scenario", "name")) {
		if (strlen(value) > FMS_SCENARIO_NAME_MAX || *value == '\0')
			return fms_fail(err, err_len,
			                "name: 1 to %d characters",
			                FMS_SCENARIO_NAME_MAX);
		snprintf(sc->name, sizeof(sc->name), "%s", value);
	} else if (IS("scenario", "description")) {
		snprintf(sc->description, sizeof(sc->description), "%s", value);
	} else if (IS("scenario", "nodes")) {
		rc = fms_parse_u32(value, FMS_NODES_MAX, &sc->nodes);
		if (rc == 0 && sc->nodes == 0)
			rc = -EINVAL;
	} else if (IS("scenario", "seed")) {
		rc = fms_parse_u64(value, &sc->seed);
	} else if (IS("scenario", "duration")) {
		rc = set_duration(&sc->duration_ms, value);
	} else if (IS("network", "regions")) {
		return parse_regions(sc, value, err, err_len);
	} else if (IS("network", "jitter_ms")) {
		rc = fms_parse_double(value, 0, 10000, &sc->net.jitter_ms);
	} else if (IS("network", "intra_region_ms")) {
		double ms_d;
		uint32_t i;
		rc = fms_parse_double(value, 0, 10000, &ms_d);
		for (i = 0; rc == 0 && i < sc->net.region_count; i++)
			sc->net.rtt_ms[i][i] = ms_d;
	} else if (IS("network", "loss")) {
		rc = fms_parse_double(value, 0, 1, &sc->net.loss);
	} else if (IS("network", "duplicate")) {
		rc = fms_parse_double(value, 0, 1, &sc->net.duplicate);
	} else if (IS("network", "reorder")) {
		rc = fms_parse_double(value, 0, 1, &sc->net.reorder);
	} else if (IS("network", "reorder_ms")) {
		rc = fms_parse_double(value, 0, 60000, &sc->net.reorder_ms);
	} else if (IS("network", "bandwidth_kbps")) {
		rc = fms_parse_u32(value, UINT32_MAX, &sc->net.bandwidth_kbps);
	} else if (IS("network", "syn_retries")) {
		rc = fms_parse_u32(value, 16, &sc->net.syn_retries);
	} else if (IS("network", "syn_rto")) {
		rc = set_duration(&ms, value);
		sc->net.syn_rto_us = ms * 1000;
	} else if (IS("network", "rto_min")) {
		rc = set_duration(&ms, value);
		sc->net.rto_min_us = ms * 1000;
	} else if (IS("network", "partition_break")) {
		rc = set_duration(&ms, value);
		sc->net.partition_break_us = ms * 1000;
	} else if (strcmp(section, "rtt") == 0) {
		return parse_rtt(sc, key, value, err, err_len);
	} else if (IS("bootstrap", "contacts_min")) {
		rc = fms_parse_u32(value, FMS_BOOT_MAX, &sc->contacts_min);
	} else if (IS("bootstrap", "contacts_max")) {
		rc = fms_parse_u32(value, FMS_BOOT_MAX, &sc->contacts_max);
	} else if (IS("bootstrap", "join_spread")) {
		rc = set_duration(&sc->join_spread_ms, value);
	} else if (IS("bootstrap", "mode")) {
		if (strcmp(value, "sessions") == 0)
			sc->boot_mode = FMS_BOOT_SESSIONS;
		else if (strcmp(value, "dht") == 0)
			sc->boot_mode = FMS_BOOT_DHT;
		else
			rc = -EINVAL;
	} else if (IS("bootstrap", "fixed")) {
		rc = fms_parse_u32(value, FMS_NODES_MAX, &sc->boot_fixed);
	} else if (IS("dht", "enabled")) {
		rc = fms_parse_bool(value, &sc->dht);
	} else if (IS("dht", "subnet_max")) {
		rc = fms_parse_u32(value, 255, &sc->subnet_max);
	} else if (IS("dht", "join_refresh")) {
		rc = fms_parse_bool(value, &sc->join_refresh);
	} else if (IS("dht", "verify_cache")) {
		rc = fms_parse_bool(value, &sc->verify_cache);
	} else if (IS("dht", "crypto")) {
		if (strcmp(value, "modeled") == 0)
			sc->crypto_modeled = 1;
		else if (strcmp(value, "real") == 0)
			sc->crypto_modeled = 0;
		else
			rc = -EINVAL;
	} else if (IS("services", "fraction")) {
		rc = fms_parse_double(value, 0, 1, &sc->service_fraction);
	} else if (IS("services", "name")) {
		rc = fms_service_name_check(value);
		if (rc == 0)
			snprintf(sc->service, sizeof(sc->service), "%s", value);
	} else if (IS("lookups", "rate")) {
		rc = fms_parse_double(value, 0, 1e6, &sc->lookup_rate);
	} else if (IS("lookups", "provider_rate")) {
		rc = fms_parse_double(value, 0, 1e6, &sc->provider_rate);
	} else if (IS("lookups", "start")) {
		rc = set_duration(&sc->lookup_start_ms, value);
	} else if (IS("lookups", "count")) {
		rc = fms_parse_u64(value, &sc->lookup_count);
	} else if (IS("lookups", "target_min_age")) {
		rc = set_duration(&sc->target_min_age_ms, value);
	} else if (IS("lookups", "stop_when_done")) {
		rc = fms_parse_bool(value, &sc->stop_when_done);
	} else if (IS("sybil", "sybils")) {
		rc = fms_parse_u32(value, FMS_SYBILS_MAX, &sc->sybils);
	} else if (IS("sybil", "prefix_bits")) {
		rc = fms_parse_u32(value, 24, &sc->sybil_prefix_bits);
	} else if (IS("sybil", "target")) {
		if (strcmp(value, "node") == 0)
			sc->sybil_target = FMS_SYBIL_NODE;
		else if (strcmp(value, "service") == 0)
			sc->sybil_target = FMS_SYBIL_SERVICE;
		else
			rc = -EINVAL;
	} else if (IS("sybil", "subnet")) {
		if (strcmp(value, "shared") == 0)
			sc->sybil_shared_subnet = 1;
		else if (strcmp(value, "distinct") == 0)
			sc->sybil_shared_subnet = 0;
		else
			rc = -EINVAL;
	} else if (IS("sybil", "liars")) {
		rc = fms_parse_u32(value, FMS_SYBILS_MAX, &sc->liars);
	} else if (IS("sybil", "victim_share")) {
		rc = fms_parse_double(value, 0, 1, &sc->victim_share);
	} else if (IS("sybil", "interval")) {
		rc = set_duration(&sc->adversary_interval_ms, value);
	} else if (IS("lan", "enabled")) {
		rc = fms_parse_bool(value, &sc->lan);
	} else if (IS("lan", "segment_size")) {
		rc = fms_parse_u32(value, 1000, &sc->lan_segment_size);
		if (rc == 0 && sc->lan_segment_size < 2)
			rc = -EINVAL;
	} else if (IS("lan", "delay_ms")) {
		rc = fms_parse_double(value, 0, 1000, &sc->lan_delay_ms);
	} else if (IS("partition", "enabled")) {
		rc = fms_parse_bool(value, &sc->partition);
	} else if (IS("partition", "split_at")) {
		rc = set_duration(&sc->split_at_ms, value);
	} else if (IS("partition", "heal_at")) {
		rc = set_duration(&sc->heal_at_ms, value);
	} else if (IS("partition", "mode")) {
		if (strcmp(value, "halves") == 0)
			sc->split_mode = FMS_SPLIT_HALVES;
		else if (strcmp(value, "regions") == 0)
			sc->split_mode = FMS_SPLIT_REGIONS;
		else if (strcmp(value, "isolate") == 0)
			sc->split_mode = FMS_SPLIT_ISOLATE;
		else
			rc = -EINVAL;
	} else if (IS("partition", "side_a")) {
		return parse_side_a(sc, value, err, err_len);
	} else if (IS("partition", "isolate")) {
		rc = fms_parse_u32(value, FMS_NODES_MAX, &sc->isolate);
	} else if (IS("partition", "check_interval")) {
		rc = set_duration(&sc->check_ms, value);
	} else if (IS("churn", "enabled")) {
		rc = fms_parse_bool(value, &sc->churn);
	} else if (IS("churn", "session")) {
		if (strcmp(value, "lognormal") == 0)
			sc->session_dist = FMS_DIST_LOGNORMAL;
		else if (strcmp(value, "weibull") == 0)
			sc->session_dist = FMS_DIST_WEIBULL;
		else if (strcmp(value, "exponential") == 0)
			sc->session_dist = FMS_DIST_EXPONENTIAL;
		else
			rc = -EINVAL;
	} else if (IS("churn", "session_median")) {
		rc = set_duration(&sc->session_median_ms, value);
	} else if (IS("churn", "session_p80")) {
		rc = set_duration(&sc->session_p80_ms, value);
	} else if (IS("churn", "offline_mean")) {
		rc = set_duration(&sc->offline_mean_ms, value);
	} else if (IS("churn", "graceful")) {
		rc = fms_parse_double(value, 0, 1, &sc->graceful);
	} else if (IS("crash", "enabled")) {
		rc = fms_parse_bool(value, &sc->crash);
	} else if (IS("crash", "mtbf")) {
		rc = set_duration(&sc->mtbf_ms, value);
	} else if (IS("crash", "restart_min")) {
		rc = set_duration(&sc->restart_min_ms, value);
	} else if (IS("crash", "restart_max")) {
		rc = set_duration(&sc->restart_max_ms, value);
	} else if (IS("garbage", "fraction")) {
		rc = fms_parse_double(value, 0, 0.9, &sc->garbage_fraction);
	} else if (IS("garbage", "interval")) {
		rc = set_duration(&sc->garbage_interval_ms, value);
	} else if (IS("garbage", "datagram_share")) {
		rc = fms_parse_double(value, 0, 1, &sc->garbage_datagram_share);
	} else if (IS("garbage", "max_bytes")) {
		rc = fms_parse_u32(value, FMS_GARBAGE_BYTES_MAX,
		                   &sc->garbage_max_bytes);
		if (rc == 0 && sc->garbage_max_bytes == 0)
			rc = -EINVAL;
	} else if (IS("output", "sample_interval")) {
		rc = set_duration(&sc->sample_ms, value);
	} else if (strcmp(section, "jobs") == 0 ||
	           strcmp(section, "failover") == 0) {
		return fms_jobs_params_set(&sc->jobs, section, key, value, err,
		                           err_len);
	} else {
		return fms_fail(err, err_len, "unknown key [%s] %s", section,
		                key);
	}
	if (rc != 0)
		return fms_fail(err, err_len, "[%s] %s: invalid value '%s'",
		                section, key, value);
	return 0;
}

struct load_ctx {
	struct fms_scenario *sc;
	char *err;
	size_t err_len;
	int failed;
};

static int scenario_ini_line(void *user, const char *section, const char *key,
                             const char *value)
{
	struct load_ctx *c = user;

	if (c->failed)
		return 0;
	if (fms_scenario_set(c->sc, section, key, value, c->err, c->err_len) !=
	    0) {
		c->failed = 1;
		return 0;
	}
	return 1;
}

int fms_scenario_load(struct fms_scenario *sc, const char *path, char *err,
                      size_t err_len)
{
	struct load_ctx c = {sc, err, err_len, 0};
	char msg[256] = "";
	int line;

	c.err = msg;
	c.err_len = sizeof(msg);
	line = ini_parse(path, scenario_ini_line, &c);
	if (line < 0) {
		snprintf(err, err_len, "%s: cannot read the file", path);
		return -ENOENT;
	}
	if (line > 0) {
		if (msg[0] != '\0')
			snprintf(err, err_len, "%s:%d: %s", path, line, msg);
		else
			snprintf(err, err_len, "%s:%d: syntax error", path,
			         line);
		return -EINVAL;
	}
	return 0;
}

int fms_scenario_check(const struct fms_scenario *sc, char *err, size_t err_len)
{
	if (sc->nodes == 0 || sc->nodes > FMS_NODES_MAX)
		return fms_fail(err, err_len, "nodes must be 1 to %u",
		                FMS_NODES_MAX);
	if (sc->duration_ms == 0)
		return fms_fail(err, err_len, "duration must be positive");
	if (sc->contacts_min > sc->contacts_max)
		return fms_fail(err, err_len,
		                "bootstrap: contacts_min > contacts_max");
	if (sc->sample_ms == 0)
		return fms_fail(err, err_len, "output: sample_interval is 0");
	if (sc->partition) {
		if (sc->heal_at_ms != 0 && sc->heal_at_ms <= sc->split_at_ms)
			return fms_fail(
			        err, err_len,
			        "partition: heal_at must follow split_at");
		if (sc->check_ms == 0)
			return fms_fail(err, err_len,
			                "partition: check_interval is 0");
	}
	if (sc->churn && (sc->session_median_ms == 0 ||
	                  sc->session_p80_ms <= sc->session_median_ms))
		return fms_fail(err, err_len,
		                "churn: need 0 < session_median < session_p80");
	if (sc->churn && sc->offline_mean_ms == 0)
		return fms_fail(err, err_len, "churn: offline_mean is 0");
	if (sc->crash &&
	    (sc->mtbf_ms == 0 || sc->restart_max_ms < sc->restart_min_ms))
		return fms_fail(
		        err, err_len,
		        "crash: need mtbf > 0, restart_min <= restart_max");
	if (sc->garbage_fraction > 0 && sc->garbage_interval_ms == 0)
		return fms_fail(err, err_len, "garbage: interval is 0");
	if ((sc->lookup_rate > 0 || sc->provider_rate > 0 || sc->sybils > 0 ||
	     sc->liars > 0) &&
	    !sc->dht)
		return fms_fail(err, err_len,
		                "lookups and adversaries need [dht] enabled");
	if (sc->boot_mode == FMS_BOOT_DHT && !sc->dht)
		return fms_fail(err, err_len,
		                "bootstrap: mode = dht needs [dht] enabled");
	if ((uint64_t)sc->sybils + sc->liars >= sc->nodes)
		return fms_fail(
		        err, err_len,
		        "sybil: sybils + liars must leave honest nodes");
	if ((sc->sybils > 0 || sc->liars > 0) && sc->adversary_interval_ms == 0)
		return fms_fail(err, err_len, "sybil: interval is 0");
	if (sc->sybil_shared_subnet && sc->sybils > FMS_SHARED_SUBNET_MAX)
		return fms_fail(
		        err, err_len,
		        "sybil: subnet = shared holds at most 254 sybils");
	if (sc->lan && sc->nodes > 0xffffff)
		return fms_fail(err, err_len, "lan: too many nodes");
	return fms_jobs_params_check(&sc->jobs, sc->nodes, sc->duration_ms, err,
	                             err_len);
}

void fms_scenario_session_params(const struct fms_scenario *sc, double *p1,
                                 double *p2)
{
	double m = (double)sc->session_median_ms;
	double q = (double)sc->session_p80_ms;

	switch (sc->session_dist) {
	case FMS_DIST_WEIBULL:
		/* F(t) = 1 - exp(-(t/lambda)^k): F(m) = 0.5, F(q) = 0.8. */
		*p1 = log(log(5.0) / log(2.0)) / log(q / m);
		*p2 = m / pow(log(2.0), 1.0 / *p1);
		break;
	case FMS_DIST_EXPONENTIAL:
		*p1 = m / log(2.0); /* the median fixes the mean */
		*p2 = 0;
		break;
	case FMS_DIST_LOGNORMAL:
	default:
		*p1 = log(m);
		*p2 = log(q / m) / Z80;
		break;
	}
}

const char *fms_dist_name(enum fms_dist d)
{
	switch (d) {
	case FMS_DIST_WEIBULL:
		return "weibull";
	case FMS_DIST_EXPONENTIAL:
		return "exponential";
	case FMS_DIST_LOGNORMAL:
		break;
	}
	return "lognormal";
}

const char *fms_boot_mode_name(enum fms_boot_mode m)
{
	return m == FMS_BOOT_DHT ? "dht" : "sessions";
}

const char *fms_split_name(enum fms_split s)
{
	switch (s) {
	case FMS_SPLIT_REGIONS:
		return "regions";
	case FMS_SPLIT_ISOLATE:
		return "isolate";
	case FMS_SPLIT_HALVES:
		break;
	}
	return "halves";
}
